"""Small deterministic data for tests: Gaussian-blurred crops of photos shipped with scikit-image."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.ndimage
import skimage.data


def photo_pairs(size=64, sigma=1.5):
  """(blurry, sharp) uint8 pairs from three shipped photos, resized by striding to keep tests fast."""
  pairs = []
  for name in ("astronaut", "coffee", "chelsea"):
    img = getattr(skimage.data, name)()
    img = img[: (img.shape[0] // 4) * 4 : 2, : (img.shape[1] // 4) * 4 : 2]
    blurry = scipy.ndimage.gaussian_filter(img.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    pairs.append((np.clip(np.round(blurry), 0, 255).astype(np.uint8), img))
  return pairs


class PairIterator:
  """Random aligned crops; its whole state is the batch counter, so get/set_state resume exactly."""

  def __init__(self, batch_size, crop, seed=0, size=64):
    self.batch_size, self.crop, self.seed, self.index = batch_size, crop, seed, 0
    self.pairs = photo_pairs(size)

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.index])
    self.index += 1
    blurry, sharp = [], []
    for _ in range(self.batch_size):
      b, s = self.pairs[rng.integers(len(self.pairs))]
      y = rng.integers(0, b.shape[0] - self.crop + 1)
      x = rng.integers(0, b.shape[1] - self.crop + 1)
      blurry.append(b[y : y + self.crop, x : x + self.crop])
      sharp.append(s[y : y + self.crop, x : x + self.crop])
    return {"blurry": np.stack(blurry), "sharp": np.stack(sharp)}

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = int(state["index"])


class NaNAt:
  """Wraps PairIterator to yield float32 [0, 1] batches (uint8 cannot hold NaN), the `nan_index`-th one NaN."""

  def __init__(self, iterator, nan_index):
    self.iterator, self.nan_index = iterator, nan_index

  def __iter__(self):
    return self

  def __next__(self):
    index = self.iterator.index
    batch = {k: v.astype(np.float32) / 255.0 for k, v in next(self.iterator).items()}
    if index == self.nan_index:
      batch["blurry"][0, :4, :4] = np.nan
    return batch

  def get_state(self):
    return self.iterator.get_state()

  def set_state(self, state):
    self.iterator.set_state(state)


# ----------------------------------------------------------------------------------------------------------------
# Subprocess runs of main.py (crash/resume and multi-process tests).

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(num_devices, compile_cache_dir=None):
  """CPU-only env with `num_devices` fake devices; a persistent compilation cache makes repeated runs cheap."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={num_devices}"])
  if compile_cache_dir:
    env.update(
      JAX_COMPILATION_CACHE_DIR=str(compile_cache_dir),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
  return env


def build_synthetic_blur(data_dir):
  """Builds synthetic_blur/mixed into the TFDS data_dir `data_dir` (~10 s); conftest's synthetic_blur_data_dir
  fixture runs it once per test run."""
  code = (
    "import sys; from configs import tiny; from bdirnet_jax import input_pipeline; c = tiny.get_config(); "
    "c.dataset.data_dir = sys.argv[1]; input_pipeline.open_source(c.dataset)"
  )
  subprocess.run(
    [sys.executable, "-c", code, str(data_dir)],
    cwd=REPO,
    env=subprocess_env(1),
    check=True,
    capture_output=True,
    timeout=600,
  )


# Runs of main.py's own input pipeline (blur made on the device) on 4 devices, in test_reliability.py and
# test_distributed.py, share this learning-rate horizon, and so one compiled train step (the horizon is a constant
# of the program; resume and sharding do not depend on its value).
ON_THE_FLY_SCHEDULE_STEPS = 4


def trained_workdir_config():
  """The config of conftest's trained_workdir: 4 steps of the tiny config (schedule horizon 4), EMA on.

  Tests that train the tiny model keep its compiled shape (schedule horizon, loss weights, batch and crop), so
  they load its train step from the run's compilation cache instead of compiling their own.
  """
  from configs import tiny  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  config.num_train_steps = 4
  config.checkpoint_every_steps = 4
  config.log_every_steps = 2
  return config


# ----------------------------------------------------------------------------------------------------------------
# Stand-ins for the predict/tiling tests.


def space_to_depth_net(seed=1, squash=False):
  """A local network with a stride of 2 (pixel-unshuffle, 3x3 conv, pixel-shuffle), receptive radius 3 pixels:
  only equivariant to even shifts, so tiling is exact only when tiles are aligned. `squash`: sigmoid output in
  (0, 1), for paths that write images."""
  import jax  # pylint: disable=g-import-not-at-top

  kernel = jax.random.normal(jax.random.key(seed), (3, 3, 12, 12)) * 0.3

  @jax.jit
  def apply(x):
    n, h, w, c = x.shape
    y = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)
    y = jax.lax.conv_general_dilated(y, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y.reshape(n, h // 2, w // 2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)
    return jax.nn.sigmoid(y) if squash else y

  return apply


def fail_listing(monkeypatch, folder_name):
  """Makes listing any folder named `folder_name` raise PermissionError: tests run as root, for whom chmod does
  not block reads."""
  real_scandir = os.scandir

  def scandir(path):
    if Path(path).name == folder_name:
      raise PermissionError(13, "Permission denied", str(path))
    return real_scandir(path)

  monkeypatch.setattr(os, "scandir", scandir)


# ----------------------------------------------------------------------------------------------------------------
# Scores computed by hand, the reference for evaluate's rgb_uint8_gauss11 PSNRs.


def reference_psnrs(workdir, records):
  """[(PSNR of the output, PSNR of the blurred input)] of `records` (uint8 `blurry`/`sharp`) by hand: the bare
  network of `workdir` (EMA params) on the image reflect-padded at the bottom/right to a multiple of 4, rounded to
  uint8; PSNR with peak 255 over HxWx3."""
  import jax  # pylint: disable=g-import-not-at-top

  from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top

  restored = inference.load(workdir)
  assert restored.model.downsample_factor == 4
  net = jax.jit(inference.deblur_fn(restored.model))
  scores = []
  for record in records:
    blurry, sharp = record["blurry"], record["sharp"].astype(np.float64)
    h, w = blurry.shape[:2]
    padded = np.pad(blurry.astype(np.float32) / 255, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
    out = np.rint(np.clip(np.asarray(net(restored.params, padded[None]))[0, :h, :w], 0, 1) * 255)
    psnr = lambda x: 10 * np.log10(255.0**2 / np.mean((x.astype(np.float64) - sharp) ** 2))
    scores.append((psnr(out), psnr(blurry)))
  return scores
