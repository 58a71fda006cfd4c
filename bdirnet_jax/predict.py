"""Deblurs image files with a trained workdir: shape buckets keep compilations few, big images are tiled.

Every network call sees a padded shape from a small set (`batching.Batcher` with buckets: H and W rounded up to a
bucket, the batch to a power of two times the device count); reflect padding keeps the statistics SAID normalises
close to the unpadded image's, but not identical, so a result differs from evaluate's (which pads only to the
multiple): by up to 18 uint8 levels (mean 2.5) for a 40x52 photo padded to 64x64 by the 4-step tiny test network
(tests/test_main_modes.py).

An image is tiled (see tiling.py) when a side exceeds --tile, or, with --tile unset, when one forward pass of its
bucket would not fit the device memory (estimated from XLA's memory analysis of a small input, scaled by pixels).
The core, `Predictor`, takes any batch apply function and pixel arrays, so the tiling and batching are testable on
their own; which files to read, the reading and writing, and the report are predict_io's.
"""

import dataclasses
import functools
import math
import os
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from bdirnet_jax import batching
from bdirnet_jax import image_io
from bdirnet_jax import inference
from bdirnet_jax import predict_io
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import tiling

AUTO_TILES = (2048, 1024, 512, 256, 128)
DEVICE_MEMORY_FRACTION = 0.8
HOST_MEMORY_FRACTION = 0.5  # CPU backends: of the physical RAM, shared by the (possibly fake) CPU devices
FALLBACK_BYTES_PER_PIXEL = 4096.0  # when XLA gives no memory analysis: conservative for the presets
bucket_side = batching.bucket_side  # the benchmarks' name for it


