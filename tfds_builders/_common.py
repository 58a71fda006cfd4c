"""Shared helpers for the deblurring TFDS builders.

Everything here is import-cheap: no tensorflow, no jax.  Images are decoded by
`bdirnet_jax.image_io.decode` (OpenCV, imported on the first decode; the reader
`--mode=predict` uses, so both take the same formats); files are reached through
`etils.epath` so builders also work on GCS-like paths.

Main pieces:

* `ManualDirBuilder`: base class of every builder in this package (manual download
  only, ArrayRecord by default, VERSION 1.0.0, standard features).
* `load_image()`: reads one file, validates it and returns PNG bytes of an 8-bit RGB
  image.  When the source already is an 8-bit RGB PNG, the original bytes are kept.
  Pixels are stored as they are in the file: EXIF orientation is not applied (TIFF
  excepted: its decoders always apply it), so the geometry of a blurry/sharp pair
  does not depend on tags.
* `ConversionStats`: counts sources converted to 8-bit RGB, logged at the end of a
  split.
* `ManualDirError`, `ImageFileError`, `SizeMismatchError`: the errors raised on bad
  input; each names the offending path(s).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import inspect
import io
import struct
import textwrap
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from bdirnet_jax import image_io  # numpy only at import; OpenCV is imported on the first decode

# File extensions we treat as images when scanning folders: the ones predict reads.
IMAGE_EXTENSIONS = image_io.EXTENSIONS

DEFAULT_FILE_FORMAT = "array_record"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- errors
class ManualDirError(ValueError):
  """The manual directory is missing, empty, or does not have the expected layout."""


class ImageFileError(ValueError):
  """A source file is unreadable, truncated or not an image."""


class SizeMismatchError(ValueError):
  """A blurry image and its sharp counterpart do not have the same size."""


class MissingPairError(ValueError):
  """A blurry image has no sharp counterpart (or the reverse)."""


def describe_dir(path: epath.PathLike, max_entries: int = 40) -> str:
  """Top-level listing of `path`, for error messages."""
  path = epath.Path(path)
  try:
    if not path.exists():
      return f"  ({path} does not exist)"
    if not path.is_dir():
      return f"  ({path} is not a directory)"
    entries = sorted(path.iterdir(), key=lambda p: p.name)
  except OSError as e:  # permission errors, broken mounts
    return f"  (cannot list {path}: {e})"
  if not entries:
    return f"  ({path} is empty)"
  lines = []
  for p in entries[:max_entries]:
    lines.append(f"  {p.name}{'/' if p.is_dir() else ''}")
  if len(entries) > max_entries:
    lines.append(f"  ... and {len(entries) - max_entries} more entries")
  return "\n".join(lines)


def manual_dir_error(manual_dir: epath.PathLike, expected_layout: str, problem: str) -> ManualDirError:
  """Builds the error for a wrong/missing manual dir (expected + found)."""
  return ManualDirError(
    f"{problem}\n\nExpected layout inside the manual directory "
    f"({manual_dir}):\n{textwrap.indent(textwrap.dedent(expected_layout).strip(), '  ')}"
    f"\n\nFound (top level of {manual_dir}):\n{describe_dir(manual_dir)}"
  )


def get_manual_dir(dl_manager, expected_layout: str) -> epath.Path:
  """`dl_manager.manual_dir`, raising `ManualDirError` (with listing) if unusable."""
  raw = getattr(dl_manager, "_manual_dir", None)
  try:
    manual_dir = epath.Path(dl_manager.manual_dir)
  except AssertionError as e:  # tfds: "does not exist or is empty"
    raise manual_dir_error(
      raw if raw is not None else "<unset>",
      expected_layout,
      f"Manual directory {raw} is missing or empty ({e.args[0].splitlines()[0]})."
      " Pass --manual_dir=/path/to/extracted/archives (CLI) or "
      "download_config=tfds.download.DownloadConfig(manual_dir=...).",
    ) from None
  if not manual_dir.is_dir():
    raise manual_dir_error(manual_dir, expected_layout, f"Manual directory {manual_dir} is not a directory.")
  return manual_dir


def find_root(
  manual_dir: epath.Path,
  predicate: Callable[[epath.Path], bool],
  subdirs: Sequence[str] = (),
  max_depth: int = 2,
) -> epath.Path | None:
  """First directory among `manual_dir`, its named `subdirs`, and then any sub-folder
  up to `max_depth` levels deep, for which `predicate(dir)` holds (breadth-first,
  sorted)."""
  candidates = [manual_dir] + [manual_dir / s for s in subdirs]
  for c in candidates:
    if c.is_dir() and predicate(c):
      return c
  level = [manual_dir]
  for _ in range(max_depth):
    nxt = []
    for d in level:
      try:
        children = sorted((p for p in d.iterdir() if p.is_dir()), key=lambda p: p.name)
      except OSError:
        continue
      for c in children:
        if predicate(c):
          return c
        nxt.append(c)
    level = nxt
  return None


def relpath(path: epath.Path, root: epath.Path) -> str:
  """`path` relative to `root`, with forward slashes."""
  return path.relative_to(root).as_posix()


def _walk_files(folder: epath.Path):
  """All files below `folder` (recursive; hidden entries skipped)."""
  stack = [folder]
  while stack:
    d = stack.pop()
    for p in d.iterdir():
      if p.name.startswith("."):
        continue
      if p.is_dir():
        stack.append(p)
      else:
        yield p


def list_images(folder: epath.Path, recursive: bool = False) -> list[epath.Path]:
  """Image files (by extension) in `folder`, sorted by path."""
  it = _walk_files(folder) if recursive else folder.iterdir()
  out = [p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
  return sorted(out, key=lambda p: p.as_posix())


def stable_hash(*parts: Any) -> int:
  """64-bit hash that is stable across processes and Python versions."""
  h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
  return int.from_bytes(h[:8], "little")


def stable_unit(*parts: Any) -> float:
  """Stable pseudo-random number in [0, 1) derived from `parts`."""
  return stable_hash(*parts) / 2.0**64


# --------------------------------------------------------------------------- images
@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """A validated image: PNG bytes of an 8-bit RGB image, and what was done to it."""

  png_bytes: bytes
  width: int
  height: int
  path: str
  # Empty when the original bytes are kept; otherwise the conversion reasons,
  # e.g. ("grayscale",), ("16-bit", "grayscale"), ("alpha",), ("non-png",).
  conversions: tuple[str, ...] = ()

  @property
  def size(self) -> tuple[int, int]:
    return (self.width, self.height)

  @property
  def converted(self) -> bool:
    return bool(self.conversions)


def _png_header(data: bytes) -> tuple[int, int] | None:
  """(bit_depth, colour_type) from a PNG IHDR, or None if not a PNG."""
  if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
    return None
  bit_depth, colour_type = struct.unpack(">BB", data[24:26])
  return bit_depth, colour_type


def _to_uint8(arr: np.ndarray) -> np.ndarray:
  """Rescales any integer/float array to uint8 (16-bit: round(x / 257))."""
  if arr.dtype == np.uint8:
    return arr
  if arr.dtype == np.bool_:
    return arr.astype(np.uint8) * 255
  if np.issubdtype(arr.dtype, np.floating):
    # Float images: assume [0, 1] when max <= 1, else [0, 255].
    scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
    return np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
  # Integer: 16-bit range unless values fit in 8 bits.
  if arr.max(initial=0) > 255 or arr.dtype in (np.uint16, np.int32, np.uint32):
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
  return np.clip(arr, 0, 255).astype(np.uint8)


def _array_to_rgb8(arr: np.ndarray) -> np.ndarray:
  """HxW / HxWx1 / HxWx2 (gray+alpha) / HxWx3 / HxWx4 -> HxWx3 uint8 (alpha dropped)."""
  arr = _to_uint8(arr)
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.shape[2] in (1, 2):
    arr = np.repeat(arr[..., :1], 3, axis=2)
  elif arr.shape[2] >= 3:
    arr = arr[..., :3]
  return np.ascontiguousarray(arr)


def encode_png(rgb: np.ndarray) -> bytes:
  """PNG-encodes an HxWx3 uint8 array with Pillow (no tensorflow needed)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"expected HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
  buf = io.BytesIO()
  Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
  return buf.getvalue()


