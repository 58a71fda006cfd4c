"""Grain input pipeline: TFDS ArrayRecord sources -> per-process numpy batches -> global jax.Arrays.

Training pipeline (`create_train_iterator`), all index-based so it is deterministic for a seed
and independent of the number of worker processes:

  MapDataset.source(src)[process_index::process_count]   # disjoint per-process share
    .shuffle(seed)                                         # new order every epoch
    .repeat()                                              # infinite
    .random_map(crop / flip / rot90 [/ kernel])            # RNG seeded by (seed, process, index)
    .batch(local_batch_size, drop_remainder=True)          # batching on indices, before workers
    .to_iter_dataset(ReadOptions(...)) [.mp_prefetch(...)]

Checkpointing the iterator state
--------------------------------
`get_state()` returns a small JSON-serialisable dict; `set_state()` on a freshly created
iterator (same config, same `num_workers`) resumes with exactly the batches that would have come
next. The iterators are `grain.DatasetIterator`s, so grain's Orbax handler saves them, one
`process_<i>-of-<n>.json` per process; checkpoint.py uses it as:

  mngr.save(step, args=ocp.args.Composite(
    state=ocp.args.StandardSave(train_state),
    data=grain.checkpoint.CheckpointSave(it)))
  restored = mngr.restore(step, args=ocp.args.Composite(
    state=ocp.args.StandardRestore(abstract_state),
    data=grain.checkpoint.CheckpointRestore(it)))       # sets the state of `it` in place

where `it` is the `prefetch_to_device` wrapper: it reports the state of the next batch it will hand
out, whereas the grain iterator underneath has already been advanced `size` batches. Without
Orbax, save `json.dumps(it.get_state())` per process and call `it.set_state(json.loads(...))`.
"""

import collections
import threading
from typing import Any
from typing import Iterator
from typing import Mapping

import grain
import jax
import numpy as np
from absl import flags
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from bdirnet_jax import blur

Batch = dict[str, np.ndarray]


class SourceNotAvailableError(FileNotFoundError):
  """The requested TFDS dataset/split cannot be opened (typically: not prepared yet)."""


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def _builder_name(ds_cfg) -> str:
  cfg_name = ds_cfg.get("config", None)
  return f"{ds_cfg.name}/{cfg_name}" if cfg_name else str(ds_cfg.name)


# Builders cheap enough to build on first use (seconds, from photos shipped in pip packages).
AUTO_PREPARABLE = ("synthetic_blur",)


def open_source(ds_cfg, split: str | None = None):
  """Random-access TFDS source (ArrayRecord) for `ds_cfg`; never imports TensorFlow itself.

  With `ds_cfg.auto_prepare` a missing `synthetic_blur` dataset is built on first use (in
  multi-host runs prepare it beforehand: every process would build it otherwise).
  """
  import tensorflow_datasets as tfds  # lazy: heavy, and only needed for real datasets

  try:  # registers this project's builders; reading prepared data works without them.
    import tfds_builders  # noqa: F401
  except Exception as e:  # pragma: no cover - depends on the other module's state
    logging.info("tfds_builders not imported (%s); relying on prepared data only", e)

  name = _builder_name(ds_cfg)
  split = split or ds_cfg.get("split", "train")
  data_dir = ds_cfg.get("data_dir", None)

  def _open():
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)

  try:
    return _open()
  except Exception as first_error:
    error = first_error
    if ds_cfg.get("auto_prepare", False) and str(ds_cfg.name) in AUTO_PREPARABLE:
      logging.warning("TFDS dataset %s not found in %s: building it now", name, data_dir)
      try:
        _prepare(tfds, name, data_dir, ds_cfg.get("manual_dir", None))
        return _open()
      except Exception as e:
        error = e
  dd = data_dir or "the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)"
  cfg_name = ds_cfg.get("config", None)
  cli = f"python -m tfds_builders.cli build {ds_cfg.name}"
  cli += f" --config={cfg_name}" if cfg_name else ""
  cli += f" --data_dir={data_dir}" if data_dir else ""
  cli += " [--manual_dir=DIR]"
  raise SourceNotAvailableError(
    f"cannot open TFDS dataset {name!r} split {split!r} in data_dir {dd}: "
    f"{type(error).__name__}: {str(error)[:500]}\n"
    "If it is not prepared yet, build it once in ArrayRecord format (building needs "
    "TensorFlow; reading does not), e.g.:\n"
    f"  {cli}\n"
    f"  or: tfds.builder({name!r}, data_dir=...).download_and_prepare("
    "file_format='array_record')"
  ) from error


