"""pytest entry point for tfds_builders/.

1. Collects every builder's `tfds.testing.DatasetBuilderTestCase` (defined in
   `tfds_builders/<name>/<name>_dataset_builder_test.py`, tfds-new style) by
   importing the classes here, so `pytest tests/` runs them.  (`pytest
   tfds_builders/` also finds them by file name; running both collects them twice.)
2. Tests beyond the stock test case: bad input (missing/wrong manual dir, corrupt,
   truncated, non-image files, size mismatch, missing counterpart), conversion
   of grayscale/RGBA/16-bit sources and its log, ArrayRecord as the default format,
   original PNG bytes kept, reading with `tfds.data_source` in a subprocess where
   tensorflow is not installed, import cost of `tfds_builders`, the CLI wrapper, and
   synthetic_blur's seeds, splits and packaged-photo fallback.

Everything runs on the tiny dummy_data/ trees (32x48 images); the whole file takes
~40 s on 2 CPU cores, most of it in two subprocesses that import tensorflow / tfds.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import tensorflow_datasets as tfds  # noqa: E402

import tfds_builders  # noqa: E402
from tfds_builders import _common
from tfds_builders import _testing  # noqa: E402,F401  (dill shim)

# --- 1. the stock DatasetBuilderTestCase classes (collected by pytest from here) ---
from tfds_builders.gopro.gopro_dataset_builder_test import GoproRepackagedTest  # noqa: E402,F401
from tfds_builders.gopro.gopro_dataset_builder_test import GoproTest  # noqa: E402,F401
from tfds_builders.hide.hide_dataset_builder_test import HideTest  # noqa: E402,F401
from tfds_builders.kohler.kohler_dataset_builder_test import KohlerTest  # noqa: E402,F401
from tfds_builders.lai import lai_dataset_builder  # noqa: E402
from tfds_builders.lai.lai_dataset_builder_test import LaiRealTest  # noqa: E402,F401
from tfds_builders.lai.lai_dataset_builder_test import LaiSyntheticNonuniformTest  # noqa: E402,F401
from tfds_builders.lai.lai_dataset_builder_test import LaiSyntheticUniformTest  # noqa: E402,F401
from tfds_builders.realblur.realblur_dataset_builder_test import RealBlurJTest  # noqa: E402,F401
from tfds_builders.realblur.realblur_dataset_builder_test import RealBlurRTest  # noqa: E402,F401
from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as sb  # noqa: E402
from tfds_builders.synthetic_blur.synthetic_blur_dataset_builder_test import SyntheticBlurTest  # noqa: E402,F401
from tfds_builders.synthetic_blur.synthetic_blur_dataset_builder_test import ensure_blur_module  # noqa: E402

ensure_blur_module()

DUMMY = {name: ROOT / "tfds_builders" / name / "dummy_data" for name in tfds_builders.BUILDER_NAMES}

# Put in front of a subprocess's code: tensorflow behaves as NOT INSTALLED
# (importlib.util.find_spec("tensorflow") is None, `import tensorflow` raises
# ModuleNotFoundError), as on the GPU machine.  Note: the often-suggested
# `sys.modules["tensorflow"] = None` is not equivalent: tfds checks
# `"tensorflow" in sys.modules` and then fails inside `import tensorflow_datasets`.
NO_TF_PRELUDE = textwrap.dedent("""\
    import importlib.machinery, sys
    class _NoTF(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)
    sys.meta_path[:] = [_NoTF if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    """)


def _run_python(code: str, timeout: int = 240) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return subprocess.run(
    [sys.executable, "-c", code],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _build(name: str, manual_dir, data_dir, **builder_kwargs):
  builder = tfds.builder(name, data_dir=str(data_dir), **builder_kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else str(manual_dir))
  )
  return builder


def _png(arr: np.ndarray, mode=None) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr, mode=mode).save(buf, format="PNG")
  return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im)


@pytest.fixture
def gopro_copy(tmp_path):
  dst = tmp_path / "manual"
  shutil.copytree(DUMMY["gopro"], dst)
  return dst


# ------------------------------------------------------------------- 2a. manual dir
@pytest.mark.parametrize("name", ["gopro/blur", "hide", "realblur/j", "kohler", "lai/real"])
def test_missing_manual_dir_shows_expected_layout(tmp_path, name):
  builder_cls = type(tfds.builder(name, data_dir=str(tmp_path / "d")))
  with pytest.raises(_common.ManualDirError) as e:
    _build(name, tmp_path / "does_not_exist", tmp_path / "d")
  msg = str(e.value)
  assert "Expected layout" in msg and builder_cls.EXPECTED_LAYOUT.splitlines()[0] in msg
  assert "does_not_exist does not exist" in msg


@pytest.mark.parametrize("name", ["gopro/blur", "hide", "realblur/j", "kohler", "lai/real"])
def test_wrong_manual_dir_lists_what_was_found(tmp_path, name):
  wrong = tmp_path / "wrong"
  (wrong / "holiday_photos").mkdir(parents=True)
  (wrong / "notes.txt").write_text("x")
  with pytest.raises(_common.ManualDirError) as e:
    _build(name, wrong, tmp_path / "d")
  msg = str(e.value)
  assert "Expected layout" in msg
  assert "  holiday_photos/" in msg and "  notes.txt" in msg


def test_empty_manual_dir(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(_common.ManualDirError, match="missing or empty"):
    _build("gopro/blur", tmp_path / "empty", tmp_path / "d")


def test_repackaged_gopro_refuses_blur_gamma(tmp_path):
  manual = ROOT / "tfds_builders" / "gopro" / "dummy_data_repackaged"
  with pytest.raises(_common.ManualDirError, match="only holds the `blur` inputs"):
    _build("gopro/blur_gamma", manual, tmp_path / "d")


# ------------------------------------------------------------------- 2b. bad files
def test_truncated_png_names_the_file(tmp_path, gopro_copy):
  bad = gopro_copy / "GOPRO_Large/train/GOPR0374_11_00/blur/000101.png"
  data = bad.read_bytes()
  bad.write_bytes(data[: len(data) // 2])
  with pytest.raises(_common.ImageFileError, match="truncated or corrupt") as e:
    _build("gopro/blur", gopro_copy, tmp_path / "d")
  assert str(bad) in str(e.value)


def test_non_image_file_names_the_file(tmp_path, gopro_copy):
  bad = gopro_copy / "GOPRO_Large/test/GOPR0384_11_00/sharp/000002.png"
  bad.write_text("this is not a PNG")
  with pytest.raises(_common.ImageFileError, match="not a recognised image") as e:
    _build("gopro/blur", gopro_copy, tmp_path / "d")
  assert str(bad) in str(e.value)


def test_empty_file_names_the_file(tmp_path, gopro_copy):
  bad = gopro_copy / "GOPRO_Large/test/GOPR0384_11_00/blur/000001.png"
  bad.write_bytes(b"")
  with pytest.raises(_common.ImageFileError, match="empty") as e:
    _build("gopro/blur", gopro_copy, tmp_path / "d")
  assert str(bad) in str(e.value)


def test_size_mismatch_names_both_files(tmp_path, gopro_copy):
  sharp = gopro_copy / "GOPRO_Large/train/GOPR0372_07_00/sharp/000048.png"
  sharp.write_bytes(_png(np.zeros((30, 40, 3), np.uint8)))
  blurry = gopro_copy / "GOPRO_Large/train/GOPR0372_07_00/blur/000048.png"
  with pytest.raises(_common.SizeMismatchError) as e:
    _build("gopro/blur", gopro_copy, tmp_path / "d")
  assert str(blurry) in str(e.value) and str(sharp) in str(e.value)
  with Image.open(blurry) as im:
    blurry_hw = f"{im.height}x{im.width}"
  assert f"blurry {blurry} is {blurry_hw} " in str(e.value) and f"sharp {sharp} is 30x40 (HxW)" in str(e.value)


def test_missing_sharp_counterpart(tmp_path, gopro_copy):
  sharp = gopro_copy / "GOPRO_Large/train/GOPR0372_07_00/sharp/000047.png"
  sharp.unlink()
  with pytest.raises(_common.MissingPairError, match="000047.png"):
    _build("gopro/blur", gopro_copy, tmp_path / "d")


def test_realblur_bad_list_line_names_file_and_line(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY["realblur"], manual)
  lst = manual / "RealBlur_J_test_list.txt"
  lst.write_text(lst.read_text() + "\nonly_one_path.png")
  with pytest.raises(_common.ManualDirError, match=r"RealBlur_J_test_list.txt:3"):
    _build("realblur/j", manual, tmp_path / "d")


# ------------------------------------------------------------------- 2c. conversion
def test_load_image_keeps_rgb8_png_bytes(tmp_path):
  arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
  p = tmp_path / "a.png"
  p.write_bytes(_png(arr))
  img = _common.load_image(p)
  assert img.png_bytes == p.read_bytes() and not img.converted


@pytest.mark.parametrize(
  "kind, arr, mode, reasons",
  [
    ("gray", np.full((4, 5), 77, np.uint8), "L", {"grayscale"}),
    ("rgba", np.full((4, 5, 4), 99, np.uint8), "RGBA", {"alpha"}),
    ("gray16", np.full((4, 5), 257 * 77, np.uint16), None, {"16-bit", "grayscale"}),
  ],
)
def test_load_image_converts_to_rgb8(tmp_path, kind, arr, mode, reasons):
  p = tmp_path / f"{kind}.png"
  p.write_bytes(_png(arr, mode))
  img = _common.load_image(p)
  assert set(img.conversions) == reasons
  out = _decode(img.png_bytes)
  assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
  assert (out == (99 if kind == "rgba" else 77)).all()


def test_load_image_16bit_rgb_is_rounded(tmp_path):
  cv2 = pytest.importorskip("cv2")
  rgb16 = np.zeros((2, 3, 3), np.uint16)
  rgb16[..., 0] = 65535
  rgb16[..., 1] = 257 * 10 + 200  # 2770 / 257 = 10.78 -> 11
  rgb16[..., 2] = 128  # 0.498 -> 0
  ok, enc = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV wants BGR
  assert ok
  p = tmp_path / "rgb16.png"
  p.write_bytes(enc.tobytes())
  img = _common.load_image(p)
  assert "16-bit" in img.conversions
  out = _decode(img.png_bytes)
  assert (out[..., 0] == 255).all() and (out[..., 1] == 11).all() and (out[..., 2] == 0).all()


def test_load_image_palette_and_jpeg(tmp_path):
  pal = Image.fromarray(np.full((4, 5, 3), 200, np.uint8)).convert("P")
  p = tmp_path / "pal.png"
  pal.save(p)
  assert "palette" in _common.load_image(p).conversions
  j = tmp_path / "x.jpg"
  Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(j, quality=95)
  img = _common.load_image(j)
  assert img.conversions == ("non-png",) and _decode(img.png_bytes).shape == (8, 8, 3)


def test_load_image_uses_predicts_reader_and_keeps_stored_orientation(tmp_path):
  from bdirnet_jax import image_io  # pylint: disable=g-import-not-at-top

  assert _common.IMAGE_EXTENSIONS is image_io.EXTENSIONS  # one list of formats for predict and the builders
  rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(tmp_path / "x.webp", lossless=True)
  img = _common.load_image(tmp_path / "x.webp")
  assert img.conversions == ("non-png",) and np.array_equal(_decode(img.png_bytes), rgb)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95, exif=exif.tobytes())
  assert _common.load_image(tmp_path / "x.jpg").size == (6, 4)  # a pair's geometry does not follow tags
  assert [p.name for p in _common.list_images(_common.epath.Path(tmp_path))] == ["x.jpg", "x.webp"]


def test_conversion_count_is_logged_per_split(tmp_path, caplog):
  cfg = sb.SyntheticBlurConfig(name="test_gaussian_1", family="gaussian", train_variants=1, test_variants=1)
  with caplog.at_level(logging.INFO):
    builder = sb.Builder(config=cfg, data_dir=str(tmp_path / "d"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(DUMMY["synthetic_blur"])))
  msgs = [r.getMessage() for r in caplog.records if "to 8-bit RGB" in r.getMessage()]
  train = [m for m in msgs if "split train" in m]
  # Train: deep_16bit (16-bit gray), gray_portrait, rgba_leaves, harbour.jpg.
  assert len(train) == 1, msgs
  assert "converted 4 of 6 source images" in train[0]
  assert "16-bit: 1" in train[0] and "grayscale: 2" in train[0] and "alpha: 1" in train[0]
  assert "non-png: 1" in train[0]


# ------------------------------------------------------- 2d. formats and data_source
def test_array_record_is_default_and_tfrecord_override(tmp_path):
  b = _build("kohler", DUMMY["kohler"], tmp_path / "ar")
  assert b.info.file_format.value == "array_record"
  assert list((tmp_path / "ar/kohler/1.1.0").glob("kohler-test.array_record-*"))
  b2 = _build("kohler", DUMMY["kohler"], tmp_path / "tfr", file_format="tfrecord")
  assert list((tmp_path / "tfr/kohler/1.1.0").glob("kohler-test.tfrecord-*"))
  # Re-opening a prepared dataset keeps its on-disk format (no ArrayRecord forcing).
  assert tfds.builder("kohler", data_dir=str(tmp_path / "tfr")).info.file_format.value == "tfrecord"
  assert b2.info.splits["test"].num_examples == 3


def test_original_png_bytes_are_stored(tmp_path):
  _build("gopro/blur", DUMMY["gopro"], tmp_path / "d")
  ds = tfds.data_source(
    "gopro/blur",
    split="train",
    data_dir=str(tmp_path / "d"),
    decoders={"blurry": tfds.decode.SkipDecoding(), "sharp": tfds.decode.SkipDecoding()},
  )
  assert len(ds) == 3
  for i in range(3):
    ex = ds[i]
    image_id = ex["image_id"].decode() if isinstance(ex["image_id"], bytes) else ex["image_id"]
    blurry = DUMMY["gopro"] / image_id
    assert ex["blurry"] == blurry.read_bytes()
    sharp = blurry.parent.parent / "sharp" / blurry.name
    assert ex["sharp"] == sharp.read_bytes()


def test_kohler_middle_frame_and_counts(tmp_path):
  _build("kohler", DUMMY["kohler"], tmp_path / "d")
  ds = tfds.data_source("kohler", split="test", data_dir=str(tmp_path / "d"))
  got = {}
  for i in range(len(ds)):
    ex = ds[i]
    key = (int(ex["image_index"]), int(ex["kernel_index"]))
    got[key] = (int(ex["sharp_frame_index"]), int(ex["num_sharp_frames"]))
    p, k = key
    frame = DUMMY["kohler"] / f"Image{p}/Kernel{k}/GroundTruth{p}_{k}_{got[key][0]}.png"
    np.testing.assert_array_equal(ex["sharp"], _decode(frame.read_bytes()))
  assert got == {(1, 1): (3, 5), (1, 2): (2, 4), (2, 1): (2, 3)}


def _kohler_frames(root, p, k) -> list:
  return sorted(root.glob(f"**/GroundTruth{p}_{k}_*.png"), key=lambda f: int(f.stem.rsplit("_", 1)[1]))


def test_kohler_per_zip_extraction_exposes_every_frame(tmp_path):
  """Each GroundTruth_pngs_Image{p}.zip extracted into a folder of its own (with or without the inner Image{p})."""
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY["kohler"] / "BlurryImages", manual / "BlurryImages")
  shutil.copytree(DUMMY["kohler"] / "Image1", manual / "GroundTruth_pngs_Image1" / "Image1")
  shutil.copytree(DUMMY["kohler"] / "Image2", manual / "GroundTruth_pngs_Image2")  # zip without the inner folder
  _build("kohler", manual, tmp_path / "d")
  ds = tfds.data_source("kohler", split="test", data_dir=str(tmp_path / "d"))
  assert len(ds) == 3
  for i in range(len(ds)):
    ex = ds[i]
    p, k = int(ex["image_index"]), int(ex["kernel_index"])
    files = _kohler_frames(DUMMY["kohler"], p, k)
    assert (
      list(ex["sharp_frame_numbers"])
      == list(range(1, len(files) + 1))
      == [int(f.stem.rsplit("_", 1)[1]) for f in files]
    )
    frames = np.stack(list(ex["sharp_frames"]))
    assert frames.shape == (len(files),) + ex["sharp"].shape and frames.dtype == np.uint8
    for frame, f in zip(frames, files):
      np.testing.assert_array_equal(frame, _decode(f.read_bytes()))
    np.testing.assert_array_equal(frames[(len(files) - 1) // 2], ex["sharp"])  # the middle frame


def test_kohler_side_by_side_keeps_working_and_names_missing_frames(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY["kohler"], manual)
  shutil.rmtree(manual / "Image1" / "Kernel2")
  with pytest.raises(_common.MissingPairError, match=r"Kernel2/GroundTruth1_2_<f>\.png"):
    _build("kohler", manual, tmp_path / "d")


def _lai_official_tree(root):
  """The official layout: two-column lists (`name  kernel size`), non-uniform blurs named <gt>_gyro_{07,16,...}."""
  from tfds_builders import make_dummy_data  # pylint: disable=g-import-not-at-top

  gts = ["manmade_01", "natural_01"]
  uni = [(f"{g}_kernel_0{k}", size) for g in gts for k, size in ((1, 51), (2, 55), (3, 75), (4, 35))]
  nonuni = [(f"{g}_gyro_{k}", 0) for g in gts for k in ("07", "16", "23", "24")]
  (root / "synthetic_dataset" / "ground_truth").mkdir(parents=True)
  (root / "synthetic_dataset" / "uniform").mkdir()
  (root / "synthetic_dataset" / "nonuniform").mkdir()
  for i, g in enumerate(gts):
    (root / "synthetic_dataset" / "ground_truth" / f"{g}.png").write_bytes(_png(make_dummy_data._pattern(80 + i)))
  for folder, items in (("uniform", uni), ("nonuniform", nonuni)):
    for name, _ in items:
      g = gts.index(name.split("_kernel_")[0].split("_gyro_")[0])
      blurry = make_dummy_data._blur(make_dummy_data._pattern(80 + g))
      (root / "synthetic_dataset" / folder / f"{name}.png").write_bytes(_png(blurry))
  (root / "ground_truth.txt").write_text("\n".join(gts) + "\n")
  (root / "synthetic_uniform.txt").write_text("".join(f"{n}     {size}\n" for n, size in uni))
  (root / "synthetic_nonuniform.txt").write_text("".join(f"{n}\t{size}\r\n" for n, size in nonuni))
  return len(uni), len(nonuni)


def test_lai_official_two_column_lists(tmp_path):
  n_uni, n_nonuni = _lai_official_tree(tmp_path / "manual")
  for config, n in (("synthetic_uniform", n_uni), ("synthetic_nonuniform", n_nonuni)):
    _build(f"lai/{config}", tmp_path / "manual", tmp_path / "d")
    ds = tfds.data_source(f"lai/{config}", split="test", data_dir=str(tmp_path / "d"))
    assert len(ds) == n, config
    ids = sorted(
      ds[i]["image_id"].decode() if isinstance(ds[i]["image_id"], bytes) else ds[i]["image_id"] for i in range(len(ds))
    )
    assert all(" " not in i and "\t" not in i for i in ids)
  assert lai_dataset_builder.read_names(tmp_path / "manual" / "synthetic_uniform.txt")[:2] == [
    "manmade_01_kernel_01",
    "manmade_01_kernel_02",
  ]


def test_data_source_without_tensorflow(tmp_path):
  data_dir = tmp_path / "d"
  _build("gopro/blur", DUMMY["gopro"], data_dir)
  _build("lai/real", DUMMY["lai"], data_dir)
  code = NO_TF_PRELUDE + textwrap.dedent(f"""
      import importlib.util, io, sys
      assert importlib.util.find_spec("tensorflow") is None
      import numpy as np
      from PIL import Image
      import tensorflow_datasets as tfds
      # Without the builder code: read from the prepared files only.
      ds = tfds.data_source("gopro/blur", split="test", data_dir={str(data_dir)!r})
      assert type(ds).__name__ == "ArrayRecordDataSource", type(ds)
      assert len(ds) == 2
      ex = ds[1]
      ref = np.asarray(Image.open({str(DUMMY["gopro"])!r} + "/" + ex["image_id"].decode()))
      assert np.array_equal(ex["blurry"], ref)
      assert ex["sharp"].shape == (32, 48, 3) and ex["sharp"].dtype == np.uint8
      # With the builders registered (as bdirnet_jax.input_pipeline does).
      import tfds_builders
      ds = tfds.data_source("lai/real", split="test", data_dir={str(data_dir)!r})
      assert sorted(ds[0]) == ["blurry", "image_id"], sorted(ds[0])
      assert [ds[i]["blurry"].shape for i in range(len(ds))] == [(32, 48, 3)] * 2
      assert "tensorflow" not in sys.modules
      print("NO_TF_OK")
      """)
  r = _run_python(code)
  assert r.returncode == 0 and "NO_TF_OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_import_is_cheap_and_does_not_import_tensorflow():
  code = NO_TF_PRELUDE + textwrap.dedent("""
      import sys, time
      t = time.time()
      import tfds_builders
      dt = time.time() - t
      import tensorflow_datasets as tfds
      names = set(tfds.list_builders(with_community_datasets=False))
      assert set(tfds_builders.BUILDER_NAMES) <= names
      heavy_roots = ("tensorflow", "jax", "skimage", "sklearn")
      heavy = sorted(m for m in sys.modules if m.split(".")[0] in heavy_roots or m == "bdirnet_jax.blur")
      assert not heavy, heavy
      print("IMPORT_OK %.2f" % dt)
      """)
  r = _run_python(code)
  assert r.returncode == 0 and "IMPORT_OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_cli_build_writes_array_record(tmp_path):
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "tfds_builders.cli",
      "build",
      "tfds_builders/kohler",
      f"--manual_dir={DUMMY['kohler']}",
      f"--data_dir={tmp_path}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert list((tmp_path / "kohler/1.1.0").glob("kohler-test.array_record-*"))


# ---------------------------------------------------------------- 2e. synthetic_blur
def test_synthetic_blur_seed_recipe_and_split_by_source(tmp_path):
  import bdirnet_jax.blur as blur  # real module, or the test stand-in

  _build("synthetic_blur/mixed", DUMMY["synthetic_blur"], tmp_path / "d")
  ids = {}
  for split in ("train", "test"):
    ds = tfds.data_source("synthetic_blur/mixed", split=split, data_dir=str(tmp_path / "d"))
    ids[split] = {ds[i]["image_id"] for i in range(len(ds))}
  assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]
  ex = ds[1]  # test split, variant 1
  image_id, v = ex["image_id"].decode(), int(ex["variant"])
  seed = _common.stable_hash("synthetic_blur", "mixed", image_id, v)
  assert int(ex["seed"]) == seed & 0x7FFFFFFFFFFFFFFF
  rng = np.random.default_rng(seed)
  family = blur.FAMILIES[int(rng.integers(len(blur.FAMILIES)))]
  assert ex["blur_family"].decode() == family
  expected = blur.synthesize_blurry(ex["sharp"], rng, family=family, kernel_size=31, gaussian_sigma=0.01)
  np.testing.assert_array_equal(ex["blurry"], expected)


def test_synthetic_blur_stable_hash_is_sha256_of_the_joined_parts():
  """Every split and seed comes from this hash, so it must stay the documented recipe: the first 8 bytes,
  little-endian, of SHA-256 of the parts joined by 0x1f (not Python's per-process salted hash())."""
  # FIPS 180-2's published test vector: SHA-256("abc") = ba7816bf 8f01cfea ...
  assert _common.stable_hash("abc") == int.from_bytes(bytes.fromhex("ba7816bf8f01cfea"), "little")
  assert _common.stable_hash("a", "bc") == _common.stable_hash("a\x1fbc") != _common.stable_hash("abc")
  # `printf 'synthetic_blur\037mixed\037photos/alpine_lake.png\0370' | sha256sum` (coreutils) starts f9deb413ffc417e0.
  expected = int.from_bytes(bytes.fromhex("f9deb413ffc417e0"), "little")
  assert _common.stable_hash("synthetic_blur", "mixed", "photos/alpine_lake.png", 0) == expected
  ids = [f"img_{i}.png" for i in range(40)]
  s = sb.assign_splits(ids, 0.25)
  assert sorted(s["train"] + s["test"]) == sorted(ids) and 4 <= len(s["test"]) <= 16
  assert sb.assign_splits(list(reversed(ids)), 0.25) == s


def test_synthetic_blur_uses_packaged_photos_without_manual_dir(tmp_path):
  cfg = sb.SyntheticBlurConfig(name="test_packaged", family="gaussian", train_variants=1, test_variants=1)
  builder = sb.Builder(config=cfg, data_dir=str(tmp_path / "d"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
  n = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
  photos = sb.packaged_photo_paths()
  assert len(photos) == len(sb.PACKAGED_PHOTOS) == sum(n.values()) and n["test"] >= 1
  ds = builder.as_data_source(split="test")
  assert ds[0]["image_id"].decode().startswith(("skimage/", "sklearn/"))


def test_synthetic_blur_manual_dir_without_images(tmp_path):
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "readme.txt").write_text("no images here")
  with pytest.raises(_common.ManualDirError, match="holds no image files"):
    _build("synthetic_blur/linear", tmp_path / "m", tmp_path / "d")


def test_dummy_data_is_up_to_date():
  from tfds_builders import make_dummy_data

  stale = [t.root for t in make_dummy_data.trees() if make_dummy_data._existing(t.root) != t.files]
  assert not stale, f"run `python tfds_builders/make_dummy_data.py`: {stale}"


def test_hide_gt_names_with_and_without_mp4():
  from tfds_builders.hide.hide_dataset_builder import gt_candidates

  assert gt_candidates("109fromGOPR1096.MP4.png") == ["109fromGOPR1096.MP4.png", "109fromGOPR1096.png"]
  assert gt_candidates("1fromGOPR0950.png") == ["1fromGOPR0950.png", "1fromGOPR0950.MP4.png"]
