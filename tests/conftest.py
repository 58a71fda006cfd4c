"""Every test session sees 4 fake CPU devices, so every sharded code path runs as it would on 4 accelerators."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402  (after the environment is set, before anything imports jax)


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A workdir holding a 4-step checkpoint of the tiny config (EMA on), shared by evaluate/predict/export tests."""
  from bdirnet_jax import train  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from tests.fakes import PairIterator  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.num_train_steps = 4
  config.checkpoint_every_steps = 4
  config.log_every_steps = 2
  workdir = tmp_path_factory.mktemp("trained") / "workdir"
  train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))
  return workdir
