"""Every test session sees 4 fake CPU devices, so every sharded code path runs as it would on 4 accelerators.

Compiling is most of the suite's time on CPU, so compiles skip LLVM's optimisation passes, and the whole run
shares what it compiles and trains:
- one persistent JAX compilation cache for the run: the pytest process, its xdist workers and every subprocess a
  test starts (they inherit the environment) load a program any of them already compiled. It lives in a temporary
  folder made and removed by the first pytest process (a run never reads an older run's programs), and is safe to
  share: JAX treats an entry it cannot read (one being written by the other worker) as a miss.
- the fixtures below are built once per run, not once per xdist worker (`shared_once`), and tests copy what they
  change.
"""

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests compile many tiny programs and run each for a few steps: LLVM's optimisation passes are most of a CPU
# compile and buy nothing here (measured alone: two compile-bound tests 80 s -> 47 s; test_learning's 200 steps
# still train in 54 s). Convolutions are library calls either way; the float semantics (no fast-math) are the same.
_TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", ""), _TEST_XLA_FLAGS, "--xla_force_host_platform_device_count=4"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402  (after the environment is set, before anything imports jax)

_OWNER = "BDIRNET_TEST_CACHE_OWNER"  # pid of the pytest process that made the cache folder


def pytest_configure(config):
  del config
  if os.environ.get(_OWNER):  # an xdist worker (or a nested pytest): the parent's cache is already set
    return
  os.environ[_OWNER] = str(os.getpid())
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="bdirnet_jax_test_compile_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # every program: tests compile many small ones
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  if "jax" in sys.modules:  # imported by a plugin before this hook: its config already read the environment
    import jax  # pylint: disable=g-import-not-at-top

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  del config
  if os.environ.get(_OWNER) == str(os.getpid()):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def shared_once(tmp_path_factory, name: str, build) -> Path:
  """`build(path)` run once per test run, whichever xdist worker asks first; the others wait for it, then reuse it.

  The folder sits beside the workers' base temp folders, so pytest removes it with them.
  """
  base = tmp_path_factory.getbasetemp()
  root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  path, done = root / name, root / f"{name}.done"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not done.exists():
        shutil.rmtree(path, ignore_errors=True)  # a build that failed in another worker
        build(path)
        done.write_text("")
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return path


def _train_tiny(workdir: Path) -> None:
  from bdirnet_jax import train  # pylint: disable=g-import-not-at-top
  from tests import fakes  # pylint: disable=g-import-not-at-top

  config = fakes.trained_workdir_config()
  train.train_and_evaluate(config, workdir, fakes.PairIterator(config.batch_size, config.dataset.crop_size))


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A workdir holding a 4-step checkpoint of the tiny config (EMA on), shared by evaluate/predict/export tests.

  Read-only for tests: one that writes into a workdir copies it first.
  """
  return shared_once(tmp_path_factory, "trained_workdir", _train_tiny)


@pytest.fixture(scope="session")
def synthetic_blur_data_dir(tmp_path_factory):
  """A TFDS data_dir holding synthetic_blur/mixed, built once per run."""
  from tests import fakes  # pylint: disable=g-import-not-at-top

  return shared_once(tmp_path_factory, "tfds_data", fakes.build_synthetic_blur)
