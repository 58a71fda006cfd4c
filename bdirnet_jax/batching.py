"""The one inference batcher of evaluate, predict and the study: images queue by padded shape, run in batches of a
multiple of the device count, and come back with their original sizes.

Two shape policies. `buckets=False` pads H and W only to the network's multiple and batches images of one exact
size (evaluate and the study: a score equals that of the image run alone). `buckets=True` rounds H and W up to a
bucket (`bucket_side`: a multiple of max(64, 2^(floor(log2 side) - 2)) and of the network's multiple; sides up to
256 pad to a multiple of 64, longer ones by at most 25%, four sizes per octave) and lets an image run in an already
compiled bucket of up to REUSE_AREA times its own bucket's area (predict: a folder of assorted photos compiles a few
shapes, not one per size). Reflect padding (`inference.pad_bottom_right`) keeps the statistics SAID normalises close
to the unpadded image's, but a bucketed result still differs from an unbucketed one (see predict.py: up to 18
uint8 levels for a small photo and a barely trained network).
"""

import collections
import math
from typing import Any
from typing import Callable

import numpy as np
from absl import logging

from bdirnet_jax import inference

MAX_IMAGES_PER_DEVICE = 8
PIXELS_PER_DEVICE_STEP = 1 << 22  # bigger batches of big images gain nothing and cost host memory
PENDING_BYTES = 1 << 30  # host bytes of images waiting for their shape to fill before a partial batch is run
REUSE_AREA = 1.5  # an image may run in an already compiled bucket of up to 1.5x the area of its own bucket


