"""Each loss term on hand-made inputs with values worked out by hand."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bdirnet_jax import losses
from configs import default


def test_l1_l2_charbonnier_values():
  x = jnp.zeros((1, 2, 2, 1))
  y = jnp.array([0.0, 0.1, 0.2, 0.3]).reshape(1, 2, 2, 1)
  assert float(losses.l1_loss(x, y)) == pytest.approx(0.15)
  assert float(losses.l2_loss(x, y)) == pytest.approx((0.01 + 0.04 + 0.09) / 4)
  expected = np.mean(np.sqrt(np.array([0.0, 0.01, 0.04, 0.09]) + 1e-6))
  assert float(losses.charbonnier_loss(x, y, eps=1e-3)) == pytest.approx(expected, rel=1e-5)
  assert float(losses.charbonnier_loss(x, x, eps=1e-3)) == pytest.approx(1e-3)


def test_psnr_loss_is_negative_psnr():
  x = jnp.zeros((2, 4, 4, 3))
  y = jnp.full((2, 4, 4, 3), 0.1)  # mse 0.01 -> PSNR 20 dB
  assert float(losses.psnr_loss(x, y)) == pytest.approx(-20.0, abs=1e-4)


def test_fft_loss_of_constant_offset_is_dc_only():
  x = jnp.zeros((1, 4, 4, 1))
  y = jnp.full((1, 4, 4, 1), 0.5)
  # Orthonormal rfft2 of a constant 0.5 on 4x4: DC = 8 / sqrt(16) = 2, the other 4x3 bins 0 -> mean |real| 2/12.
  assert float(losses.fft_loss(x, y)) == pytest.approx(2.0 / 12.0, rel=1e-6)
  assert float(losses.fft_loss(y, y)) == 0.0


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 5, 7, 2), (3, 6, 9, 1)])
def test_matmul_dft_equals_rfft2_ortho(shape):
  """The loss's matmul DFT is numpy's orthonormal rfft2, odd and even sides alike, and so is its gradient."""
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  real, imag = losses.rfft2_ortho(jnp.asarray(x))
  ref = np.fft.rfft2(x.astype(np.float64), axes=(1, 2), norm="ortho")
  np.testing.assert_allclose(np.asarray(real), ref.real, atol=2e-6)
  np.testing.assert_allclose(np.asarray(imag), ref.imag, atol=2e-6)
  y = np.random.default_rng(1).normal(size=shape).astype(np.float32)

  def fft_reference(a, b):
    fa, fb = (jnp.fft.rfft2(v, axes=(1, 2), norm="ortho") for v in (a, b))
    return jnp.mean(jnp.abs(fa.real - fb.real)) + jnp.mean(jnp.abs(fa.imag - fb.imag))

  assert float(losses.fft_loss(x, y)) == pytest.approx(float(fft_reference(x, y)), rel=1e-5)
  np.testing.assert_allclose(jax.grad(losses.fft_loss)(jnp.asarray(x), y), jax.grad(fft_reference)(x, y), atol=1e-6)


def test_fft_loss_is_on_the_pixel_scale_whatever_the_image_size():
  """Orthonormal spectra: white noise gives about the same FFT loss at 16x16 and 128x128, comparable to L1."""
  values = []
  for size in (16, 128):
    noise = jax.random.normal(jax.random.key(size), (2, size, size, 3)) * 0.1
    values.append(float(losses.fft_loss(noise, jnp.zeros_like(noise))))
    l1 = float(losses.l1_loss(noise, jnp.zeros_like(noise)))
    assert 0.3 * l1 < values[-1] < 3 * l1
  assert values[1] == pytest.approx(values[0], rel=0.2)


def test_latent_consistency_distances_and_stop_gradient():
  zb = jnp.array([[1.0, 2.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)
  zs = jnp.array([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)
  raw = lambda b, s, d: losses.latent_consistency_loss(b, s, d, normalize=False)
  assert float(raw(zb, zs, "l1")) == pytest.approx(3.0 / 4)
  assert float(raw(zb, zs, "l2")) == pytest.approx(5.0 / 4)
  cos_first = 1.0 / math.sqrt(5.0)
  expected = ((1 - cos_first) + (1 - 0.0)) / 2
  assert float(raw(zb, zs, "cosine")) == pytest.approx(expected, rel=1e-5)
  for normalize in (False, True):
    g_sharp = jax.grad(lambda s: losses.latent_consistency_loss(zb, s, "l2", normalize))(zs)
    assert float(jnp.abs(g_sharp).max()) == 0.0
  g_blurry = jax.grad(lambda b: raw(b, zs, "l2"))(zb)
  assert float(jnp.abs(g_blurry).max()) > 0.0
  with pytest.raises(ValueError, match="latent_distance"):
    losses.latent_consistency_loss(zb, zs, "kl")


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
def test_normalised_latent_consistency_cannot_be_lowered_by_scaling(distance):
  """The shortcut of the raw term: shrinking both latents (SAID's gamma) lowers it without changing structure."""
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  zb = jax.random.normal(k1, (2, 4, 4, 8))
  zs = zb + 0.5 * jax.random.normal(k2, (2, 4, 4, 8))
  scale = jnp.exp(jax.random.normal(k3, (8,)))  # a per-channel gamma and an offset (beta)
  base = float(losses.latent_consistency_loss(zb, zs, distance))
  shrunk = float(losses.latent_consistency_loss(0.1 * scale * zb + 3.0, 0.1 * scale * zs + 3.0, distance))
  assert shrunk == pytest.approx(base, rel=5e-3)  # up to the variance epsilon
  assert base > 0.1
  if distance != "cosine":  # the raw term falls with the scale, which is the shortcut
    raw = float(losses.latent_consistency_loss(zb, zs, distance, normalize=False))
    assert float(losses.latent_consistency_loss(0.1 * zb, 0.1 * zs, distance, normalize=False)) < 0.2 * raw


def test_info_nce_values():
  e = jnp.eye(3)
  # Perfectly matched orthonormal embeddings: logits = I / T.
  t = 0.5
  expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
  assert float(losses.info_nce_loss(e, e, t)) == pytest.approx(expected, rel=1e-5)
  # Identical embeddings for every image: chance level, log(N).
  same = jnp.ones((4, 5))
  assert float(losses.info_nce_loss(same, same, 0.1)) == pytest.approx(math.log(4.0), rel=1e-5)
  # Swapped pairs are worse than matched ones.
  swapped = e[jnp.array([1, 0, 2])]
  assert float(losses.info_nce_loss(e, swapped, t)) > float(losses.info_nce_loss(e, e, t))
  g = jax.grad(lambda s: losses.info_nce_loss(e + 0.1, s, t, stop_grad_sharp=True))(e)
  assert float(jnp.abs(g).max()) == 0.0


def test_stats_matching():
  stats_b = [(jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 1.0]]))]
  stats_s = [(jnp.array([[0.0, 2.0]]), jnp.array([[2.0, 1.0]]))]
  assert float(losses.stats_matching_loss(stats_b, stats_s, scale_free=False)) == pytest.approx(0.5 + 0.5)
  # Scale-free: mean offsets in units of the sharp std (1/2, 0), log std ratios (log 2, 0).
  expected = 0.25 + 0.5 * math.log(2.0)
  assert float(losses.stats_matching_loss(stats_b, stats_s)) == pytest.approx(expected, rel=1e-6)
  assert float(losses.stats_matching_loss(stats_s, stats_s)) == 0.0


