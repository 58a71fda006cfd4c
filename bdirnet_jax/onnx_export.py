"""--mode=export --format=onnx: the inference function as an ONNX graph (converted with jax2onnx).

The graph has one input `images`, float32 [batch, height, width, 3] RGB in [0, 1], and one output `deblurred` of
the same shape, with batch, height and width dynamic, except that height and width must be multiples of the
network's downsample factor (its U-Net halves the resolution at every level: 2**levels, 4 for `tiny`, 8 for
`small`). The multiple is written into the graph's input shape (dims `M*height`, `M*width`) and its metadata
(`multiple`). Padding is left to the caller because jax2onnx cannot carry the symbolic size arithmetic of in-graph
padding: pad bottom/right with reflection and crop the output back. The network's output near an edge depends a
little on how much padding it saw (SAID normalises with image statistics), so `Runner` pads to the same shape
bucket as `--mode=predict` does for a single image (predict.bucket_side), which makes the two agree to float
rounding; padding only to the multiple is cheaper and differs by a few uint8 levels on a small share of pixels.

The params are baked in as initializers; activations are float32.
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from bdirnet_jax import config_validation
from bdirnet_jax import inference

INPUT_NAME = "images"
OUTPUT_NAME = "deblurred"


def to_onnx(model, params, *, step: int | None = None):
  """The ONNX ModelProto of `model` with `params` baked in (symbolic batch, height, width)."""
  from jax2onnx import to_onnx as convert  # pylint: disable=g-import-not-at-top

  m = model.downsample_factor
  deblur = inference.deblur_fn(model)
  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"batch, {m}*height, {m}*width, 3"), jnp.float32)
  proto = convert(
    lambda images: deblur(params, images),
    [spec],
    model_name="bdirnet",
    input_names=[INPUT_NAME],
    output_names=[OUTPUT_NAME],
  )
  meta = {
    "multiple": str(m),
    "input": f"float32 [batch, height, width, 3] RGB in [0, 1]; height and width multiples of {m} "
    "(pad bottom/right with reflection, crop the output back)",
  }
  if step is not None:
    meta["step"] = str(step)
  for key, value in meta.items():
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
  return proto


def export(workdir, output_file, *, bf16: bool = False, use_ema: bool = True, step: int | None = None) -> None:
  """Writes the ONNX graph of `workdir`'s checkpoint (or pretrained package) to `output_file`."""
  if bf16:
    raise config_validation.ConfigError("--bf16 is not supported with --format=onnx (the graph is float32)")
  restored = inference.load(workdir, use_ema=use_ema, step=step)
  params = jax.tree.map(np.asarray, restored.params)
  proto = to_onnx(restored.model, params, step=restored.step)
  data = proto.SerializeToString()
  path = Path(output_file)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)
  logging.info(
    "export: step %d of %s -> %s (ONNX, %.1f MB, input float32 [batch, %d*h, %d*w, 3])",
    restored.step,
    workdir,
    path,
    len(data) / 1e6,
    restored.model.downsample_factor,
    restored.model.downsample_factor,
  )


class Runner:
  """onnxruntime (CPU) on images of any size: pads to predict's shape bucket (or to the multiple), crops back."""

  def __init__(self, path):
    import onnxruntime  # pylint: disable=g-import-not-at-top

    self.path = str(path)
    self.session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
    props = self.session.get_modelmeta().custom_metadata_map
    if "multiple" not in props:
      raise ValueError(f"{self.path}: no 'multiple' in the graph's metadata; not written by --format=onnx")
    self.multiple = int(props["multiple"])

  def __call__(self, images: np.ndarray, like_predict: bool = True) -> np.ndarray:
    from bdirnet_jax import predict  # pylint: disable=g-import-not-at-top

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"{self.path} expects float32 [batch, height, width, 3] in [0, 1], got {images.shape}")
    h, w = images.shape[1:3]
    if like_predict:
      padded = inference.pad_bottom_right(
        images, predict.bucket_side(h, self.multiple), predict.bucket_side(w, self.multiple)
      )
    else:
      padded, _ = inference.pad_to_multiple(images, self.multiple)
    return inference.crop(self.session.run([OUTPUT_NAME], {INPUT_NAME: padded})[0], (h, w))
