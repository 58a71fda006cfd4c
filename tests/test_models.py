"""Shapes and dtypes of every module, and the properties the design relies on."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bdirnet_jax.models import PRESETS
from bdirnet_jax.models import create_model
from bdirnet_jax.models import model_kwargs
from bdirnet_jax.models.distillnet import DistillNet
from bdirnet_jax.models.nafblock import NAFBlock
from bdirnet_jax.models.nafblock import NAFStage
from bdirnet_jax.models.recnet import RecNet
from bdirnet_jax.models.recnet import pixel_shuffle
from bdirnet_jax.models.said import SAID
from bdirnet_jax.models.sair import SAIR


def _init_apply(module, *args, **kwargs):
  variables = module.init(jax.random.key(0), *args, **kwargs)
  return variables, module.apply(variables, *args, **kwargs)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_nafblock_shape_dtype_and_identity_at_init(dtype):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 16)).astype(dtype)
  variables, y = _init_apply(NAFBlock(16, dtype=dtype), x)
  assert y.shape == x.shape and y.dtype == dtype
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(x, np.float32))  # beta=gamma=0
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


def test_scan_stage_equals_loop_stage_with_same_params():
  x = jax.random.normal(jax.random.key(1), (1, 8, 8, 8))
  loop = NAFStage(8, 3)
  v_loop = loop.init(jax.random.key(0), x)
  # Perturb the residual scales so the blocks are not identities.
  v_loop = jax.tree_util.tree_map_with_path(lambda p, a: a + 0.3 if p[-1].key in ("beta", "gamma") else a, v_loop)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *[v_loop["params"][f"block_{i}"] for i in range(3)])
  v_scan = {"params": {"scan": {"block": stacked}}}
  y_loop = loop.apply(v_loop, x)
  y_scan = NAFStage(8, 3, scan=True).apply(v_scan, x)
  np.testing.assert_allclose(y_scan, y_loop, atol=1e-5)
  assert float(jnp.abs(y_loop - x).max()) > 1e-3


def test_said_removes_instance_statistics():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4)) * 3.0 + 5.0
  _, y = _init_apply(SAID("instance"), x)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2)), 1.0, atol=1e-3)
  # A per-image affine change of the input (what a global blur/contrast change does) leaves SAID's output fixed.
  _, y2 = _init_apply(SAID("instance"), x * 0.5 + 2.0)
  np.testing.assert_allclose(y2, y, atol=1e-4)
  _, y_none = _init_apply(SAID("none"), x)
  np.testing.assert_array_equal(y_none, x)


def test_said_rejects_unknown_mode():
  with pytest.raises(ValueError, match="model.said"):
    _init_apply(SAID("batch"), jnp.zeros((1, 4, 4, 2)))


def test_sair_starts_as_additive_skip_and_modulates_after_training():
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 8))
  s = jax.random.normal(jax.random.key(2), (2, 4, 4, 8))
  variables, y = _init_apply(SAIR(True), x, s)
  np.testing.assert_allclose(y, x + s, atol=1e-6)
  variables = jax.tree.map(lambda a: a + 0.1, variables)
  y2 = SAIR(True).apply(variables, x, s)
  assert y2.shape == x.shape and float(jnp.abs(y2 - (x + s)).max()) > 1e-3
  assert "params" not in SAIR(False).init(jax.random.key(0), x, s)


def test_pixel_shuffle_matches_pytorch_order():
  x = jnp.arange(1 * 1 * 1 * 8, dtype=jnp.float32).reshape(1, 1, 1, 8)
  y = pixel_shuffle(x, 2)
  # PyTorch: out[c, 2h+i, 2w+j] = in[c*4 + i*2 + j]
  np.testing.assert_array_equal(y[0, :, :, 0], [[0, 1], [2, 3]])
  np.testing.assert_array_equal(y[0, :, :, 1], [[4, 5], [6, 7]])


def test_distillnet_and_recnet_shapes():
  x = jnp.zeros((2, 16, 16, 3))
  enc = DistillNet(8, (1, 1), 1)
  v, d = _init_apply(enc, x)
  assert d.latent.shape == (2, 4, 4, 32)
  assert [s.shape for s in d.skips] == [(2, 16, 16, 8), (2, 8, 8, 16)]
  assert len(d.stats) == 3 and d.stats[-1][0].shape == (2, 32)
  dec = RecNet(8, (1, 1))
  _, out = _init_apply(dec, d.latent, d.skips, x)
  assert out.shape == x.shape and out.dtype == jnp.float32


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bdirnet_outputs(preset, dtype):
  model = create_model(ml_collections.ConfigDict({"preset": preset}), dtype)
  f = model.downsample_factor
  blurry = jax.random.uniform(jax.random.key(0), (2, 2 * f, 3 * f, 3))
  sharp = jax.random.uniform(jax.random.key(1), (2, 2 * f, 3 * f, 3))
  variables = jax.jit(model.init)(jax.random.key(0), blurry, sharp)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out = jax.jit(model.apply)(variables, blurry, sharp)
  assert out["restored"].shape == blurry.shape and out["restored"].dtype == jnp.float32
  assert out["identity"].shape == sharp.shape
  assert out["latent_blurry"].shape == out["latent_sharp"].shape
  assert out["latent_blurry"].shape[1:3] == (2, 3)
  assert out["embed_blurry"].shape == (2, PRESETS[preset]["proj_dim"])
  # The ending conv starts at zero: a fresh network returns its input.
  np.testing.assert_allclose(out["restored"], blurry, atol=1e-6)
  restored = jax.jit(lambda v, x: model.apply(v, x, method=model.deblur))(variables, blurry)
  np.testing.assert_allclose(restored, out["restored"], atol=1e-5 if dtype == "float32" else 1e-2)


def test_model_kwargs_overrides_and_errors():
  cfg = ml_collections.ConfigDict({"preset": "tiny", "width": 12, "said": "none", "enc_blocks": None})
  kw = model_kwargs(cfg)
  assert kw["width"] == 12 and kw["said"] == "none" and kw["enc_blocks"] == PRESETS["tiny"]["enc_blocks"]
  with pytest.raises(ValueError, match="preset"):
    model_kwargs(ml_collections.ConfigDict({"preset": "huge"}))
  with pytest.raises(ValueError, match="config.model.bogus"):
    model_kwargs(ml_collections.ConfigDict({"preset": "tiny", "bogus": 1}))


def test_infonce_embeddings_tell_scenes_apart_behind_said():
  """Pooling an instance-normalised latent gives one vector for every image; the default head must not."""
  from bdirnet_jax import losses  # pylint: disable=g-import-not-at-top
  from tests.fakes import PairIterator  # pylint: disable=g-import-not-at-top

  batch = next(PairIterator(4, 32))
  blurry, sharp = (jnp.asarray(batch[k], jnp.float32) / 255.0 for k in ("blurry", "sharp"))
  config = ml_collections.ConfigDict({"preset": "tiny", "said": "instance"})
  model = create_model(config)
  params = model.init(jax.random.key(0), blurry, sharp)["params"]
  emb = model.apply({"params": params}, blurry, sharp)["embed_blurry"]
  spread = float(jnp.min(jnp.linalg.norm(emb[:, None] - emb[None], axis=-1) + jnp.eye(4) * 1e9))
  assert spread > 1e-3 * float(jnp.max(jnp.linalg.norm(emb, axis=-1)))

  def infonce(p):
    out = model.apply({"params": p}, blurry, sharp)
    return losses.info_nce_loss(out["embed_blurry"], out["embed_sharp"])

  grad_norm = float(jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(jax.grad(infonce)(params)))))
  assert np.isfinite(grad_norm) and grad_norm < 100.0, grad_norm  # pooling first: ~1e7


@pytest.mark.parametrize("identity_residual", [False, True])
def test_identity_branch_is_an_autoencoder_unless_residual(identity_residual):
  """Without residual the identity view must be rebuilt from DistillNet's features: far from the Charbonnier floor
  at initialisation, with a gradient. With the residual it is the input itself there (floor, zero gradient)."""
  from bdirnet_jax import losses  # pylint: disable=g-import-not-at-top

  cfg = ml_collections.ConfigDict(dict(preset="tiny", identity_residual=identity_residual))
  model = create_model(cfg)
  k1, k2 = jax.random.split(jax.random.key(3))
  sharp = jax.random.uniform(k1, (2, 16, 16, 3))
  blurry = jax.random.uniform(k2, (2, 16, 16, 3))
  params = model.init(jax.random.key(0), blurry, sharp)["params"]

  def identity_loss(p):
    return losses.charbonnier_loss(model.apply({"params": p}, blurry, sharp)["identity"], sharp)

  value, grads = jax.value_and_grad(identity_loss)(params)
  grad_norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
  if identity_residual:
    assert float(value) == pytest.approx(1e-3, rel=1e-3) and grad_norm == 0.0
  else:
    assert float(value) > 0.2 and grad_norm > 1e-3
  # The restored view keeps the global residual either way: a fresh network returns its blurred input.
  restored = model.apply({"params": params}, blurry, sharp)["restored"]
  np.testing.assert_allclose(np.asarray(restored), np.asarray(blurry), atol=1e-6)
