"""Image decoding at full depth (every format predict and the TFDS builders take), EXIF orientation and ICC
profiles, layout conversions, and the folder walker, including hostile inputs."""

import io
import os
from pathlib import Path

import cv2
import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as PILImage
from PIL import ImageOps

from bdirnet_jax import image_io
from tests.fakes import fail_listing

SETTINGS = hypothesis.settings(
  max_examples=25, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)


def _rgb_order(pixels):
  """OpenCV layout -> RGB(A) order, written out here independently of image_io."""
  if pixels.ndim == 2:
    return pixels
  return pixels[..., [2, 1, 0, 3][: pixels.shape[-1]]]


def _arrays():
  shape = st.tuples(st.integers(1, 17), st.integers(1, 17)).flatmap(
    lambda hw: st.sampled_from([hw, hw + (3,), hw + (4,)])
  )
  return st.sampled_from([np.uint8, np.uint16]).flatmap(lambda dt: hnp.arrays(dt, shape))


def _write_with_other_library(path, rgb):
  """Pillow for 8-bit and 16-bit gray; OpenCV (with an explicit RGB->BGR flip) for 16-bit colour, which Pillow
  cannot write."""
  if rgb.dtype == np.uint8:
    PILImage.fromarray(rgb).save(path)
  elif rgb.ndim == 2:
    PILImage.fromarray(rgb).save(path)  # mode I;16
  else:
    assert cv2.imwrite(str(path), rgb[..., [2, 1, 0, 3][: rgb.shape[-1]]])


@SETTINGS
@hypothesis.given(rgb=_arrays())
def test_png_read_back_exactly(tmp_path, rgb):
  path = tmp_path / "x.png"
  _write_with_other_library(path, rgb)
  image = image_io.read_image(path)
  assert image.pixels.dtype == rgb.dtype and image.shape == rgb.shape[:2]
  np.testing.assert_array_equal(_rgb_order(image.pixels), rgb)
  image_io.write_png(tmp_path / "y.png", image.pixels)  # and our own writer round-trips too
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "y.png").pixels, image.pixels)


@SETTINGS
@hypothesis.given(rgb=_arrays())
def test_float_conversion_round_trips_and_keeps_alpha(rgb):
  pixels = np.ascontiguousarray(_rgb_order(rgb))  # any array is a valid OpenCV-layout image too
  floats = image_io.to_rgb01(pixels)
  assert floats.shape == pixels.shape[:2] + (3,) and floats.dtype == np.float32
  assert 0.0 <= floats.min() and floats.max() <= 1.0
  np.testing.assert_array_equal(image_io.from_rgb01(floats, pixels), pixels)
  if pixels.ndim == 3 and pixels.shape[-1] == 4:
    changed = image_io.from_rgb01(1.0 - floats, pixels)
    np.testing.assert_array_equal(changed[..., 3], pixels[..., 3])  # alpha untouched
    assert changed.dtype == pixels.dtype


def test_channel_order_is_rgb():
  pixels = np.zeros((1, 1, 3), np.uint8)
  pixels[..., 2] = 255  # OpenCV's last channel is red
  np.testing.assert_array_equal(image_io.to_rgb01(pixels)[0, 0], [1.0, 0.0, 0.0])
  np.testing.assert_array_equal(image_io.from_rgb01(np.array([[[1.0, 0.0, 0.0]]]), pixels), pixels)


def test_gray_written_back_as_the_mean_of_the_channels():
  gray = np.array([[0, 100]], np.uint8)
  rgb = np.array([[[0.0, 0.0, 0.0], [0.2, 0.4, 0.6]]], np.float32)
  np.testing.assert_array_equal(image_io.from_rgb01(rgb, gray), [[0, 102]])