def load_image(path: epath.PathLike, image_id: str | None = None) -> LoadedImage:
  """Reads and validates one image file, with the reader predict uses (stored orientation kept).

  Returns PNG bytes of an 8-bit RGB image: the file's own bytes when it is an 8-bit
  RGB PNG without transparency, otherwise a lossless PNG re-encoding of the image
  converted to 8-bit RGB (grayscale replicated, alpha dropped, 16-bit rescaled with
  round(x / 257), palette expanded).

  Raises:
    ImageFileError: the file cannot be read, is truncated, or is not an image.
  """
  path = epath.Path(path)
  name = image_id or str(path)
  try:
    data = path.read_bytes()
  except (OSError, ValueError) as e:
    raise ImageFileError(f"Cannot read image file {path}: {e}") from e
  try:
    pixels = image_io.decode(data, path, keep_raw_orientation=True).pixels
  except image_io.ImageReadError as e:
    if e.kind == "empty":
      raise ImageFileError(f"Image file {path} is empty (0 bytes).") from None
    if e.kind == "unknown":
      raise ImageFileError(f"{path} is not a recognised image file ({e.reason}).") from None
    raise ImageFileError(f"Image file {path} is truncated or corrupt: {e.reason}") from None
  height, width = pixels.shape[:2]
  if height <= 0 or width <= 0:
    raise ImageFileError(f"Image file {path} has an empty size {width}x{height}.")
  channels = 1 if pixels.ndim == 2 else pixels.shape[2]
  png = _png_header(data)
  # Fast path: 8-bit truecolour PNG (colour type 2) without transparency (which decodes as a 4th channel).
  if png == (8, 2) and channels == 3:
    return LoadedImage(data, width, height, name, ())

  conversions = []
  if pixels.dtype != np.uint8:
    conversions.append("16-bit")
  if channels == 1 or (png is not None and png[1] in (0, 4)):
    conversions.append("grayscale")
  if channels in (2, 4):
    conversions.append("alpha")
  if png is not None and png[1] == 3:
    conversions.append("palette")
  if not conversions:
    conversions.append("non-png" if png is None else "other")
  rgb_order = pixels if channels == 1 else pixels[..., 2::-1] if channels >= 3 else pixels[..., :1]
  try:
    rgb = _array_to_rgb8(rgb_order)
  except Exception as e:  # pylint: disable=broad-except
    raise ImageFileError(
      f"Cannot convert image file {path} ({pixels.dtype}, {channels} channels) to 8-bit RGB: {e}"
    ) from e
  return LoadedImage(encode_png(rgb), width, height, name, tuple(dict.fromkeys(conversions)))