def test_scale_free_stats_matching_cannot_be_lowered_by_scaling_features():
  """Features scaled by a (the encoder's weights scaled) scale both views' means and stds by a."""
  stats_b = [(jnp.array([[1.0, -2.0, 0.3]]), jnp.array([[0.5, 1.0, 0.2]]))]
  stats_s = [(jnp.array([[0.0, 2.0, 0.1]]), jnp.array([[2.0, 1.5, 0.3]]))]
  scaled = lambda st, a: [(m * a, s * a) for m, s in st]
  base = float(losses.stats_matching_loss(stats_b, stats_s))
  for a in (0.1, 0.5, 10.0):
    assert float(losses.stats_matching_loss(scaled(stats_b, a), scaled(stats_s, a))) == pytest.approx(base, rel=1e-5)
  raw = float(losses.stats_matching_loss(stats_b, stats_s, scale_free=False))
  assert float(losses.stats_matching_loss(scaled(stats_b, 0.1), scaled(stats_s, 0.1), scale_free=False)) == (
    pytest.approx(0.1 * raw, rel=1e-5)
  )


def _outputs(b=2):
  k = jax.random.split(jax.random.key(0), 6)
  img = lambda i: jax.random.uniform(k[i], (b, 8, 8, 3))
  lat = lambda i: jax.random.normal(k[i], (b, 2, 2, 4))
  stats = ((jnp.ones((b, 4)), jnp.ones((b, 4))),)
  return {
    "restored": img(0),
    "identity": img(1),
    "latent_blurry": lat(2),
    "latent_sharp": lat(3),
    "embed_blurry": lat(4).reshape(b, -1),
    "embed_sharp": lat(5).reshape(b, -1),
    "stats_blurry": stats,
    "stats_sharp": stats,
  }


