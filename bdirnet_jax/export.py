"""--mode=export: the inference function as a serialized `jax.export` artifact, loadable without this code.

The artifact maps float32 [b, h, w, 3] RGB in [0, 1] (any b >= 1, h >= 1, w >= 1: the shapes are symbolic) to the
deblurred float32 [b, h, w, 3] in [0, 1]. It pads H and W to the network's multiple itself, with the same reflect
(or, for a 1-pixel side, edge) padding as inference.pad_to_multiple, so it matches the live `predict` path for an
image that needs no bucket padding. The params are baked in as constants; `--bf16` bakes in bfloat16 activations.
It is lowered for CPU and CUDA, so one file serves both; a new shape compiles on first call (jax caches it).

Load it with `load_exported(path)` (which checks the input contract: float32, [0, 1], [b, h, w, 3] RGB, any size;
see its docstring), or anywhere with a compatible jax: `jax.export.deserialize(open(path, "rb").read()).call(images)`
(unchecked: a uint8 image there returns garbage).
"""

from pathlib import Path
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import export as jax_export

from bdirnet_jax import inference
from bdirnet_jax.models import BDIRNet

PLATFORMS = ("cpu", "cuda")
RANGE_TOLERANCE = 1e-3  # load_exported accepts [0, 1] up to this, for inputs that went through rounding


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
  """A callable running the artifact at `path`: deblurred images from blurred ones.

  Input contract (checked before the call, so a wrong input fails clearly instead of returning a white or black
  image):
  - dtype: float32 (float16/bfloat16/float64 are converted); integer images (uint8 [0, 255], uint16) are refused:
    divide by 255 (or 65535) first;
  - range: [0, 1]; values outside it (beyond a 1e-3 tolerance for rounding) are refused;
  - layout: [batch, height, width, 3], channels last, RGB order (OpenCV's BGR must be reversed); a single image
    needs a batch axis (`image[None]`);
  - size: any height and width >= 1; the artifact pads to the network's multiple (its downsampling factor,
    2^encoder levels) inside and crops back, so no size multiple is asked of the caller.
  Output: float32 [batch, height, width, 3] RGB, the same size, in [0, 1] up to the network's overshoot (clip
  before converting to uint8).

  Raises FileNotFoundError for a missing file, ValueError for a file that is not an artifact or a refused input.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: exported model not found (write one with --mode=export --output={path})")
  try:
    exported = jax_export.deserialize(bytearray(path.read_bytes()))
  except Exception as e:  # the deserializer raises assorted types on a foreign file
    raise ValueError(f"{path}: not a jax.export artifact written by --mode=export ({type(e).__name__}: {e})") from e

  def call(images):
    expected = "expects float32 [batch, height, width, 3] RGB in [0, 1]"
    dtype = getattr(images, "dtype", None)
    if dtype is None:
      images = np.asarray(images)
      dtype = images.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
        f"{path} {expected}, got dtype {dtype}: convert first (uint8 images: image.astype(np.float32) / 255)"
      )
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"{path} {expected}, got shape {tuple(images.shape)} (one image: add a batch axis, x[None])")
    images = jnp.asarray(images, dtype=jnp.float32)
    lo, hi = float(jnp.min(images)), float(jnp.max(images))
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
      raise ValueError(f"{path} {expected}, got values in [{lo:g}, {hi:g}]: scale to [0, 1] first")
    return exported.call(images)

  return call