def check_same_size(blurry: LoadedImage, sharp: LoadedImage, blurry_path, sharp_path):
  """Raises `SizeMismatchError` naming both files if sizes differ."""
  if blurry.size != sharp.size:
    raise SizeMismatchError(
      f"Size mismatch: blurry {blurry_path} is {blurry.height}x{blurry.width} "
      f"but sharp {sharp_path} is {sharp.height}x{sharp.width} (HxW)."
    )


class ConversionStats:
  """Counts the sources converted to 8-bit RGB within one split."""

  def __init__(self, dataset: str, split: str):
    self.dataset = dataset
    self.split = split
    self.total = 0
    self.converted = 0
    self.reasons: collections.Counter[str] = collections.Counter()
    self.examples: list[str] = []

  def add(self, img: LoadedImage) -> LoadedImage:
    self.total += 1
    if img.converted:
      self.converted += 1
      self.reasons.update(img.conversions)
      if len(self.examples) < 3:
        self.examples.append(img.path)
    return img

  def summary(self) -> str:
    if not self.converted:
      return (
        f"{self.dataset} split {self.split}: {self.total} images read, "
        "none needed conversion to 8-bit RGB (original PNG bytes kept)."
      )
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
    return (
      f"{self.dataset} split {self.split}: converted {self.converted} of "
      f"{self.total} source images to 8-bit RGB PNG ({reasons}); e.g. "
      f"{', '.join(self.examples)}."
    )

  def log(self) -> None:
    if self.converted:
      logging.warning(self.summary())
    else:
      logging.info(self.summary())


