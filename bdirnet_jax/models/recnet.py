"""RecNet: the decoder that rebuilds a sharp image from the distilled latent and skips."""

from typing import Any
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from bdirnet_jax.models.nafblock import NAFStage
from bdirnet_jax.models.sair import SAIR


def pixel_shuffle(x, factor=2):
  """Depth-to-space in NHWC (PyTorch PixelShuffle channel order)."""
  b, h, w, c = x.shape
  oc = c // (factor * factor)
  x = x.reshape(b, h, w, oc, factor, factor)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h * factor, w * factor, oc)


class RecNet(nn.Module):
  """Pixel-shuffle upsampling, SAIR skip fusion and NAF stages, plus a global residual from the input image.

  The global residual lets the network predict only the correction, which is also what keeps full-image brightness
  and colour intact even though SAID normalised every feature it receives.
  """

  width: int
  dec_blocks: Sequence[int]
  sair: bool = True
  global_residual: bool = True
  scan: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, latent, skips, inputs):
    h = latent
    levels = len(self.dec_blocks)
    for j, (n, skip) in enumerate(zip(self.dec_blocks, reversed(skips))):
      c = self.width * 2 ** (levels - 1 - j)
      h = nn.Conv(4 * c, (1, 1), use_bias=False, dtype=self.dtype, name=f"up_{j}")(h)
      h = pixel_shuffle(h, 2)
      h = SAIR(self.sair, dtype=self.dtype, name=f"sair_{j}")(h, skip)
      h = NAFStage(c, n, scan=self.scan, remat=self.remat, dtype=self.dtype, name=f"dec_{j}")(h)
    # Zero-initialised: a fresh network returns its input, so training starts at the blurred image's PSNR.
    out = nn.Conv(
      inputs.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros, dtype=self.dtype, name="ending"
    )(h)
    out = out.astype(jnp.float32)
    return inputs.astype(jnp.float32) + out if self.global_residual else out
