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
  # rfft2 of a constant 0.5 on 4x4: DC = 8, every other of the 4x3 bins 0 -> mean |real diff| = 8/12.
  assert float(losses.fft_loss(x, y)) == pytest.approx(8.0 / 12.0, rel=1e-6)
  assert float(losses.fft_loss(y, y)) == 0.0


def test_latent_consistency_distances_and_stop_gradient():
  zb = jnp.array([[1.0, 2.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)
  zs = jnp.array([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)
  assert float(losses.latent_consistency_loss(zb, zs, "l1")) == pytest.approx(3.0 / 4)
  assert float(losses.latent_consistency_loss(zb, zs, "l2")) == pytest.approx(5.0 / 4)
  cos_first = 1.0 / math.sqrt(5.0)
  expected = ((1 - cos_first) + (1 - 0.0)) / 2
  assert float(losses.latent_consistency_loss(zb, zs, "cosine")) == pytest.approx(expected, rel=1e-5)
  g_sharp = jax.grad(lambda s: losses.latent_consistency_loss(zb, s, "l2"))(zs)
  assert float(jnp.abs(g_sharp).max()) == 0.0
  g_blurry = jax.grad(lambda b: losses.latent_consistency_loss(b, zs, "l2"))(zb)
  assert float(jnp.abs(g_blurry).max()) > 0.0
  with pytest.raises(ValueError, match="latent_distance"):
    losses.latent_consistency_loss(zb, zs, "kl")


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
  assert float(losses.stats_matching_loss(stats_b, stats_s)) == pytest.approx(0.5 + 0.5)
  assert float(losses.stats_matching_loss(stats_s, stats_s)) == 0.0


def _outputs(b=2):
  k = jax.random.split(jax.random.key(0), 6)
  img = lambda i: jax.random.uniform(k[i], (b, 8, 8, 3))
  lat = lambda i: jax.random.normal(k[i], (b, 2, 2, 4))
  stats = ((jnp.ones((b, 4)), jnp.ones((b, 4))),)
  return {"restored": img(0), "identity": img(1), "latent_blurry": lat(2), "latent_sharp": lat(3),
          "embed_blurry": lat(4).reshape(b, -1), "embed_sharp": lat(5).reshape(b, -1),
          "stats_blurry": stats, "stats_sharp": stats}


def test_total_loss_is_weighted_sum_and_weights_switch_terms_off():
  cfg = default.get_config().loss
  out = _outputs()
  sharp = jnp.zeros((2, 8, 8, 3))
  loss, terms = losses.total_loss(out, sharp, cfg)
  assert set(terms) == {"rec", "fft", "identity", "identity_fft", "latent", "infonce", "stats"}
  expected = (cfg.rec_weight * terms["rec"] + cfg.fft_weight * terms["fft"] + cfg.identity_weight *
              terms["identity"] + cfg.fft_weight * cfg.identity_weight * terms["identity_fft"] +
              cfg.latent_weight * terms["latent"] + cfg.infonce_weight * terms["infonce"] +
              cfg.stats_weight * terms["stats"])
  assert float(loss) == pytest.approx(float(expected), rel=1e-6)
  off = ml_collections.ConfigDict(cfg.to_dict())
  for k in ("identity_weight", "latent_weight", "infonce_weight", "stats_weight", "fft_weight"):
    off[k] = 0.0
  loss_off, terms_off = losses.total_loss({"restored": out["restored"]}, sharp, off)
  assert set(terms_off) == {"rec"} and float(loss_off) == pytest.approx(float(terms["rec"]))
  assert not losses.needs_sharp_view(off) and losses.needs_sharp_view(cfg)