# --------------------------------------------------------------------------- builders
def image_feature() -> tfds.features.Image:
  return tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png")


class ManualDirBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: manual-download image-pair builders, ArrayRecord by default.

  TFDS 4.9.10 has no class attribute for the default file format
  (`file_adapters.DEFAULT_FILE_FORMAT` is tfrecord and `DatasetInfo.set_file_format`
  falls back to it).  We therefore set the format in `__init__`: an explicit
  `file_format=` (e.g. `tfds build --file_format=tfrecord`) wins; a dataset already
  prepared on disk keeps the format recorded in its dataset_info.json; otherwise
  the format is `DEFAULT_FILE_FORMAT` (ArrayRecord).  `download_and_prepare()`
  without `file_format=` writes whatever `info.file_format` says, so both `tfds
  build` and `builder.download_and_prepare()` produce ArrayRecord.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  DEFAULT_FILE_FORMAT = DEFAULT_FILE_FORMAT

  # Subclasses: a short text shown as the expected layout in errors.
  EXPECTED_LAYOUT: str = ""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:  # pylint: disable=no-self-argument
    """Path of the file defining the builder class.

    Overrides TFDS 4.9.10's `code_path`, which evaluates
    `importlib_resources.abc.Traversable` (the PyPI backport, only a dependency
    of tensorflow-datasets on Python < 3.9) for every builder defined in a package
    and so raises ModuleNotFoundError on Python 3.11 when that backport is not
    installed.  Used for checksums.tsv, README.md/CITATIONS.bib and dummy_data/.
    """
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    if file_format is None and not self.info.initialized:
      # Nothing on disk yet: generate (and read) ArrayRecord.
      self.info.set_file_format(self.DEFAULT_FILE_FORMAT, override=True)

  # --- helpers for subclasses
  def _has_sharp(self) -> bool:
    return getattr(self.builder_config, "has_sharp", True)

  def _make_info(self, description: str, homepage: str, extra_features: dict | None = None) -> tfds.core.DatasetInfo:
    feats: dict[str, Any] = {"blurry": image_feature()}
    if self._has_sharp():
      feats["sharp"] = image_feature()
    feats["image_id"] = tfds.features.Text()
    feats.update(extra_features or {})
    return self.dataset_info_from_configs(
      description=description,
      features=tfds.features.FeaturesDict(feats),
      supervised_keys=("blurry", "sharp") if self._has_sharp() else None,
      homepage=homepage,
    )

  def _manual_dir(self, dl_manager) -> epath.Path:
    return get_manual_dir(dl_manager, self.EXPECTED_LAYOUT)

  def _layout_error(self, manual_dir, problem: str) -> ManualDirError:
    return manual_dir_error(manual_dir, self.EXPECTED_LAYOUT, problem)

  def _pair_examples(
    self,
    split: str,
    pairs: Iterable[tuple[str, epath.Path, epath.Path | None, dict]],
  ):
    """Yields (key, example) for (image_id, blurry_path, sharp_path, extra) tuples.

    Validates every file, checks sizes, and logs the conversion count at the end.
    """
    stats = ConversionStats(self.name + (f"/{self.builder_config.name}" if self.builder_config else ""), split)
    n = 0
    for image_id, blurry_path, sharp_path, extra in pairs:
      blurry = stats.add(load_image(blurry_path, image_id))
      ex = {"blurry": blurry.png_bytes, "image_id": image_id}
      if self._has_sharp():
        sharp = stats.add(load_image(sharp_path))
        check_same_size(blurry, sharp, blurry_path, sharp_path)
        ex["sharp"] = sharp.png_bytes
      ex.update(extra)
      n += 1
      yield image_id, ex
    stats.log()
    logging.info("%s split %s: %d examples.", self.name, split, n)
