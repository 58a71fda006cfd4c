"""What evaluate, predict and export share: the restored model, padding to the network's multiple, and the
jitted, batch-sharded deblur function."""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bdirnet_jax import checkpoint
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax.models import BDIRNet, create_model


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


def pad_to_multiple(images: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
  """Reflect-pads the H and W axes (of HxWxC or NxHxWxC) up to a multiple; returns the original (H, W).

  Reflection keeps the image statistics that SAID normalises close to the unpadded image's; images too small to
  reflect (a side of 1 pixel) are edge-padded instead.
  """
  h, w = images.shape[-3], images.shape[-2]
  ph, pw = (-h) % multiple, (-w) % multiple
  if ph == 0 and pw == 0:
    return images, (h, w)
  pads = [(0, 0)] * (images.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  mode = "reflect" if min(h, w) > 1 else "edge"
  return np.pad(images, pads, mode=mode), (h, w)


def crop(images, hw: tuple[int, int]):
  return images[..., : hw[0], : hw[1], :]


def deblur_fn(model: BDIRNet) -> Callable[[Any, jax.Array], jax.Array]:
  """(params, uint8 or [0,1] float NHWC with H, W multiples of the downsample factor) -> float32 [0,1]."""

  def fn(params, images):
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)
    out = model.apply({"params": params}, x.astype(model.dtype), method=model.deblur)
    return jnp.clip(out.astype(jnp.float32), 0.0, 1.0)

  return fn


def jit_deblur(model: BDIRNet, mesh: jax.sharding.Mesh) -> Callable[[Any, jax.Array], jax.Array]:
  """Jitted deblur with the batch sharded over the mesh's data axis and params replicated.

  The batch size must be a multiple of the data axis size (callers pad the batch with copies).
  """
  return jax.jit(deblur_fn(model), in_shardings=(sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))


def pad_batch(images: np.ndarray, multiple: int) -> tuple[np.ndarray, int]:
  """Pads the batch axis to a multiple (repeating the last image) so it splits evenly over devices."""
  n = images.shape[0]
  extra = (-n) % multiple
  if extra:
    images = np.concatenate([images, np.repeat(images[-1:], extra, axis=0)], axis=0)
  return images, n