def bucket_side(n: int, multiple: int = 1) -> int:
  """`n` rounded up to its bucket: a multiple of max(64, 2^(floor(log2 n) - 2)) and of `multiple`."""
  step = math.lcm(max(64, 1 << max(0, n.bit_length() - 3)), multiple)
  return -(-n // step) * step


# on_batch(tags, outputs, sizes): `outputs` is `apply`'s [B, H, W, 3] result for the padded batch (device or host;
# rows past len(tags) are padding), `sizes` the (H, W) of each tagged image.
OnBatch = Callable[[list, Any, list[tuple[int, int]]], None]


class Batcher:
  """Queues images by padded shape and calls `apply` on full batches; `finish` runs the partly filled ones.

  apply(array [N, H, W, 3]) -> [N, H, W, 3] for N a multiple of `batch_multiple` (the device count) and H, W
  multiples of `multiple` (the network's downsampling factor). batch_size: images per step over all devices
  (rounded up to the device count); None = up to MAX_IMAGES_PER_DEVICE per device, as `memory` allows (an object
  with `images_that_fit(pixels)`). A partial batch pads to the device count times a power of two, or with
  `fixed_batch` to the full batch size (one compilation per shape). `prepare` maps a queued image to the array
  given to `apply` when its batch runs (predict queues raw file pixels). `to_host` copies the output to a numpy
  array before on_batch, so that an asynchronous device error (out of memory) is raised by the batch that caused
  it. With `on_error`, an exception of the batch goes to on_error(tags, exception) and the batcher goes on
  (on_batch is not called); without, it propagates.
  """

  def __init__(
    self,
    apply: Callable[[np.ndarray], Any],
    on_batch: OnBatch,
    *,
    multiple: int = 1,
    batch_multiple: int = 1,
    batch_size: int | None = None,
    buckets: bool = True,
    fixed_batch: bool = False,
    memory=None,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    to_host: bool = False,
    on_error: Callable[[list, Exception], None] | None = None,
    log_name: str = "inference",
  ):
    if batch_size is not None and batch_size < 1:
      raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    self.apply, self.on_batch, self.on_error, self.prepare = apply, on_batch, on_error, prepare
    self.multiple, self.batch_multiple, self.batch_size = multiple, batch_multiple, batch_size
    self.buckets, self.fixed_batch, self.memory, self.log_name = buckets, fixed_batch, memory, log_name
    self.to_host = to_host
    self.shapes: set[tuple[int, ...]] = set()  # every padded batch shape run: one compilation each for a jit
    self._queues: dict[tuple[int, int], list] = collections.defaultdict(list)
    self._pending_bytes = 0
    self._compiled_buckets: set[tuple[int, int]] = set()

  @property
  def compilations(self) -> int:
    return len(self.shapes)

  def bucket(self, h: int, w: int) -> tuple[int, int]:
    """The padded (H, W) of an HxW image by itself: its bucket, or without buckets the network's multiple."""
    if not self.buckets:
      return -(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple
    return bucket_side(h, self.multiple), bucket_side(w, self.multiple)

  def shape_for(self, h: int, w: int) -> tuple[int, int]:
    """The padded (H, W) an HxW image runs at: with buckets, the smallest bucket already in use that holds it within
    REUSE_AREA of its own bucket, else its own.

    Per-side buckets alone give one compilation per (height, width) bucket pair, dozens for a folder of assorted
    photos; reusing a compiled shape at a bounded padding cost keeps the count near the number of size classes.
    """
    own = self.bucket(h, w)
    if not self.buckets:
      return own
    limit = REUSE_AREA * own[0] * own[1]
    fits = [b for b in self._compiled_buckets if b[0] >= h and b[1] >= w and b[0] * b[1] <= limit]
    if not fits:
      self._compiled_buckets.add(own)
      return own
    return min(fits, key=lambda b: (b[0] * b[1], b))

  def images_per_step(self, pixels: int) -> int:
    if self.batch_size is not None:
      return -(-self.batch_size // self.batch_multiple) * self.batch_multiple
    per_device = min(MAX_IMAGES_PER_DEVICE, max(1, PIXELS_PER_DEVICE_STEP // pixels))
    if self.memory is not None:
      per_device = max(1, min(per_device, self.memory.images_that_fit(pixels)))
    return per_device * self.batch_multiple

  def batch_for(self, count: int, pixels: int) -> int:
    """Batch size for `count` images: the device count times a power of two, at most images_per_step."""
    full = self.images_per_step(pixels)
    if self.fixed_batch:
      return full
    steps = math.ceil(count / self.batch_multiple)
    return min(full, self.batch_multiple * (1 << (steps - 1).bit_length()))

  def run_batch(self, images: list[np.ndarray], batch: int, shape: tuple[int, int]) -> tuple[Any, int]:
    """Pads each HxWx3 image to `shape` (bottom/right, the image's own pad mode) and the batch to `batch`, and
    dispatches `apply`; returns (output, number of real images)."""
    x = np.stack([inference.pad_bottom_right(im, *shape) for im in images])
    x, n = inference.pad_batch(x, batch)
    if x.shape not in self.shapes:
      logging.info("%s: compiling for batch shape %s", self.log_name, x.shape)
      self.shapes.add(x.shape)
    return self.apply(x), n

  def add(self, image: np.ndarray, tag: Any = None) -> None:
    """Queues an HxWx3 image; its batch runs when full (or at `finish`), and on_batch receives `tag` with it."""
    h, w = image.shape[:2]
    key = self.shape_for(h, w) if self.buckets else (h, w)
    self._queues[key].append((image, tag))
    self._pending_bytes += image.nbytes
    shape = key if self.buckets else self.bucket(*key)
    if len(self._queues[key]) >= self.images_per_step(math.prod(shape)):
      self._flush(key)
    while self._pending_bytes > PENDING_BYTES:
      self._flush(max(self._queues, key=lambda k: sum(im.nbytes for im, _ in self._queues[k])))

  def finish(self) -> None:
    """Runs every partly filled batch."""
    for key in list(self._queues):
      self._flush(key)

  def _flush(self, key: tuple[int, int]) -> None:
    queue = self._queues.pop(key, [])
    if not queue:
      return
    self._pending_bytes -= sum(im.nbytes for im, _ in queue)
    shape = key if self.buckets else self.bucket(*key)
    tags = [tag for _, tag in queue]
    prepare = self.prepare or (lambda im: im)
    try:
      out, _ = self.run_batch([prepare(im) for im, _ in queue], self.batch_for(len(queue), math.prod(shape)), shape)
      if self.to_host:
        out = np.asarray(out)
    except Exception as e:  # pylint: disable=broad-except  (e.g. out of device memory: report, go on)
      if self.on_error is None:
        raise
      self.on_error(tags, e)
      return
    self.on_batch(tags, out, [im.shape[:2] for im, _ in queue])