def test_total_loss_is_weighted_sum_and_weights_switch_terms_off():
  cfg = default.get_config().loss
  cfg.identity_weight = 0.5  # off in the default; on here so every term is checked
  cfg.stats_weight = 0.005  # likewise
  out = _outputs()
  sharp = jnp.zeros((2, 8, 8, 3))
  _, terms = losses.total_loss(out, sharp, cfg)
  assert set(terms) == {"rec", "fft", "identity", "identity_fft", "latent", "infonce", "stats"}
  # Each term on its own beside rec, at a hand-picked weight, against the term's own function on the outputs it
  # is meant to see (not total_loss's dict): catches a term fed the wrong view or weighted by another's weight.
  rec = losses.reconstruction_loss(out["restored"], sharp, cfg.reconstruction, cfg.charbonnier_eps)
  own = {
    "fft": (losses.fft_loss(out["restored"], sharp), {"fft_weight": 0.25}),
    "identity": (
      losses.reconstruction_loss(out["identity"], sharp, cfg.reconstruction, cfg.charbonnier_eps),
      {"identity_weight": 0.25},
    ),
    "latent": (
      losses.latent_consistency_loss(out["latent_blurry"], out["latent_sharp"], cfg.latent_distance, True),
      {"latent_weight": 0.25},
    ),
    "infonce": (
      losses.info_nce_loss(out["embed_blurry"], out["embed_sharp"], cfg.infonce_temperature, False),
      {"infonce_weight": 0.25},
    ),
    "stats": (losses.stats_matching_loss(out["stats_blurry"], out["stats_sharp"], True), {"stats_weight": 0.25}),
  }
  zero = {k: 0.0 for k in ("identity_weight", "latent_weight", "infonce_weight", "stats_weight", "fft_weight")}
  for name, (value, weights) in own.items():
    single = ml_collections.ConfigDict(cfg.to_dict())
    single.update({**zero, **weights})
    got, _ = losses.total_loss(out, sharp, single)
    assert float(got) == pytest.approx(float(rec) + 0.25 * float(value), rel=1e-6), name
  # Both on: the identity view's FFT term is weighted by the product of the two weights.
  both = ml_collections.ConfigDict(cfg.to_dict())
  both.update({**zero, "identity_weight": 0.5, "fft_weight": 0.25})
  got, _ = losses.total_loss(out, sharp, both)
  fft_id = losses.fft_loss(out["identity"], sharp)
  want = float(rec) + 0.25 * float(own["fft"][0]) + 0.5 * float(own["identity"][0]) + 0.125 * float(fft_id)
  assert float(got) == pytest.approx(want, rel=1e-6)
  off = ml_collections.ConfigDict(cfg.to_dict())
  for k in ("identity_weight", "latent_weight", "infonce_weight", "stats_weight", "fft_weight"):
    off[k] = 0.0
  loss_off, terms_off = losses.total_loss({"restored": out["restored"]}, sharp, off)
  assert set(terms_off) == {"rec"} and float(loss_off) == pytest.approx(float(terms["rec"]))
  assert not losses.needs_sharp_view(off) and losses.needs_sharp_view(cfg)
