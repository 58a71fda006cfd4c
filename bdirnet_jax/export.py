"""--mode=export: the inference function as a serialized `jax.export` artifact, loadable without this code.

The artifact maps float32 [b, h, w, 3] RGB in [0, 1] (any b >= 1, h >= 1, w >= 1: the shapes are symbolic) to the
deblurred float32 [b, h, w, 3] in [0, 1]. It pads H and W to the network's multiple itself, with the same reflect
(or, for a 1-pixel side, edge) padding as inference.pad_to_multiple, so it matches the live `predict` path for an
image that needs no bucket padding. The params are baked in as constants; `--bf16` bakes in bfloat16 activations.
It is lowered for CPU and CUDA, so one file serves both; a new shape compiles on first call (jax caches it).

Load it with `load_exported(path)`, or anywhere with a compatible jax:
`jax.export.deserialize(open(path, "rb").read()).call(images)`.
"""

from pathlib import Path
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
from absl import logging
from jax import export as jax_export

from bdirnet_jax import inference
from bdirnet_jax.models import BDIRNet

PLATFORMS = ("cpu", "cuda")


def _pad_indices(n, size, reflect):
  """Source index for each of `size` positions of an axis of length n, padded like np.pad reflect/edge.

  Written with a modulo so it works for symbolic n and for pads longer than n - 1 (numpy reflects repeatedly).
  """
  i = jnp.arange(size)
  period = jnp.maximum(2 * (n - 1), 1)
  j = i % period
  reflected = jnp.where(j < n, j, period - j)
  return jnp.where(reflect, reflected, jnp.minimum(i, n - 1))


def padded_deblur_fn(model: BDIRNet, params) -> Callable[[jax.Array], jax.Array]:
  """images [b, h, w, 3] (any h, w) -> deblurred [b, h, w, 3]; pads to the multiple inside, so h, w may be symbolic."""
  fn = inference.deblur_fn(model)
  m = model.downsample_factor

  def padded(images):
    h, w = images.shape[1], images.shape[2]
    hp, wp = m * ((h + m - 1) // m), m * ((w + m - 1) // m)
    reflect = jnp.minimum(h, w) > 1  # pad_to_multiple edge-pads both axes when either side is 1 pixel
    x = jnp.take(images, _pad_indices(h, hp, reflect), axis=1)
    x = jnp.take(x, _pad_indices(w, wp, reflect), axis=2)
    return fn(params, x)[:, :h, :w, :]

  return padded


def export_fn(model: BDIRNet, params, platforms=PLATFORMS) -> jax_export.Exported:
  """The exported deblur function with symbolic batch, height and width."""
  b, h, w = jax_export.symbolic_shape("b, h, w")
  spec = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
  return jax_export.export(jax.jit(padded_deblur_fn(model, params)), platforms=platforms)(spec)


def export(workdir, output_file, *, bf16=False, use_ema=True, step=None) -> None:
  """Writes the serialized inference function of `workdir`'s checkpoint to `output_file`."""
  restored = inference.load(workdir, use_ema=use_ema, step=step, bf16=bf16)
  exported = export_fn(restored.model, restored.params)
  data = exported.serialize()
  path = Path(output_file)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_bytes(data)
  tmp.replace(path)
  logging.info(
    "export: step %d of %s -> %s (%.1f MB, input %s, platforms %s, %s)",
    restored.step,
    workdir,
    path,
    len(data) / 1e6,
    exported.in_avals[0],
    ",".join(exported.platforms),
    "bfloat16" if bf16 else "float32",
  )


def load_exported(path) -> Callable[[Any], jax.Array]:
  """A callable running the artifact at `path` on float32 [b, h, w, 3] images in [0, 1] (numpy or jax)."""
  path = Path(path)
  try:
    exported = jax_export.deserialize(bytearray(path.read_bytes()))
  except Exception as e:  # the deserializer raises assorted types on a foreign file
    raise ValueError(f"{path}: not a jax.export artifact written by --mode=export ({type(e).__name__}: {e})") from e

  def call(images):
    images = jnp.asarray(images, dtype=jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"{path} expects float32 [batch, height, width, 3] RGB in [0, 1], got shape {images.shape}")
    return exported.call(images)

  return call
