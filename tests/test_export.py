"""--mode=export: the serialized artifact reloads and matches the live inference function on several shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bdirnet_jax import export
from bdirnet_jax import inference
from tests.test_predict import _random_init_tiny


def _live(model, params, images):
  """The path evaluate and predict take: pad to the multiple on the host, jitted deblur, crop."""
  padded, hw = inference.pad_to_multiple(images, model.downsample_factor)
  return np.asarray(inference.crop(jax.jit(inference.deblur_fn(model))(params, padded), hw))


def test_export_reloads_and_matches_the_live_function(trained_workdir, tmp_path):
  path = tmp_path / "deblur.jax"
  export.export(trained_workdir, path)
  exported = jax.export.deserialize(bytearray(path.read_bytes()))
  assert {"cpu", "cuda"} <= set(exported.platforms)
  assert str(exported.in_avals[0]) == "float32[b,h,w,3]" and str(exported.out_avals[0]) == "float32[b,h,w,3]"
  restored = inference.load(trained_workdir)
  call = export.load_exported(path)
  rng = np.random.default_rng(0)
  for shape in ((1, 13, 7, 3), (2, 16, 24, 3)):  # one needing padding inside, one already a multiple
    images = rng.random(shape, dtype=np.float32)
    out = np.asarray(call(images))
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _live(restored.model, restored.params, images), rtol=0, atol=1e-5)


def test_exported_random_network_matches_including_one_pixel_sides():
  model, params = _random_init_tiny()
  exported = jax.export.deserialize(export.export_fn(model, params).serialize())
  rng = np.random.default_rng(1)
  for shape in ((1, 1, 9, 3), (3, 10, 6, 3)):  # edge padding (a 1-pixel side) and reflect padding
    images = rng.random(shape, dtype=np.float32)
    out, live = np.asarray(exported.call(images)), _live(model, params, images)
    np.testing.assert_allclose(out, live, rtol=0, atol=1e-5)
    if shape[1] > 1:
      assert np.abs(out - images).mean() > 1e-3  # a network that changes the image, so the match means something


def test_bf16_export_stays_close(trained_workdir, tmp_path):
  export.export(trained_workdir, tmp_path / "bf16.jax", bf16=True)
  images = np.random.default_rng(2).random((1, 12, 20, 3), dtype=np.float32)
  restored = inference.load(trained_workdir)
  out = np.asarray(export.load_exported(tmp_path / "bf16.jax")(images))
  assert np.abs(out - _live(restored.model, restored.params, images)).max() < 0.02


def test_load_exported_rejects_bad_files_and_inputs_outside_the_contract(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.jax: exported model not found"):
    export.load_exported(tmp_path / "missing.jax")
  (tmp_path / "junk.jax").write_bytes(b"definitely not a flatbuffer")
  with pytest.raises(ValueError, match="junk.jax: not a jax.export artifact"):
    export.load_exported(tmp_path / "junk.jax")
  model, params = _random_init_tiny()
  (tmp_path / "ok.jax").write_bytes(export.export_fn(model, params).serialize())
  call = export.load_exported(tmp_path / "ok.jax")
  with pytest.raises(ValueError, match=r"expects float32 \[batch, height, width, 3\].*shape \(8, 8, 3\).*x\[None\]"):
    call(jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match=r"got dtype uint8: convert first \(uint8 images: image.astype"):
    call(np.full((1, 8, 8, 3), 255, np.uint8))  # would otherwise come back white
  with pytest.raises(ValueError, match=r"got values in \[0, 255\]: scale to \[0, 1\]"):
    call(np.linspace(0, 255, 192, dtype=np.float32).reshape(1, 8, 8, 3))
  with pytest.raises(ValueError, match=r"got values in \[-0.5, 0\]"):
    call(np.linspace(-0.5, 0, 192).reshape(1, 8, 8, 3))


def _smooth_images(n, h, w, seed):
  """Photo-like inputs (smooth gradients and blobs, full 0..1 range, not uint8-quantised)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
  out = []
  for _ in range(n):
    f = rng.uniform(1, 4, (3, 2))
    ph = rng.uniform(0, 2 * np.pi, (3,))
    out.append(
      np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (f[c, 0] * yy + f[c, 1] * xx) + ph[c]) for c in range(3)], axis=-1)
    )
  return np.clip(np.stack(out) + rng.normal(0, 0.02, (n, h, w, 3)), 0, 1).astype(np.float32)


def test_bf16_deblur_adds_the_float32_input():
  """A fresh network (zero-initialised ending conv) returns its input: in bf16 too, to the float32 bit."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from bdirnet_jax.models import create_model  # pylint: disable=g-import-not-at-top

  model = create_model(ml_collections.ConfigDict({"preset": "tiny"}), "bfloat16")
  params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), method=model.deblur)["params"]
  images = _smooth_images(2, 16, 24, 3)
  images[0, 0, 0] = (40000 / 65535, 233 / 255, 1.0 - 2**-12)  # a 16-bit level, a uint8 level, near white
  out = np.asarray(jax.jit(inference.deblur_fn(model))(params, images))
  np.testing.assert_array_equal(out, images)
  np.testing.assert_array_equal(np.asarray(jax.jit(export.padded_deblur_fn(model, params))(images)), images)


def test_bf16_and_float32_predictions_of_a_trained_network_agree_within_half_a_level(trained_workdir):
  f32, bf16 = inference.load(trained_workdir), inference.load(trained_workdir, bf16=True)
  assert bf16.model.dtype == jnp.bfloat16
  images = _smooth_images(4, 32, 48, 4)
  a = np.asarray(jax.jit(inference.deblur_fn(f32.model))(f32.params, images)) * 255
  b = np.asarray(jax.jit(inference.deblur_fn(bf16.model))(bf16.params, images)) * 255
  # The trained network changes these images by 7.5 levels on average (measured), so the match means something.
  assert np.abs(a - images * 255).mean() > 5
  diff = np.abs(a - b)
  # Measured: at most 0.18 levels apart, and 97% of pixels round to the same uint8 level.
  assert diff.max() < 0.5, (diff.mean(), np.quantile(diff, [0.5, 0.99]), diff.max())
  assert (np.rint(a) == np.rint(b)).mean() >= 0.95
