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


def test_load_exported_rejects_bad_files_and_shapes(tmp_path):
  (tmp_path / "junk.jax").write_bytes(b"definitely not a flatbuffer")
  with pytest.raises(ValueError, match="junk.jax: not a jax.export artifact"):
    export.load_exported(tmp_path / "junk.jax")
  model, params = _random_init_tiny()
  (tmp_path / "ok.jax").write_bytes(export.export_fn(model, params).serialize())
  with pytest.raises(ValueError, match=r"expects float32 \[batch, height, width, 3\]"):
    export.load_exported(tmp_path / "ok.jax")(jnp.zeros((8, 8, 3)))
