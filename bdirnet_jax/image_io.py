"""The one image reader of the project (predict and the TFDS builders), plus predict's conversions and writer.

OpenCV decodes every format (PNG, JPEG, WebP, BMP, TIFF, PPM/PGM) at its stored bit depth: Pillow would reduce
16-bit colour PNGs to 8 bits. Pixels stay in OpenCV's layout (HxW gray, HxWx3 BGR, HxWx4 BGRA; uint8 or uint16) and
are converted to float RGB one region at a time (`to_rgb01`, `from_rgb01`), so a tiled pass over a huge image never
holds a float32 copy of all of it and the result is encoded without another full-size copy.

Orientation: the EXIF orientation of JPEG, PNG and WebP files is applied on read, so pixels are what a viewer shows
(a portrait phone photo comes out portrait); `keep_raw_orientation=True` keeps the stored pixels. TIFF files are
always oriented: both OpenCV and Pillow apply the TIFF orientation tag while decoding. The ICC profile of JPEG, PNG
and WebP files is kept on the `Image` and written into the output PNG (the pixels are never colour-converted, so
the profile still describes them); other metadata (camera, GPS, time) is not copied.
"""

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FORMATS = "PNG, JPEG, WebP, BMP, TIFF, PPM or PGM"

# Leading bytes of each accepted format: only to tell "not an image" from "a corrupt image" in error messages.
_SIGNATURES = {
  b"\x89PNG\r\n\x1a\n": "PNG",
  b"\xff\xd8\xff": "JPEG",
  b"BM": "BMP",
  b"II*\x00": "TIFF",
  b"MM\x00*": "TIFF",
  b"II+\x00": "BigTIFF",
  b"MM\x00+": "BigTIFF",
  b"RIFF": "WebP",
  b"P5": "PGM",
  b"P6": "PPM",
  b"P2": "PGM",
  b"P3": "PPM",
}
_MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> (transpose, flip rows, flip columns) of the stored array that gives the displayed image.
_ORIENT = {
  1: (False, False, False),
  2: (False, False, True),
  3: (False, True, True),
  4: (False, True, False),
  5: (True, False, False),
  6: (True, False, True),
  7: (True, True, True),
  8: (True, True, False),
}


class ImageReadError(ValueError):
  """A file that is not a decodable image; the message names the file.

  kind: "empty", "unknown" (not an image format we read), "corrupt" (a known format that does not decode) or
  "unsupported" (decodes, but its sample type or channels are not what the caller takes).
  """

  def __init__(self, path, reason: str, kind: str = "unsupported"):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason, self.kind = Path(path), reason, kind


@dataclasses.dataclass
class Image:
  path: Path
  pixels: np.ndarray  # OpenCV layout: HxW, HxWx3 (BGR) or HxWx4 (BGRA); uint8 or uint16 (read_image)
  icc_profile: bytes | None = None
  orientation: int = 1  # the file's EXIF orientation (1 = none or unknown)
  oriented: bool = True  # whether `pixels` have it applied

  @property
  def shape(self) -> tuple[int, int]:
    return self.pixels.shape[:2]

  @property
  def note(self) -> str | None:
    """How predict handles this image when it is not plain 8-bit RGB (one log line per such file)."""
    notes = []
    if self.pixels.ndim == 2:
      notes.append("grayscale: deblurred as RGB and written back as grayscale (mean of the channels)")
    elif self.pixels.shape[-1] == 4:
      notes.append("RGBA: RGB deblurred, alpha passed through unchanged")
    if self.pixels.dtype == np.uint16:
      notes.append("16-bit: read at full precision and written as 16-bit PNG")
    if self.orientation != 1:
      h, w = self.shape
      if self.oriented:
        notes.append(f"EXIF orientation {self.orientation} applied: deblurred and written as {h}x{w} (HxW) upright")
      else:
        notes.append(
          f"EXIF orientation {self.orientation} kept as a tag: stored pixels ({h}x{w}, HxW) written as stored"
        )
    return "; ".join(notes) or None


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
  """The stored pixels as displayed under EXIF `orientation` (1-8; anything else is left as stored)."""
  transpose, flip_rows, flip_cols = _ORIENT.get(orientation, _ORIENT[1])
  if transpose:
    pixels = pixels.swapaxes(0, 1)
  if flip_rows:
    pixels = pixels[::-1]
  if flip_cols:
    pixels = pixels[:, ::-1]
  return np.ascontiguousarray(pixels)