def _prepare(tfds, name: str, data_dir, manual_dir) -> None:
  kwargs = {}
  if manual_dir:
    kwargs["download_config"] = tfds.download.DownloadConfig(manual_dir=manual_dir)
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(**kwargs)


# ----------------------------------------------------------------------------------------------
# Per-example transforms (module-level classes so they pickle into worker processes)
# ----------------------------------------------------------------------------------------------


def _image_id(record: Mapping[str, Any]) -> str:
  iid = record.get("image_id", "<no image_id>")
  if isinstance(iid, np.ndarray):
    iid = iid.item()
  if isinstance(iid, (bytes, np.bytes_)):
    iid = bytes(iid).decode("utf-8", "replace")
  return str(iid)


def _as_rgb_uint8(x: Any, key: str, iid: str) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype != np.uint8:
    raise ValueError(f"{iid}: {key!r} must be uint8, got {x.dtype}")
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
    raise ValueError(f"{iid}: {key!r} must be HxWx3, got shape {x.shape}")
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  elif x.shape[-1] == 4:
    x = x[..., :3]
  return x


def _fit_to_crop(images: dict[str, np.ndarray], crop: int, policy: str, iid: str) -> dict:
  h, w = next(iter(images.values())).shape[:2]
  if h >= crop and w >= crop:
    return images
  if policy == "reject":
    raise ValueError(
      f"image {iid!r} is {h}x{w}, smaller than crop_size {crop} "
      "(small_image_policy='reject'; use 'pad' to reflect-pad it)"
    )
  ph, pw = max(0, crop - h), max(0, crop - w)
  pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
  # 'symmetric' (edge pixel repeated) works for any pad width, even wider than the image.
  return {k: np.pad(v, pads, mode="symmetric") for k, v in images.items()}


SMALL_IMAGE_POLICIES = ("pad", "reject")


def check_dataset(ds_cfg) -> None:
  """The training pipeline's rules on `config.dataset`, named by key: TrainTransform runs them when it is built
  (not inside a worker), config_validation before anything is compiled."""
  policy = ds_cfg.get("small_image_policy", "pad")
  if policy not in SMALL_IMAGE_POLICIES:
    raise ValueError(f"config.dataset.small_image_policy must be one of {sorted(SMALL_IMAGE_POLICIES)}, got {policy!r}")
  if ds_cfg.get("on_the_fly_blur", False):
    blur.check_families([ds_cfg.get("blur_family", blur.MIXED)], "config.dataset.blur_family")
    if ds_cfg.get("trajectory_exposures") is not None:
      blur.check_exposures(ds_cfg.trajectory_exposures, "config.dataset.trajectory_exposures")
  scale_range(ds_cfg)


def scale_range(ds_cfg) -> tuple[float, float] | None:
  """config.dataset.scale_range checked: None (or () or (None,): off), or (lo, hi) with 0 < lo <= hi, on a sharp-only
  source.

  Rescaling a photo changes how soft its content is without blurring it. A blind deblurrer that has only seen
  photos at their native scale learns "soft content = blurred" and over-sharpens photos whose content is soft by
  nature (high-resolution or upsampled photos, microscopy) when their blur is mild. A pre-blurred pair cannot be
  rescaled without rescaling its blur and noise too, so the rescale needs the blur synthesised after it."""
  value = ds_cfg.get("scale_range")
  if value is None or tuple(value) in ((), (None,)):  # (None,): what `--config.dataset.scale_range=None` parses to
    return None
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"config.dataset.scale_range must be None or (lo, hi), got {value!r}") from None
  if not 0 < lo <= hi:
    raise ValueError(f"config.dataset.scale_range must satisfy 0 < lo <= hi, got {value!r}")
  if not ds_cfg.get("on_the_fly_blur", False):
    raise ValueError(
      "config.dataset.scale_range needs on_the_fly_blur=True: a pre-blurred pair cannot be rescaled without "
      f"rescaling its blur, got scale_range={value!r}"
    )
  return lo, hi


