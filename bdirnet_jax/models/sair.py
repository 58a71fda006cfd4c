"""SAIR: statistics-aware anti-interference reconstruction (RecNet).

Interpretation (docs/DESIGN.md, "SAIR"): whatever degradation the encoder did not remove shows up as atypical
feature statistics in the decoder. SAIR reads the per-channel mean and standard deviation of the fused decoder
feature and predicts a per-channel scale and shift (a statistics-conditioned FiLM), letting the decoder re-normalise
each image adaptively instead of trusting fixed weights tuned to the training blur.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bdirnet_jax.models.said import channel_stats


class SAIR(nn.Module):
  """Fuses a (distilled) skip into the decoder feature, then applies statistics-conditioned modulation.

  The output projection starts at zero, so a fresh SAIR is the plain additive skip of a U-Net; `enabled=False`
  keeps only that (ablation `no_sair`).
  """

  enabled: bool = True
  reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, skip):
    x = x + skip
    if not self.enabled:
      return x
    c = x.shape[-1]
    mean, std = channel_stats(x)
    h = jnp.concatenate([mean, std], axis=-1)
    h = nn.gelu(nn.Dense(max(c // self.reduction, 8), name="stats_fc")(h))
    film = nn.Dense(2 * c, kernel_init=nn.initializers.zeros, name="film")(h)
    scale, shift = jnp.split(film[:, None, None, :], 2, axis=-1)
    return (x * (1.0 + scale.astype(self.dtype)) + shift.astype(self.dtype)).astype(self.dtype)
