"""The training step's on-device blur and noise (`prepare_views` on an on-the-fly batch) against an independent
host computation: scipy's direct 2-D convolution with symmetric boundaries, and the noise's measured statistics."""

import jax
import numpy as np
import scipy.signal

from bdirnet_jax import input_pipeline
from bdirnet_jax.train_step import prepare_views
from configs import default
from tests.fakes import photo_pairs


def _batch(noise_sigma):
  config = default.get_config()
  config.batch_size, config.dataset.crop_size, config.dataset.noise_sigma = 4, 48, noise_sigma
  config.dataset.blur_family = "mixed"  # every family, so a wrongly oriented or shifted kernel shows
  source = [{"sharp": sharp, "image_id": str(i).encode()} for i, (_, sharp) in enumerate(photo_pairs())]
  return next(input_pipeline.create_train_iterator(config, source=source)), config.dataset


def _reference_blur(sharp_uint8, kernel):
  x = sharp_uint8.astype(np.float64) / 255.0
  return np.clip(
    np.stack([scipy.signal.convolve2d(x[..., c], kernel, mode="same", boundary="symm") for c in range(3)], -1), 0, 1
  )


def test_on_device_blur_matches_direct_convolution():
  batch, ds = _batch(0.0)
  assert set(batch) == {"sharp", "kernel"} and batch["kernel"].shape == (4, 15, 15)
  blurry, sharp = jax.jit(lambda b, k: prepare_views(b, k, ds))(batch, jax.random.key(0))
  np.testing.assert_allclose(np.asarray(sharp), batch["sharp"] / 255.0, atol=1e-7)
  for i in range(4):
    np.testing.assert_allclose(np.asarray(blurry[i]), _reference_blur(batch["sharp"][i], batch["kernel"][i]), atol=2e-6)
  assert np.abs(np.asarray(blurry) - np.asarray(sharp)).mean() > 0.01  # the kernels really blur


def test_on_device_noise_has_the_configured_level_and_follows_the_key():
  batch, ds = _batch(0.01)
  clean = np.stack([_reference_blur(s, k) for s, k in zip(batch["sharp"], batch["kernel"])])
  views = jax.jit(lambda b, k: prepare_views(b, k, ds))
  a = np.asarray(views(batch, jax.random.key(0))[0])
  b = np.asarray(views(batch, jax.random.key(1))[0])
  inside = (clean > 0.05) & (clean < 0.95)  # away from the clip at 0 and 1
  noise = (a - clean)[inside]
  assert abs(noise.std() - 0.01) < 0.0005 and abs(noise.mean()) < 0.0005, (noise.std(), noise.mean())
  assert abs(np.corrcoef(noise, (b - clean)[inside])[0, 1]) < 0.05  # another key: independent noise
  np.testing.assert_array_equal(a, np.asarray(views(batch, jax.random.key(0))[0]))  # same key: same noise
  blurry_pair = {"blurry": batch["sharp"], "sharp": batch["sharp"]}  # prepared pairs pass through untouched
  np.testing.assert_allclose(np.asarray(prepare_views(blurry_pair, jax.random.key(0), ds)[0]), batch["sharp"] / 255.0)
