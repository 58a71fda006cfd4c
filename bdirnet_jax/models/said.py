"""SAID: statistical anti-interference distilling (DistillNet).

Interpretation (docs/DESIGN.md, "SAID"): blur acts on deep features largely as a change of their per-channel
first and second moments (a blurred image has lower high-frequency energy, hence lower feature variance and shifted
means). Removing the instance statistics and re-modulating with learned, input-independent parameters leaves a
feature whose statistics carry no information about the degradation, so a blurred and a sharp view of the same scene
can land on the same latent structure.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

SAID_MODES = ("instance", "none")


def check_mode(mode) -> str:
  """`config.model.said`, one of SAID_MODES (config_validation asks before anything is built)."""
  if not isinstance(mode, str) or mode not in SAID_MODES:
    raise ValueError(f"config.model.said must be one of {sorted(SAID_MODES)}, got {mode!r}")
  return mode


def channel_stats(x, eps=1e-5):
  """Per-image, per-channel spatial mean and standard deviation, in float32."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2))
  var = jnp.mean(jnp.square(x - mean[:, None, None, :]), axis=(1, 2))
  return mean, jnp.sqrt(var + eps)


class SAID(nn.Module):
  """Instance-statistics removal plus learned re-modulation.

  mode="instance": y = gamma * (x - mu) / sigma + beta.  `learned_mix` adds a per-channel gate rho in (0, 1)
  (initialised near 1) blending the distilled and the raw feature, as in batch-instance normalisation: a study
  can check whether the network wants to keep some statistics. mode="none" is the identity (ablation `no_said`).
  """

  mode: str = "instance"
  learned_mix: bool = False
  eps: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.mode == "none":
      return x
    if self.mode != "instance":
      check_mode(self.mode)
    c = x.shape[-1]
    mean, std = channel_stats(x, self.eps)
    xn = (x.astype(jnp.float32) - mean[:, None, None, :]) / std[:, None, None, :]
    gamma = self.param("gamma", nn.initializers.ones, (c,), jnp.float32)
    beta = self.param("beta", nn.initializers.zeros, (c,), jnp.float32)
    y = xn * gamma + beta
    if self.learned_mix:
      rho = jax.nn.sigmoid(self.param("mix_logit", nn.initializers.constant(3.0), (c,), jnp.float32))
      y = rho * y + (1.0 - rho) * x.astype(jnp.float32)
    return y.astype(self.dtype)
