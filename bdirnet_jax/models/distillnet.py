"""DistillNet: the shared encoder that maps a blurred or a sharp view to a blur-free latent."""

from typing import Any
from typing import NamedTuple
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from bdirnet_jax.models.nafblock import NAFStage
from bdirnet_jax.models.said import SAID
from bdirnet_jax.models.said import channel_stats


class DistillOutput(NamedTuple):
  latent: Any  # [B, H/2^L, W/2^L, C_L] distilled bottleneck feature
  skips: tuple  # distilled skip features, finest first
  stats: tuple  # (mean, std) per scale of the raw (pre-SAID) features, finest first, latent last


class DistillNet(nn.Module):
  """U-Net encoder with SAID on every feature that leaves it.

  Both the latent and the skips pass through SAID (`said_skips`): what reaches the decoder carries no per-channel
  statistics of the input (blur still reaches it through the skips' spatial structure). The downsampling path
  continues from the raw feature: distilling is applied to what the decoder sees, not to what the deeper encoder
  layers need.
  """

  width: int
  enc_blocks: Sequence[int]
  middle_blocks: int
  said: str = "instance"
  said_skips: bool = True
  said_learned_mix: bool = False
  scan: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.width, (3, 3), padding="SAME", dtype=self.dtype, name="intro")(x.astype(self.dtype))
    c = self.width
    skips, stats = [], []
    for i, n in enumerate(self.enc_blocks):
      h = NAFStage(c, n, scan=self.scan, remat=self.remat, dtype=self.dtype, name=f"enc_{i}")(h)
      stats.append(channel_stats(h))
      skip_said = self.said if self.said_skips else "none"
      skips.append(SAID(skip_said, self.said_learned_mix, dtype=self.dtype, name=f"said_skip_{i}")(h))
      h = nn.Conv(2 * c, (2, 2), strides=(2, 2), padding="VALID", dtype=self.dtype, name=f"down_{i}")(h)
      c *= 2
    h = NAFStage(c, self.middle_blocks, scan=self.scan, remat=self.remat, dtype=self.dtype, name="middle")(h)
    stats.append(channel_stats(h))
    latent = SAID(self.said, self.said_learned_mix, dtype=self.dtype, name="said_latent")(h)
    return DistillOutput(latent=latent, skips=tuple(skips), stats=tuple(stats))