@dataclasses.dataclass(frozen=True)
class MemoryModel:
  """Device memory one forward pass needs per input pixel, against what one device has for it."""

  bytes_per_pixel: float
  budget_bytes: float

  def images_that_fit(self, pixels: int) -> int:
    return int(self.budget_bytes // (self.bytes_per_pixel * pixels))


def memory_budget(devices, reserved_bytes: float = 0.0) -> float:
  """Bytes one device can give to activations: its allocator limit, or on CPU a share of the host's RAM."""
  stats = devices[0].memory_stats() or {}
  if "bytes_limit" in stats:
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    return DEVICE_MEMORY_FRACTION * free
  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return HOST_MEMORY_FRACTION * host / len(devices) - reserved_bytes


def estimate_memory(jitted, params, mesh: jax.sharding.Mesh, multiple: int, probe: int = 128) -> MemoryModel:
  """Compiles the forward for one probe-sized image per device and scales XLA's per-device memory by pixels."""
  side = math.lcm(probe, multiple)
  n = mesh.devices.size
  x = jax.ShapeDtypeStruct((n, side, side, 3), jnp.float32, sharding=sharding_lib.batch_sharding(mesh))
  analysis = jitted.lower(params, x).compile().memory_analysis()
  param_bytes = sum(p.nbytes for p in jax.tree.leaves(params))
  if analysis is None:
    bpp = FALLBACK_BYTES_PER_PIXEL
  else:
    used = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    bpp = max(used - param_bytes, 1) / (side * side)
  return MemoryModel(bpp, memory_budget(list(mesh.devices.flat), reserved_bytes=param_bytes))


class _LazyTiles:
  """One batch of tiles' device output; copied to the host (and cropped) only when read, so the device runs ahead."""

  def __init__(self, out, n: int, h: int, w: int):
    self.out, self.n, self.h, self.w = out, n, h, w

  def __array__(self, dtype=None, copy=None):
    a = np.asarray(self.out)[: self.n, : self.h, : self.w]
    return a if dtype is None else a.astype(dtype)


class Predictor:
  """Deblurs images (OpenCV-layout pixels, see image_io) with `apply`, batching by bucket and tiling big ones.

  apply(float32 [N, H, W, 3] RGB in [0, 1]) -> [N, H, W, 3] in [0, 1], for N a multiple of `batch_multiple` (the
  device count) and H, W multiples of `multiple` (the network's downsampling factor). tile: None = tile only what
  `memory` says does not fit (never, without a memory model); 0 = never; T = images with a side over T, in tiles of
  T (rounded down to the multiple). batch_size: images or tiles per step over all devices (rounded up to the device
  count); None = up to batching.MAX_IMAGES_PER_DEVICE per device, as memory allows.
  """

  def __init__(
    self,
    apply: Callable[[np.ndarray], Any],
    *,
    multiple: int = 1,
    batch_multiple: int = 1,
    tile: int | None = None,
    tile_overlap: int = 32,
    batch_size: int | None = None,
    memory: MemoryModel | None = None,
  ):
    self.apply, self.multiple, self.batch_multiple, self.memory = apply, multiple, batch_multiple, memory
    self.tile_overlap, self.batch_size = tile_overlap, batch_size
    if tile_overlap < 0:
      raise ValueError(f"--tile_overlap must be >= 0, got {tile_overlap}")
    self.batcher = batching.Batcher(
      apply,
      self._deliver,
      multiple=multiple,
      batch_multiple=batch_multiple,
      batch_size=batch_size,
      memory=memory,
      prepare=image_io.to_rgb01,
      to_host=True,
      on_error=self._fail,
      log_name="predict",
    )
    if tile is None or tile == 0:
      self.tile = tile
      rounded = [t // multiple * multiple for t in AUTO_TILES]
      self._auto_tiles = [t for t in rounded if tiling.tile_fits(t, tile_overlap, multiple)]
      if tile is None and memory is not None and not self._auto_tiles:
        raise ValueError(
          f"--tile_overlap={tile_overlap} leaves no room for automatic tiles of "
          f"{min(AUTO_TILES)} pixels; pass a smaller overlap or an explicit --tile"
        )
    else:
      self.tile = tile // multiple * multiple
      if tile < 0 or not tiling.tile_fits(self.tile, tile_overlap, multiple):
        raise ValueError(
          f"--tile={tile} (rounded down to the network's multiple {multiple}: {self.tile}) must "
          f"exceed --tile_overlap={tile_overlap} by at least {multiple}"
        )

  @property
  def shapes(self) -> set[tuple[int, ...]]:
    """Every padded batch shape run: one compilation each for a jit."""
    return self.batcher.shapes

  @property
  def compilations(self) -> int:
    return self.batcher.compilations

  def bucket(self, h: int, w: int) -> tuple[int, int]:
    return self.batcher.bucket(h, w)

  def tile_size(self, h: int, w: int) -> int | None:
    """The tile size for an HxW image, or None to run it whole."""
    if self.tile == 0:
      return None
    if self.tile is not None:
      return self.tile if max(h, w) > self.tile else None
    if self.memory is None or self.memory.images_that_fit(math.prod(self.bucket(h, w))) >= 1:
      return None
    for t in self._auto_tiles:
      if self.memory.images_that_fit(math.prod(self.bucket(min(t, h), min(t, w)))) >= 1:
        return t
    return self._auto_tiles[-1]

  @staticmethod
  def _deliver(tags, out, sizes) -> None:
    for k, ((pixels, done), (h, w)) in enumerate(zip(tags, sizes)):
      done(image_io.from_rgb01(out[k, :h, :w], pixels))

  @staticmethod
  def _fail(tags, error: Exception) -> None:
    for _, done in tags:
      done(error)

  def _run_tiled(self, pixels: np.ndarray, tile: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    layout = tiling.make_layout(h, w, tile, self.tile_overlap, align=self.multiple)
    bucket = self.batcher.shape_for(layout.tile_height, layout.tile_width)
    batch = self.batcher.batch_for(layout.num_tiles, math.prod(bucket))
    out = np.empty_like(pixels)

    bar = tqdm(total=layout.num_tiles, unit="tile", desc="  tiles", leave=False, disable=None)

    def apply_batch(tiles):
      result, n = self.batcher.run_batch(list(tiles), batch, bucket)
      bar.update(len(tiles))
      return _LazyTiles(result, n, layout.tile_height, layout.tile_width)

    def write_rows(y0, rows):
      out[y0 : y0 + rows.shape[0]] = image_io.from_rgb01(rows, pixels[y0 : y0 + rows.shape[0]])

    tiling.run_tiled(
      layout,
      lambda y, x, th, tw: image_io.to_rgb01(pixels[y : y + th, x : x + tw]),
      apply_batch,
      write_rows,
      batch_size=batch,
    )
    bar.close()
    return out

  # ---------------------------------------------------------------------------------------------------------------

  def submit(self, pixels: np.ndarray, done: Callable[[Any], None], name: str = "image") -> None:
    """Queues one image; `done` later receives the deblurred pixels (same shape and dtype) or the exception."""
    h, w = pixels.shape[:2]
    tile = self.tile_size(h, w)
    if tile is not None:
      layout = tiling.make_layout(h, w, tile, self.tile_overlap, align=self.multiple)
      logging.info(
        "predict: %s (%dx%d HxW) in %d tiles of %dx%d, overlap %d",
        name,
        h,
        w,
        layout.num_tiles,
        layout.tile_height,
        layout.tile_width,
        self.tile_overlap,
      )
      try:
        result = self._run_tiled(pixels, tile)
      except Exception as e:  # pylint: disable=broad-except
        done(e)
        return
      done(result)
      return
    self.batcher.add(pixels, (pixels, done))

  def finish(self) -> None:
    """Runs every partly filled bucket."""
    self.batcher.finish()

  def deblur(self, images: list[np.ndarray]) -> list[np.ndarray]:
    """In-memory: OpenCV-layout pixel arrays in, deblurred arrays of the same shape and dtype out."""
    results: list[Any] = [None] * len(images)

    def store(i, result):
      results[i] = result

    for i, pixels in enumerate(images):
      self.submit(pixels, functools.partial(store, i), name=f"image {i}")
    self.finish()
    for r in results:
      if isinstance(r, Exception):
        raise r
    return results


def predict(
  workdir,
  input_path,
  output_dir,
  *,
  tile=None,
  tile_overlap=32,
  batch_size=None,
  bf16=False,
  use_ema=True,
  step=None,
  keep_raw_orientation=False,
  keep_ext=False,
  overwrite=False,
) -> int:
  """--mode=predict: deblurs a file or folder with the checkpoint of `workdir`; returns the exit status.

  Raises predict_io.PlanError before the model loads when the request is refused (see predict_io.plan).
  """
  work = predict_io.plan(input_path, output_dir, keep_ext=keep_ext, overwrite=overwrite)
  if jax.process_count() > 1:  # every process checks for existing outputs before any of them writes one
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices("predict: planned")
  restored = inference.load(workdir, use_ema=use_ema, step=step, bf16=bf16)
  devices = jax.local_devices()
  mesh = sharding_lib.create_mesh((-1, 1), devices=devices)
  jitted = inference.jit_deblur(restored.model, mesh)
  params = jax.device_put(restored.params, sharding_lib.replicated(mesh))
  multiple = restored.model.downsample_factor
  memory = estimate_memory(jitted, params, mesh, multiple) if tile is None else None
  if memory is not None:
    logging.info(
      "predict: about %.0f bytes per pixel per device, budget %.2f GB per device",
      memory.bytes_per_pixel,
      memory.budget_bytes / 1e9,
    )
  logging.info(
    "predict: step %d of %s on %d %s device(s), %s",
    restored.step,
    workdir,
    len(devices),
    devices[0].platform,
    "bfloat16" if bf16 else "float32",
  )
  predictor = Predictor(
    functools.partial(jitted, params),
    multiple=multiple,
    batch_multiple=len(devices),
    tile=tile,
    tile_overlap=tile_overlap,
    batch_size=batch_size,
    memory=memory,
  )
  status = predict_io.deblur_files(
    predictor,
    input_path,
    output_dir,
    shard=(jax.process_index(), jax.process_count()),
    keep_raw_orientation=keep_raw_orientation,
    work=work,
  )
  logging.debug("predict: %d compilation(s), batch shapes %s", predictor.compilations, sorted(predictor.shapes))
  cache_size = getattr(jitted, "_cache_size", None)
  if cache_size is not None:
    logging.debug("predict: jit cache holds %d executable(s)", cache_size())
  return status