def _exif_orientation(exif: bytes) -> int:
  """Tag 0x0112 of an EXIF block (Pillow's parser); 1 when absent, invalid or the block is unreadable.

  Pillow warns or raises (SyntaxError, struct.error, ...) on corrupt blocks; a broken tag must not lose the image.
  """
  from PIL import Image as PILImage  # pylint: disable=g-import-not-at-top

  tags = PILImage.Exif()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      tags.load(exif)
      value = tags.get(_ORIENTATION_TAG, 1)
  except Exception:  # pylint: disable=broad-except  (any parse failure means "no orientation")
    return 1
  return value if isinstance(value, int) and value in _ORIENT else 1


def orientation_exif(orientation: int) -> bytes:
  """A TIFF-structured EXIF block holding only `orientation` (the payload of a PNG eXIf chunk)."""
  from PIL import Image as PILImage  # pylint: disable=g-import-not-at-top

  tags = PILImage.Exif()
  tags[_ORIENTATION_TAG] = int(orientation)
  return tags.tobytes().removeprefix(b"Exif\x00\x00")


def decode(data, path, *, keep_raw_orientation: bool = False) -> Image:
  """Decodes encoded image bytes with OpenCV at their stored depth, any sample type, with orientation and ICC.

  Raises ImageReadError (kind empty, unknown or corrupt) naming `path`. Sample types and channels are the
  caller's to check (read_image takes 8/16-bit gray, RGB and RGBA; the TFDS builders convert anything to 8 bits).
  """
  import cv2  # pylint: disable=g-import-not-at-top  (on first use: tfds_builders imports EXTENSIONS cheaply)

  data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
  if data.size == 0:
    raise ImageReadError(path, "empty file (0 bytes)", "empty")
  try:
    pixels, kinds, blocks = cv2.imdecodeWithMetadata(data, flags=cv2.IMREAD_UNCHANGED)
  except cv2.error:
    pixels, kinds, blocks = None, (), ()
  if pixels is None:
    head = data[:16].tobytes()
    kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind == "WebP" and head[8:12] != b"WEBP":
      kind = None
    if kind is None:
      raise ImageReadError(path, f"not a {FORMATS} image (file starts with {head[:8]!r})", "unknown")
    raise ImageReadError(
      path, f"corrupt or truncated {kind} data ({data.size} bytes), OpenCV could not decode it", "corrupt"
    )
  meta = {int(k): np.asarray(b).tobytes() for k, b in zip(kinds, blocks)}
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  orientation = _exif_orientation(meta[cv2.IMAGE_METADATA_EXIF]) if cv2.IMAGE_METADATA_EXIF in meta else 1
  if orientation != 1 and not keep_raw_orientation:
    pixels = orient(pixels, orientation)
  return Image(
    Path(path),
    pixels,
    icc_profile=meta.get(cv2.IMAGE_METADATA_ICCP) or None,
    orientation=orientation,
    oriented=not keep_raw_orientation,
  )


def read_image(path, *, keep_raw_orientation: bool = False) -> Image:
  """Reads `path` as an 8- or 16-bit gray, RGB or RGBA image (EXIF orientation applied unless told not to).

  Raises ImageReadError (or OSError for an unreadable file) naming the file and the problem.
  """
  path = Path(path)
  image = decode(np.fromfile(path, dtype=np.uint8), path, keep_raw_orientation=keep_raw_orientation)
  pixels = image.pixels
  if pixels.dtype not in _MAX_VALUE:
    raise ImageReadError(path, f"{pixels.dtype} samples are not supported (expected 8- or 16-bit unsigned)")
  if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4))):
    raise ImageReadError(path, f"{pixels.shape[-1]} channels are not supported (expected gray, RGB or RGBA)")
  if 0 in pixels.shape:
    raise ImageReadError(path, f"image has no pixels (shape {pixels.shape})")
  return image