@pytest.mark.parametrize("fmt", [".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pgm"])
def test_other_formats_decode(tmp_path, fmt):
  y, x = np.mgrid[0:9, 0:13]
  rgb = np.stack([y * 20, x * 15, 200 - y * 10 - x * 5], axis=-1).astype(np.uint8)  # smooth, so JPEG keeps it
  if fmt == ".pgm":
    rgb = rgb[..., 0]
  options = {".jpg": dict(quality=95, subsampling=0), ".webp": dict(lossless=True)}.get(fmt, {})
  PILImage.fromarray(rgb).save(tmp_path / f"x{fmt}", **options)
  image = image_io.read_image(tmp_path / f"x{fmt}")
  assert image.shape == (9, 13) and image.pixels.dtype == np.uint8
  tol = 8 if fmt == ".jpg" else 0
  assert np.abs(_rgb_order(image.pixels).astype(int) - rgb).max() <= tol


def test_sixteen_bit_pgm_keeps_its_depth(tmp_path):
  gray = np.arange(6, dtype=np.uint16).reshape(2, 3) * 10000
  (tmp_path / "x.pgm").write_bytes(b"P5\n3 2\n65535\n" + gray.astype(">u2").tobytes())
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "x.pgm").pixels, gray)


@pytest.mark.parametrize(
  "fmt,options,tol", [("JPEG", dict(quality=100, subsampling=0), 4), ("WEBP", dict(lossless=True), 0), ("PNG", {}, 0)]
)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(fmt, options, tol, orientation):
  rgb = np.random.default_rng(orientation).integers(0, 256, (4, 6, 3), dtype=np.uint8)
  exif = PILImage.Exif()
  exif[0x0112] = orientation
  f = io.BytesIO()
  PILImage.fromarray(rgb).save(f, fmt, exif=exif.tobytes(), **options)
  shown = np.asarray(ImageOps.exif_transpose(PILImage.open(io.BytesIO(f.getvalue()))))
  image = image_io.decode(f.getvalue(), "x")
  assert image.orientation == orientation and image.oriented and _rgb_order(image.pixels).shape == shown.shape
  assert np.abs(_rgb_order(image.pixels).astype(int) - shown).max() <= tol
  raw = image_io.decode(f.getvalue(), "x", keep_raw_orientation=True)
  assert raw.shape == (4, 6) and not raw.oriented
  np.testing.assert_array_equal(image_io.orient(raw.pixels, orientation), image.pixels)
  assert ("EXIF orientation" in (image.note or "")) == (orientation != 1)


def test_icc_profile_and_orientation_tag_are_written(tmp_path):
  from PIL import ImageCms  # pylint: disable=g-import-not-at-top

  icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
  for dtype in (np.uint8, np.uint16):  # Pillow cannot write 16-bit colour PNG metadata: OpenCV does it
    pixels = np.random.default_rng(0).integers(0, 256, (4, 6, 3)).astype(dtype)
    image_io.write_png(tmp_path / "x.png", pixels, icc_profile=icc, orientation=8)
    back = image_io.read_image(tmp_path / "x.png", keep_raw_orientation=True)
    np.testing.assert_array_equal(back.pixels, pixels)
    assert back.icc_profile == icc and back.orientation == 8
    assert PILImage.open(tmp_path / "x.png").getexif()[0x0112] == 8


@pytest.mark.parametrize(
  "exif",
  [b"", b"Exif\x00\x00", b"II*\x00\xff\xff\xff\x00", b"MM\x00*\x00\x00\x00\x08\x00\x05", b"garbage that is not TIFF"],
)
def test_broken_exif_means_no_orientation(exif):
  assert image_io._exif_orientation(exif) == 1  # pylint: disable=protected-access


def test_notes_describe_gray_rgba_and_16_bit(tmp_path):
  assert image_io.Image(Path("a"), np.zeros((2, 2, 3), np.uint8)).note is None
  assert "grayscale" in image_io.Image(Path("a"), np.zeros((2, 2), np.uint8)).note
  assert "alpha passed through" in image_io.Image(Path("a"), np.zeros((2, 2, 4), np.uint8)).note
  note = image_io.Image(Path("a"), np.zeros((2, 2), np.uint16)).note
  assert "grayscale" in note and "16-bit" in note