def _rescaled_crop(image: np.ndarray, crop: int, scale: float, rng: np.random.Generator) -> np.ndarray:
  """A crop x crop window of `image` resized by `scale` (> 1 magnifies: softer content; < 1 shrinks, antialiased).

  The source window is crop / scale pixels, clamped to the image, so the realised scale can be nearer 1 than asked
  on a small photo."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  h, w = image.shape[:2]
  side = int(min(h, w, max(1, round(crop / scale))))
  top = int(rng.integers(0, h - side + 1))
  left = int(rng.integers(0, w - side + 1))
  window = image[top : top + side, left : left + side]
  if side == crop:
    return window
  return np.asarray(Image.fromarray(np.ascontiguousarray(window)).resize((crop, crop), Image.BICUBIC))


class TrainTransform:
  """Aligned random crop (+ flips / 90-degree rotations) of blurry and sharp, plus a blur kernel
  when the device synthesises the blur (then optionally a rescaled crop: `scale_range`). All randomness comes from
  grain's per-index RNG."""

  def __init__(self, ds_cfg):
    check_dataset(ds_cfg)
    self.crop = int(ds_cfg.crop_size)
    self.policy = str(ds_cfg.get("small_image_policy", "pad"))
    self.augment = bool(ds_cfg.get("augment", True))
    self.on_the_fly = bool(ds_cfg.get("on_the_fly_blur", False))
    self.family = str(ds_cfg.get("blur_family", blur.MIXED))
    self.kernel_size = int(ds_cfg.get("kernel_size", 31))
    exposures = ds_cfg.get("trajectory_exposures")
    self.exposures = blur.check_exposures(exposures) if self.on_the_fly and exposures is not None else None
    self.scale_range = scale_range(ds_cfg)
    if self.on_the_fly:  # a kernel size that cannot work fails here, not inside a worker
      blur.sample_kernel(np.random.default_rng(0), self.family, self.kernel_size, trajectory_exposures=self.exposures)

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> Batch:
    out = self.crop_augment(record, rng)
    if self.on_the_fly:
      out["kernel"] = self.sample_kernel(rng)
    return out

  def crop_augment(self, record: Mapping[str, Any], rng: np.random.Generator) -> Batch:
    """The aligned crop (+ flips / rotation) of one record; draws from `rng` before the kernel does."""
    iid = _image_id(record)
    keys = ("sharp",) if self.on_the_fly else ("blurry", "sharp")
    missing = [k for k in keys if record.get(k) is None]
    if missing:
      hint = "" if self.on_the_fly else " (sharp-only sources need on_the_fly_blur=True)"
      raise ValueError(f"record {iid!r} has no {missing} image{hint}")
    images = {k: _as_rgb_uint8(record[k], k, iid) for k in keys}
    shapes = {k: v.shape for k, v in images.items()}
    if len(set(shapes.values())) != 1:
      raise ValueError(f"record {iid!r}: blurry/sharp sizes differ: {shapes}")
    images = _fit_to_crop(images, self.crop, self.policy, iid)

    if self.scale_range is not None:  # sharp only (scale_range needs on_the_fly_blur)
      lo, hi = self.scale_range
      scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
      images = {"sharp": _rescaled_crop(images["sharp"], self.crop, scale, rng)}
    else:
      h, w = next(iter(images.values())).shape[:2]
      top = int(rng.integers(0, h - self.crop + 1))
      left = int(rng.integers(0, w - self.crop + 1))
      images = {k: v[top : top + self.crop, left : left + self.crop] for k, v in images.items()}
    if self.augment:
      flip_v, flip_h, rot = (int(r) for r in rng.integers(0, (2, 2, 4)))
      for k, v in images.items():
        if flip_v:
          v = v[::-1]
        if flip_h:
          v = v[:, ::-1]
        images[k] = np.rot90(v, rot)
    return {k: np.ascontiguousarray(v) for k, v in images.items()}

  def sample_kernel(self, rng: np.random.Generator) -> np.ndarray:
    return blur.sample_kernel(rng, self.family, self.kernel_size, trajectory_exposures=self.exposures)


class EvalTransform:
  """Full-size example with a str image_id; no randomness. Records with a `variant` field
  (several blurs of one photo, as in synthetic_blur) get `<image_id>#<variant>` so that ids
  stay unique (per-image outputs would otherwise overwrite each other). `extra_keys`: record
  fields kept as they are (what an evaluation protocol needs beyond blurry/sharp, e.g. Köhler's
  frames); picklable for grain."""

  def __init__(self, extra_keys: tuple[str, ...] = ()):
    self.extra_keys = tuple(extra_keys)

  def __call__(self, record: Mapping[str, Any]) -> dict[str, Any]:
    iid = _image_id(record)
    if record.get("variant") is not None:
      iid = f"{iid}#{int(np.asarray(record['variant']))}"
    if record.get("blurry") is None:
      raise ValueError(f"eval record {iid!r} has no 'blurry' image")
    out = {"blurry": _as_rgb_uint8(record["blurry"], "blurry", iid), "image_id": iid}
    if record.get("sharp") is not None:
      out["sharp"] = _as_rgb_uint8(record["sharp"], "sharp", iid)
    for key in self.extra_keys:
      if record.get(key) is None:
        raise ValueError(
          f"eval record {iid!r} has no {key!r}, which its protocol needs (rebuild the dataset with the current builder)"
        )
      out[key] = record[key]
    return out