def to_rgb01(pixels: np.ndarray) -> np.ndarray:
  """A region of OpenCV-layout pixels as float32 RGB in [0, 1]: gray is repeated, alpha dropped."""
  scale = np.float32(1.0 / _MAX_VALUE[pixels.dtype])
  if pixels.ndim == 2:
    gray = pixels.astype(np.float32) * scale
    return np.repeat(gray[..., None], 3, axis=-1)
  return pixels[..., 2::-1].astype(np.float32) * scale


def from_rgb01(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
  """Float RGB in [0, 1] back to the layout, depth and channels of `like` (the input region it came from).

  Gray takes the mean of the channels (the inverse of repeating it); alpha is copied from `like` unchanged.
  """
  maxval = _MAX_VALUE[like.dtype]
  rgb = np.asarray(rgb, dtype=np.float32)
  if like.ndim == 2:
    values = rgb.mean(axis=-1)
  else:
    values = rgb[..., ::-1]  # RGB -> BGR
  scaled = np.clip(values, 0.0, 1.0)  # a new array: the in-place steps below do not touch `rgb`
  scaled *= np.float32(maxval)
  out = np.rint(scaled, out=scaled).astype(like.dtype)
  if like.ndim == 3 and like.shape[-1] == 4:
    out = np.concatenate([out, like[..., 3:]], axis=-1)
  return out


def write_png(path, pixels: np.ndarray, *, icc_profile: bytes | None = None, orientation: int = 1) -> None:
  """Writes OpenCV-layout pixels as PNG (8 or 16 bit as given), creating parent folders; atomic via rename.

  icc_profile goes into an iCCP chunk; an orientation other than 1 into an eXIf chunk (for pixels kept as stored).
  """
  import cv2  # pylint: disable=g-import-not-at-top

  path = Path(path)
  kinds, blocks = [], []
  if icc_profile:
    kinds.append(cv2.IMAGE_METADATA_ICCP)
    blocks.append(np.frombuffer(icc_profile, np.uint8))
  if orientation != 1:
    kinds.append(cv2.IMAGE_METADATA_EXIF)
    blocks.append(np.frombuffer(orientation_exif(orientation), np.uint8))
  if kinds:
    ok, encoded = cv2.imencodeWithMetadata(".png", pixels, kinds, blocks)
  else:
    ok, encoded = cv2.imencode(".png", pixels)
  if not ok:
    raise OSError(f"{path}: OpenCV could not encode a {pixels.dtype} image of shape {pixels.shape} as PNG")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  encoded.tofile(tmp)
  os.replace(tmp, path)


def find_images(root, exclude=None, others: list | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
  """Image files under `root` (recursive, sorted, extensions in EXTENSIONS), plus (folder, reason) for each
  folder that could not be listed: those are reported, the rest of the tree is still searched.

  `others`, when given, receives the other (not hidden) files, so a caller can say which ones it ignored.

  Symlinked folders are followed once (a loop is not entered twice); `exclude` (e.g. the output folder when it
  lies inside the input) is skipped.
  """
  root = Path(root)
  exclude = Path(exclude).resolve() if exclude is not None else None
  files, errors, seen = [], [], set()

  def walk(folder: Path):
    try:
      st = folder.stat()
      if (st.st_dev, st.st_ino) in seen:
        return
      seen.add((st.st_dev, st.st_ino))
      with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
      errors.append((folder, f"cannot list folder: {e.strerror or e}"))
      return
    for entry in entries:
      path = Path(entry.path)
      try:
        is_dir = entry.is_dir()
      except OSError as e:
        errors.append((path, f"cannot stat: {e.strerror or e}"))
        continue
      if is_dir:
        if exclude is None or path.resolve() != exclude:
          walk(path)
      elif path.suffix.lower() in EXTENSIONS:
        files.append(path)
      elif others is not None and not entry.name.startswith("."):
        others.append(path)

  walk(root)
  return files, errors