# ------------------------------------------------------------------------------------------------------------------
# Hostile files: each is reported with its name and what was expected.


def _png_bytes(shape=(32, 32, 3)):
  f = io.BytesIO()
  PILImage.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)).save(f, "PNG")
  return f.getvalue()


@pytest.mark.parametrize(
  "name,content,message",
  [
    ("truncated.png", _png_bytes()[:200], "corrupt or truncated PNG"),
    ("text.jpg", b"this is not an image\n", "not a PNG, JPEG, WebP, BMP, TIFF, PPM or PGM image"),
    ("truncated.webp", b"RIFF\x10\x00\x00\x00WEBPVP8L", "corrupt or truncated WebP"),
    ("empty.png", b"", "empty file"),
    ("garbage.tiff", b"II*\x00" + b"\x00" * 20, "corrupt or truncated TIFF"),
  ],
)
def test_hostile_files_raise_a_named_error(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(image_io.ImageReadError, match=message) as info:
    image_io.read_image(path)
  assert str(path) in str(info.value) and info.value.path == path


def test_unsupported_sample_type_is_named(tmp_path):
  path = tmp_path / "float.tiff"
  assert cv2.imwrite(str(path), np.zeros((4, 4, 3), np.float32))
  with pytest.raises(image_io.ImageReadError, match="float32 samples are not supported"):
    image_io.read_image(path)


def test_a_folder_given_as_a_file_is_an_os_error(tmp_path):
  (tmp_path / "dir.png").mkdir()
  with pytest.raises(OSError):
    image_io.read_image(tmp_path / "dir.png")


def test_one_pixel_and_gray_alpha_images(tmp_path):
  PILImage.fromarray(np.array([[[7, 8, 9]]], np.uint8)).save(tmp_path / "one.png")
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "one.png").pixels, [[[9, 8, 7]]])
  PILImage.fromarray(np.array([[[5, 200]]], np.uint8), mode="LA").save(tmp_path / "la.png")
  la = image_io.read_image(tmp_path / "la.png").pixels  # gray + alpha arrives as BGRA, alpha intact
  np.testing.assert_array_equal(la, [[[5, 5, 5, 200]]])


# ------------------------------------------------------------------------------------------------------------------
# The folder walker.


def _touch(root, *names):
  for name in names:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")


def test_find_images_recursive_sorted_and_filtered(tmp_path):
  _touch(
    tmp_path,
    "b.png",
    "a.JPG",
    "sub/c.tif",
    "sub/deeper/d.bmp",
    "notes.txt",
    "sub/e.jpeg",
    "out/f.png",
    "g.webp",
    "h.ppm",
    "i.PGM",
    "j.gif",
  )
  files, errors = image_io.find_images(tmp_path, exclude=tmp_path / "out")
  rel = [str(f.relative_to(tmp_path)) for f in files]
  assert rel == ["a.JPG", "b.png", "g.webp", "h.ppm", "i.PGM", "sub/c.tif", "sub/deeper/d.bmp", "sub/e.jpeg"]
  assert errors == []


def test_find_images_survives_a_symlink_loop(tmp_path):
  _touch(tmp_path, "sub/a.png")
  os.symlink(tmp_path, tmp_path / "sub" / "loop")
  files, errors = image_io.find_images(tmp_path)
  assert [f.name for f in files] == ["a.png"] and errors == []


def test_unreadable_folder_is_reported_and_the_walk_goes_on(tmp_path, monkeypatch):
  _touch(tmp_path, "ok/a.png", "locked/b.png", "z.png")
  fail_listing(monkeypatch, "locked")
  files, errors = image_io.find_images(tmp_path)
  assert [str(f.relative_to(tmp_path)) for f in files] == ["ok/a.png", "z.png"]
  assert len(errors) == 1 and errors[0][0] == tmp_path / "locked" and "Permission denied" in errors[0][1]