# ----------------------------------------------------------------------------------------------
# Iterators
# ----------------------------------------------------------------------------------------------


def _process_defaults(process_index, process_count) -> tuple[int, int]:
  pi = jax.process_index() if process_index is None else int(process_index)
  pc = jax.process_count() if process_count is None else int(process_count)
  if not 0 <= pi < pc:
    raise ValueError(f"process_index {pi} not in [0, {pc})")
  return pi, pc


def _shard(ds: grain.MapDataset, pi: int, pc: int, n: int) -> grain.MapDataset:
  if n < pc:
    raise ValueError(f"source has {n} examples, fewer than process_count={pc}")
  return ds[pi::pc]


def local_batch_size(batch_size: int, process_count: int) -> int:
  """This process's share of the global batch; config_validation asks it before anything is compiled."""
  if batch_size % process_count:
    raise ValueError(f"config.batch_size={batch_size} is not divisible by the {process_count} processes")
  return batch_size // process_count


def _derived_seed(*parts: int) -> int:
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


DECODED_CACHE_MB = 1024  # default of config.dataset.decoded_cache_mb


class DecodedCache:
  """A random-access source that keeps the decoded images of the records it has read, up to a memory budget.

  Decoding a photo (two PNGs of ~640x430 per synthetic_blur record: ~25 ms) cost far more than the crop taken
  from it, once per crop, on the cores the device step also needs on a CPU host and on grain's GIL-bound threads on
  an accelerator host. Records are returned exactly as read (only the keys training uses), so batches, their order
  and kernels are unchanged. Records past the budget are decoded on every read; each grain worker process keeps
  its own cache (budget per process).
  """

  def __init__(self, source, keys: tuple[str, ...], budget_mb: float):
    self._source = source
    self._keys = tuple(keys)
    self._budget = float(budget_mb) * 2**20
    self._bytes = 0
    self._cache: dict[int, dict[str, Any]] = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    hit = self._cache.get(index)
    if hit is not None:
      return hit
    record = self._source[index]
    kept = {k: record[k] for k in self._keys if k in record}
    size = 0
    for value in kept.values():
      if isinstance(value, np.ndarray):
        value.flags.writeable = False  # shared by every later read: transforms copy, never write
        size += value.nbytes
    with self._lock:
      if index not in self._cache and self._bytes + size <= self._budget:
        self._cache[index] = kept
        self._bytes += size
    return kept

  def __getstate__(self):  # pickled into grain worker processes: each starts empty
    state = dict(self.__dict__, _cache={}, _bytes=0)
    del state["_lock"]
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()


def train_source(config, source=None):
  """The random-access source the training pipeline reads: `source` (default `open_source(config.dataset)`)
  behind a `DecodedCache` of `config.dataset.decoded_cache_mb` MB (0: none)."""
  ds_cfg = config.dataset
  source = open_source(ds_cfg) if source is None else source
  budget = ds_cfg.get("decoded_cache_mb", DECODED_CACHE_MB)
  if not budget or budget <= 0:
    return source
  keys = ("sharp", "image_id") if ds_cfg.get("on_the_fly_blur", False) else ("blurry", "sharp", "image_id")
  return DecodedCache(source, keys, budget)


def create_train_iterator(
  config, source=None, *, process_index: int | None = None, process_count: int | None = None
) -> grain.DatasetIterator:
  """Infinite iterator of this process's batches: `{"blurry", "sharp"}` uint8
  [B_local, crop, crop, 3], or `{"sharp", "kernel"}` (kernel float32 [B_local, K, K]) with
  `on_the_fly_blur`. `source` defaults to `open_source(config.dataset)`.

  Optional `config.dataset.num_threads` (default 2): threads per process that build batches.
  """
  ds_cfg = config.dataset
  pi, pc = _process_defaults(process_index, process_count)
  local_bs = local_batch_size(config.batch_size, pc)
  source = train_source(config, source)
  seed = int(config.seed)

  ds = _shard(grain.MapDataset.source(source), pi, pc, len(source))
  ds = ds.shuffle(seed=_derived_seed(seed, 0))  # same permutation seed on every process
  ds = ds.repeat(None)
  # Crops/kernels differ between processes although their indices coincide.
  ds = ds.random_map(TrainTransform(ds_cfg), seed=_derived_seed(seed, 1, pi))
  ds = ds.batch(local_bs, drop_remainder=True)
  return _to_iterator(ds, ds_cfg)


