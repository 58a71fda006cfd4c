"""Reading, converting and writing the images predict works on, and finding them in a folder tree.

OpenCV decodes every format (PNG, JPEG, BMP, TIFF) at its stored bit depth: Pillow would reduce 16-bit colour PNGs
to 8 bits. Pixels stay in OpenCV's layout (HxW gray, HxWx3 BGR, HxWx4 BGRA; uint8 or uint16) and are converted to
float RGB one region at a time (`to_rgb01`, `from_rgb01`), so a tiled pass over a huge image never holds a
float32 copy of all of it and the result is encoded without another full-size copy. EXIF orientation is not
applied: outputs keep the stored height and width.
"""
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Leading bytes of each accepted format: only to tell "not an image" from "a corrupt image" in error messages.
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "BigTIFF", b"MM\x00+": "BigTIFF"}
_MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ImageReadError(ValueError):
  """A file that is not a decodable 8- or 16-bit gray, RGB or RGBA image; the message names the file."""

  def __init__(self, path, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = Path(path), reason


@dataclasses.dataclass
class Image:
  path: Path
  pixels: np.ndarray  # OpenCV layout: HxW, HxWx3 (BGR) or HxWx4 (BGRA); uint8 or uint16

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
    return "; ".join(notes) or None


def read_image(path) -> Image:
  """Decodes `path`; raises ImageReadError (or OSError for an unreadable file) naming the file and the problem."""
  path = Path(path)
  data = np.fromfile(path, dtype=np.uint8)
  if data.size == 0:
    raise ImageReadError(path, "empty file (0 bytes)")
  pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
  if pixels is None:
    head = data[:8].tobytes()
    kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None:
      raise ImageReadError(path, f"not a PNG, JPEG, BMP or TIFF image (file starts with {head!r})")
    raise ImageReadError(path, f"corrupt or truncated {kind} data ({data.size} bytes), OpenCV could not decode it")
  del data
  if pixels.dtype not in _MAX_VALUE:
    raise ImageReadError(path, f"{pixels.dtype} samples are not supported (expected 8- or 16-bit unsigned)")
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4))):
    raise ImageReadError(path, f"{pixels.shape[-1]} channels are not supported (expected gray, RGB or RGBA)")
  if 0 in pixels.shape:
    raise ImageReadError(path, f"image has no pixels (shape {pixels.shape})")
  return Image(path, pixels)


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


def write_png(path, pixels: np.ndarray) -> None:
  """Writes OpenCV-layout pixels as PNG (8 or 16 bit as given), creating parent folders; atomic via rename."""
  path = Path(path)
  ok, encoded = cv2.imencode(".png", pixels)
  if not ok:
    raise OSError(f"{path}: OpenCV could not encode a {pixels.dtype} image of shape {pixels.shape} as PNG")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  encoded.tofile(tmp)
  os.replace(tmp, path)


def find_images(root, exclude=None) -> tuple[list[Path], list[tuple[Path, str]]]:
  """Image files under `root` (recursive, sorted, extensions in EXTENSIONS), plus (folder, reason) for each
  folder that could not be listed: those are reported, the rest of the tree is still searched.

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

  walk(root)
  return files, errors
