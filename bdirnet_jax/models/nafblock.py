"""NAFNet's block (Chen et al., ECCV'22) in Flax, the accelerator-friendly backbone of BDIRNet.

Everything is NHWC: 1x1 convolutions are plain matmuls over the channel axis and the depthwise 3x3 stays in the
layout XLA fuses best, which is why this port trains much faster than the NCHW PyTorch original.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def simple_gate(x):
  """Halves channels by multiplying the two halves: a non-linearity without activation functions."""
  a, b = jnp.split(x, 2, axis=-1)
  return a * b


class NAFBlock(nn.Module):
  """LayerNorm -> 1x1 -> depthwise 3x3 -> SimpleGate -> channel attention -> 1x1, then a gated FFN.

  The residual scales `beta`/`gamma` start at zero, so a freshly initialised block is the identity and deep stacks
  train stably without warm-up tricks.
  """

  features: int
  dw_expand: int = 2
  ffn_expand: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.features
    dense = lambda f, name: nn.Conv(f, (1, 1), dtype=self.dtype, name=name)
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
    y = dense(c * self.dw_expand, "conv1")(y)
    y = nn.Conv(
      c * self.dw_expand,
      (3, 3),
      padding="SAME",
      feature_group_count=c * self.dw_expand,
      dtype=self.dtype,
      name="dwconv",
    )(y)
    y = simple_gate(y)
    # Simplified channel attention: global average pool, then a 1x1 projection.
    pooled = jnp.mean(y.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(y.dtype)
    y = y * dense(c * self.dw_expand // 2, "sca")(pooled)
    y = dense(c, "conv3")(y)
    beta = self.param("beta", nn.initializers.zeros, (c,), jnp.float32)
    x = x + y * beta.astype(y.dtype)

    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
    y = dense(c * self.ffn_expand, "conv4")(y)
    y = simple_gate(y)
    y = dense(c, "conv5")(y)
    gamma = self.param("gamma", nn.initializers.zeros, (c,), jnp.float32)
    return x + y * gamma.astype(y.dtype)


class _ScanBody(nn.Module):
  """NAFBlock with the (carry, out) signature nn.scan needs."""

  features: int
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x, _):
    # Inside a scan, remat needs no CSE barrier (the loop already keeps the recomputation from being merged with
    # the forward pass), and the barrier would stop XLA from fusing across it.
    block = nn.remat(NAFBlock, prevent_cse=False) if self.remat else NAFBlock
    return block(self.features, dtype=self.dtype, name="block")(x), None


class NAFStage(nn.Module):
  """`num_blocks` NAFBlocks at one resolution.

  `scan=True` compiles one block body and loops it (params stacked on a leading axis): compile time stays flat in
  depth, which matters for the 20+ block bottleneck of the larger presets. `remat=True` recomputes activations in
  the backward pass to trade FLOPs for memory.
  """

  features: int
  num_blocks: int
  scan: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.num_blocks == 0:
      return x
    if self.scan and self.num_blocks > 1:
      body = nn.scan(_ScanBody, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.num_blocks)
      x, _ = body(self.features, dtype=self.dtype, remat=self.remat, name="scan")(x, None)
      return x
    block = nn.remat(NAFBlock) if self.remat else NAFBlock
    for i in range(self.num_blocks):
      x = block(self.features, dtype=self.dtype, name=f"block_{i}")(x)
    return x
