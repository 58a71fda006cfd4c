"""What evaluate, predict and export share: the restored model, padding to the network's multiple, and the
jitted, batch-sharded deblur function."""

import dataclasses
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bdirnet_jax import checkpoint
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train_step
from bdirnet_jax.models import BDIRNet
from bdirnet_jax.models import create_model


@dataclasses.dataclass
class Restored:
  model: BDIRNet
  params: Any
  step: int
  config: ml_collections.ConfigDict


def load(workdir: str, *, use_ema: bool = True, step: int | None = None, bf16: bool = False) -> Restored:
  """The trained model of `workdir` (its saved config.json decides the architecture)."""
  params, step, config = checkpoint.restore_params(str(workdir), use_ema=use_ema, step=step)
  dtype = "bfloat16" if bf16 else "float32"
  return Restored(create_model(config.model, dtype), params, int(step), config)


def pad_mode(height: int, width: int) -> str:
  """How an image of this size is padded: reflection keeps the statistics SAID normalises close to the unpadded
  image's; an image too small to reflect (a side of 1 pixel) is edge-padded instead."""
  return "reflect" if min(height, width) > 1 else "edge"


def pad_bottom_right(images: np.ndarray, height: int, width: int, mode: str | None = None) -> np.ndarray:
  """Pads the H and W axes (of HxWxC or NxHxWxC) at the bottom/right to (height, width).

  `mode` defaults to `pad_mode` of the array's own size; a tile of a larger image passes the image's mode, so it
  is padded as the whole image would be.
  """
  h, w = images.shape[-3], images.shape[-2]
  if (h, w) == (height, width):
    return images
  pads = [(0, 0)] * (images.ndim - 3) + [(0, height - h), (0, width - w), (0, 0)]
  return np.pad(images, pads, mode=mode or pad_mode(h, w))


def pad_to_multiple(images: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  """Pads H and W (of HxWxC or NxHxWxC) up to a multiple with `pad_bottom_right`; returns the original (H, W)."""
  h, w = images.shape[-3], images.shape[-2]
  return pad_bottom_right(images, -(-h // multiple) * multiple, -(-w // multiple) * multiple), (h, w)


def crop(images, hw: tuple[int, int]):
  return images[..., : hw[0], : hw[1], :]


def deblur_fn(model: BDIRNet) -> Callable[[Any, jax.Array], jax.Array]:
  """(params, uint8 or [0,1] float NHWC with H, W multiples of the downsample factor) -> float32 [0,1].

  The model gets the float32 input whatever its compute dtype: DistillNet casts it for its convolutions and
  RecNet's global residual adds it back in float32, as in training. Casting it to bfloat16 here would quantise the
  output itself (bf16 has 8 significant bits: up to 0.5 uint8 levels near white, and a 16-bit input's precision
  lost), not just the predicted correction.
  """

  def fn(params, images):
    out = model.apply({"params": params}, train_step.to_float(images), method=model.deblur)
    return jnp.clip(out.astype(jnp.float32), 0.0, 1.0)

  return fn


class _PlacedDeblur:
  """The jitted deblur, placing a host (numpy) batch on the mesh's batch sharding first: with several processes
  jit refuses a host array whose sharding is not replicated, even over this process's own devices. Everything
  else (`lower`, the jit cache) is the jitted function's."""

  def __init__(self, jitted, batch_sharding):
    self._jitted, self._batch_sharding = jitted, batch_sharding

  def __call__(self, params, images):
    if isinstance(images, np.ndarray):
      images = jax.device_put(images, self._batch_sharding)
    return self._jitted(params, images)

  def __getattr__(self, name):
    if name.startswith("_") and name in ("_jitted", "_batch_sharding"):  # not set yet (a copy being made)
      raise AttributeError(name)
    return getattr(self._jitted, name)


def jit_deblur(model: BDIRNet, mesh: jax.sharding.Mesh) -> Callable[[Any, jax.Array], jax.Array]:
  """Jitted deblur with the batch sharded over the mesh's data axis and params replicated.

  The batch size must be a multiple of the data axis size (callers pad the batch with copies). A numpy batch is
  placed on the devices first, so a mesh of this process's devices works in multi-process runs too.
  """
  jitted = jax.jit(
    deblur_fn(model),
    in_shardings=(sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)),
    out_shardings=sharding_lib.batch_sharding(mesh),
  )
  return _PlacedDeblur(jitted, sharding_lib.batch_sharding(mesh))


def pad_batch(images: np.ndarray, multiple: int) -> tuple[np.ndarray, int]:
  """Pads the batch axis to a multiple (repeating the last image) so it splits evenly over devices."""
  n = images.shape[0]
  extra = (-n) % multiple
  if extra:
    images = np.concatenate([images, np.repeat(images[-1:], extra, axis=0)], axis=0)
  return images, n
