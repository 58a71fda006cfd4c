"""Losses of BDIRNet: reconstruction, identity reconstruction and latent comparison, each with its own weight.

Every term is a pure function of arrays so the unit tests can pin its value on hand-made inputs; `total_loss`
combines them with the weights of `config.loss` (a weight of 0 removes the term and, where possible, its compute).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

RECONSTRUCTION_TYPES = ("l1", "charbonnier", "psnr", "l2")
LATENT_DISTANCES = ("l1", "l2", "cosine")


def check_names(reconstruction, latent_distance) -> None:
  """`config.loss.reconstruction` in RECONSTRUCTION_TYPES and `config.loss.latent_distance` in LATENT_DISTANCES
  (None: not checked); config_validation asks before anything is compiled."""
  for key, value, choices in (
    ("reconstruction", reconstruction, RECONSTRUCTION_TYPES),
    ("latent_distance", latent_distance, LATENT_DISTANCES),
  ):
    if value is not None and (not isinstance(value, str) or value not in choices):
      raise ValueError(f"config.loss.{key} must be one of {sorted(choices)}, got {value!r}")


def _mean_per_image(x):
  return jnp.mean(x.reshape(x.shape[0], -1), axis=-1)


def l1_loss(x, y):
  return jnp.mean(jnp.abs(x - y))


def l2_loss(x, y):
  return jnp.mean(jnp.square(x - y))


def charbonnier_loss(x, y, eps=1e-3):
  """sqrt((x-y)^2 + eps^2): L1 that stays smooth at zero (MPRNet's choice, eps=1e-3)."""
  return jnp.mean(jnp.sqrt(jnp.square(x - y) + eps * eps))


def psnr_loss(x, y, eps=1e-8):
  """Negative PSNR in dB for images in [0, 1], averaged over images (NAFNet's PSNRLoss)."""
  mse = _mean_per_image(jnp.square(x - y))
  return jnp.mean(10.0 * jnp.log10(mse + eps))


def reconstruction_loss(x, y, kind="charbonnier", eps=1e-3):
  if kind == "l1":
    return l1_loss(x, y)
  if kind == "charbonnier":
    return charbonnier_loss(x, y, eps)
  if kind == "psnr":
    return psnr_loss(x, y)
  if kind == "l2":
    return l2_loss(x, y)
  check_names(kind, None)
  raise AssertionError(kind)


def _dft_cos_sin(n, num_freqs):
  """cos and sin of the n-point DFT's angles for the first `num_freqs` frequencies, each scaled by 1/sqrt(n)."""
  angle = 2 * np.pi * (np.outer(np.arange(n), np.arange(num_freqs)) % n) / n  # exact phase, then float64 trig
  return (np.cos(angle) / np.sqrt(n)).astype(np.float32), (np.sin(angle) / np.sqrt(n)).astype(np.float32)


def rfft2_ortho(x):
  """`jnp.fft.rfft2(x, axes=(1, 2), norm="ortho")` of a float32 NHWC batch, as (real, imag), computed by matmuls.

  XLA's SPMD partitioner does not split an FFT along a sharded batch axis: it all-gathers the global batch onto
  every device (3 all-gathers per step, growing with the global batch; BENCHMARKS.md). A DFT written as einsums
  with cos/sin matrices partitions like any matmul, so the loss stays on each device's own images. HIGHEST
  precision keeps TF32/bf16 matmul passes out of a float32 loss. The cost grows as H*W*(H+W) rather than
  H*W*log(H*W): about 1% of a base train step at 256x256 crops, still under 2% at 512x512.
  """
  _, h, w, _ = x.shape
  cos_w, sin_w = _dft_cos_sin(w, w // 2 + 1)
  cos_h, sin_h = _dft_cos_sin(h, h)
  mm = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
  re = mm("bhwc,wk->bhkc", x, cos_w)  # x is real: the W-axis transform is re + i * im
  im = -mm("bhwc,wk->bhkc", x, sin_w)
  # (cos_h - i sin_h)^T (re + i im): the H-axis transform of a complex array in real arithmetic
  real = mm("hu,bhkc->bukc", cos_h, re) + mm("hu,bhkc->bukc", sin_h, im)
  imag = mm("hu,bhkc->bukc", cos_h, im) - mm("hu,bhkc->bukc", sin_h, re)
  return real, imag


def fft_loss(x, y):
  """L1 between 2-D spectra (real and imaginary parts), MIMO-UNet's frequency loss, orthonormally scaled.

  With norm="ortho" a spectrum coefficient has the magnitude of a pixel (Parseval), so `fft_weight` is a fraction
  comparable to the pixel loss. The unnormalised transform grows with sqrt(H*W) (about 6 against a pixel L1 of
  0.04 on 128x128 crops) and drowned the reconstruction term.
  """
  xr, xi = rfft2_ortho(x.astype(jnp.float32))
  yr, yi = rfft2_ortho(y.astype(jnp.float32))
  return jnp.mean(jnp.abs(xr - yr)) + jnp.mean(jnp.abs(xi - yi))


def standardize(z, eps=1e-5):
  """Per-image, per-channel spatial standardisation (float32): the latent with its scale and offset removed."""
  z = z.astype(jnp.float32)
  mean = jnp.mean(z, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(z - mean), axis=(1, 2), keepdims=True)
  return (z - mean) * jax.lax.rsqrt(var + eps)


def latent_consistency_loss(z_blurry, z_sharp, distance="l1", normalize=True):
  """Pulls the blurred view's latent onto the sharp view's; the sharp side is a stop-gradient target.

  `normalize` compares standardised latents. On raw latents every distance falls in proportion to the latent's
  scale, so the cheapest way to lower it is to shrink SAID's learned gamma (its gradient is positive for nearly
  every channel); standardised latents make the term blind to scale, so only a change of structure lowers it.
  The stop-gradient makes the sharp view the teacher; it does not by itself prevent collapse: what does is that
  the restored image is decoded from this latent, so a latent without the scene's structure costs reconstruction.
  """
  if normalize:
    z_b, z_s = standardize(z_blurry), standardize(z_sharp)
  else:
    z_b, z_s = z_blurry.astype(jnp.float32), z_sharp.astype(jnp.float32)
  z_s = jax.lax.stop_gradient(z_s)
  if distance == "l1":
    return jnp.mean(jnp.abs(z_b - z_s))
  if distance == "l2":
    return jnp.mean(jnp.square(z_b - z_s))
  if distance == "cosine":
    zb = z_b.reshape(z_b.shape[0], -1)
    zs = z_s.reshape(z_s.shape[0], -1)
    cos = jnp.sum(zb * zs, -1) / (jnp.linalg.norm(zb, axis=-1) * jnp.linalg.norm(zs, axis=-1) + 1e-8)
    return jnp.mean(1.0 - cos)
  check_names(None, distance)
  raise AssertionError(distance)


def info_nce_loss(e_blurry, e_sharp, temperature=0.1, stop_grad_sharp=False):
  """Symmetric InfoNCE over the (global) batch: each blurred view must pick its own scene's sharp view.

  Other images of the batch are the negatives, which is what "information comparison in latent space" needs beyond
  plain consistency: the latent must keep what distinguishes scenes while dropping what distinguishes blurs.
  """
  eb = e_blurry.astype(jnp.float32)
  es = e_sharp.astype(jnp.float32)
  if stop_grad_sharp:
    es = jax.lax.stop_gradient(es)
  eb = eb / (jnp.linalg.norm(eb, axis=-1, keepdims=True) + 1e-8)
  es = es / (jnp.linalg.norm(es, axis=-1, keepdims=True) + 1e-8)
  logits = eb @ es.T / temperature
  labels = jnp.arange(eb.shape[0])
  ce = optax.softmax_cross_entropy_with_integer_labels
  return 0.5 * (jnp.mean(ce(logits, labels)) + jnp.mean(ce(logits.T, labels)))


def stats_matching_loss(stats_blurry, stats_sharp, scale_free=True):
  """Distance between per-channel (mean, std) of raw encoder features of the two views, sharp side stop-gradient.

  SAID removes these statistics from what leaves the encoder; this term asks the encoder itself to stop producing
  blur-dependent statistics, so distilling does not have to do all the work.

  `scale_free` compares the mean offset in units of the sharp view's std and the log ratio of the stds. The raw
  L1 (`scale_free=False`) is not a fixed point the encoder can reach: blur lowers the std of high-pass channels,
  raising the blurred std means larger weights, which raise the sharp target's std too, and the gap grows with
  the feature scale. That chase is what made the term and the gradient norm explode (docs/DESIGN.md).
  """
  terms = []
  for (mb, sb), (ms, ss) in zip(stats_blurry, stats_sharp):
    ms, ss = jax.lax.stop_gradient(ms), jax.lax.stop_gradient(ss)
    if scale_free:
      terms.append(jnp.mean(jnp.abs((mb - ms) / ss)) + jnp.mean(jnp.abs(jnp.log(sb) - jnp.log(ss))))
    else:
      terms.append(jnp.mean(jnp.abs(mb - ms)) + jnp.mean(jnp.abs(sb - ss)))
  return sum(terms) / max(len(terms), 1)


def needs_sharp_view(loss_config) -> bool:
  return any(loss_config[k] > 0 for k in ("identity_weight", "latent_weight", "infonce_weight", "stats_weight"))


def total_loss(outputs, sharp, loss_config):
  """Weighted sum of all enabled terms and a dict of every term (unweighted) for logging."""
  kind = loss_config.reconstruction
  eps = loss_config.charbonnier_eps
  terms = {"rec": reconstruction_loss(outputs["restored"], sharp, kind, eps)}
  weights = {"rec": loss_config.rec_weight}
  if loss_config.fft_weight > 0:
    terms["fft"] = fft_loss(outputs["restored"], sharp)
    weights["fft"] = loss_config.fft_weight
  if loss_config.identity_weight > 0:
    terms["identity"] = reconstruction_loss(outputs["identity"], sharp, kind, eps)
    weights["identity"] = loss_config.identity_weight
    if loss_config.fft_weight > 0:
      terms["identity_fft"] = fft_loss(outputs["identity"], sharp)
      weights["identity_fft"] = loss_config.fft_weight * loss_config.identity_weight
  if loss_config.latent_weight > 0:
    terms["latent"] = latent_consistency_loss(
      outputs["latent_blurry"],
      outputs["latent_sharp"],
      loss_config.latent_distance,
      loss_config.get("latent_normalize", True),
    )
    weights["latent"] = loss_config.latent_weight
  if loss_config.infonce_weight > 0:
    terms["infonce"] = info_nce_loss(
      outputs["embed_blurry"],
      outputs["embed_sharp"],
      loss_config.infonce_temperature,
      loss_config.infonce_stop_grad_sharp,
    )
    weights["infonce"] = loss_config.infonce_weight
  if loss_config.stats_weight > 0:
    terms["stats"] = stats_matching_loss(
      outputs["stats_blurry"], outputs["stats_sharp"], loss_config.get("stats_scale_free", True)
    )
    weights["stats"] = loss_config.stats_weight
  loss = sum(weights[k] * terms[k] for k in terms)
  return loss, terms