def _to_iterator(ds: grain.MapDataset, ds_cfg) -> grain.DatasetIterator:
  prefetch = max(1, int(ds_cfg.get("prefetch", 2)))
  threads = int(ds_cfg.get("num_threads", 2))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
  workers = int(ds_cfg.get("num_workers", 0))
  if workers > 0:
    # grain's worker start-up reads an absl flag; outside an absl app (tests, notebooks,
    # scripts) flags are unparsed and that read raises UnparsedFlagAccessError.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=prefetch))
  return iter(it_ds)


def create_eval_iterator(
  ds_cfg, source=None, *, process_index: int = 0, process_count: int = 1, extra_keys: tuple[str, ...] = ()
) -> grain.DatasetIterator:
  """One full-size example at a time, in source order: `{"blurry", "sharp"?, "image_id", *extra_keys}`;
  process i of n gets examples i, i+n, ... (strided, so every process gets a similar count).
  `source` defaults to `open_source(ds_cfg)` (i.e. split `ds_cfg.split`)."""
  pi, pc = _process_defaults(process_index, process_count)
  if source is None:
    source = open_source(ds_cfg)
  ds = _shard(grain.MapDataset.source(source), pi, pc, len(source)).map(EvalTransform(extra_keys))
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
  return iter(it_ds)


# ----------------------------------------------------------------------------------------------
# Host -> device
# ----------------------------------------------------------------------------------------------


def _sharding_for_rank(sharding: jax.sharding.Sharding, ndim: int) -> jax.sharding.Sharding:
  """Let one batch sharding (e.g. P('data', None, None, None)) serve [B,k,k] kernels too."""
  if isinstance(sharding, NamedSharding) and len(sharding.spec) > ndim:
    extra = tuple(sharding.spec)[ndim:]
    if any(e is not None for e in extra):
      raise ValueError(f"sharding {sharding.spec} partitions axes beyond rank {ndim}")
    return NamedSharding(sharding.mesh, PartitionSpec(*tuple(sharding.spec)[:ndim]))
  return sharding


def make_global_batch(local_batch: Mapping[str, Any], sharding: jax.sharding.Sharding) -> dict:
  """Assemble each process's local batch into global arrays (batch axis split over processes)."""
  return {
    k: jax.make_array_from_process_local_data(_sharding_for_rank(sharding, np.ndim(v)), np.asarray(v))
    for k, v in local_batch.items()
  }


class DevicePrefetchIterator(grain.DatasetIterator):
  """Keeps `size` global batches in flight (transfers are async), so the step never waits for
  host->device copies. Its state is that of the next batch it returns, not of the iterator
  underneath (which runs `size` batches ahead), so checkpoints resume exactly."""

  def __init__(self, iterator: Iterator[Batch], size: int, sharding: jax.sharding.Sharding):
    # Any iterator with get_state/set_state (grain's, or a custom one such as tests' PairIterator) is resumable;
    # the training loop saves and restores the data position only for those.
    self.stateful = hasattr(iterator, "get_state") and hasattr(iterator, "set_state")
    super().__init__(iterator if isinstance(iterator, grain.DatasetIterator) else ())
    self._it = iterator
    self._size = max(1, int(size))
    self._sharding = sharding
    self._queue: collections.deque = collections.deque()
    self._exhausted = False

  def _fill(self) -> None:
    while len(self._queue) < self._size and not self._exhausted:
      state = self._it.get_state() if self.stateful else None
      try:
        local = next(self._it)
      except StopIteration:
        self._exhausted = True
        return
      self._queue.append((state, make_global_batch(local, self._sharding)))

  def __next__(self) -> dict[str, jax.Array]:
    self._fill()
    if not self._queue:
      raise StopIteration
    _, batch = self._queue.popleft()
    self._fill()  # start the next transfer before the caller runs its step
    return batch

  def get_state(self) -> dict[str, Any]:
    if not self.stateful:
      raise TypeError("the wrapped iterator has no get_state()")
    return self._queue[0][0] if self._queue else self._it.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    if not self.stateful:
      raise TypeError("the wrapped iterator has no set_state()")
    self._queue.clear()
    self._exhausted = False
    self._it.set_state(state)

  def __str__(self) -> str:
    return f"DevicePrefetchIterator(size={self._size})"


def prefetch_to_device(iterator: Iterator[Batch], size: int, sharding: jax.sharding.Sharding) -> DevicePrefetchIterator:
  """Wrap a local-batch iterator into one of global, device-resident batches (see the class)."""
  return DevicePrefetchIterator(iterator, size, sharding)
