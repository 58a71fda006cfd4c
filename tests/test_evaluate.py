"""--mode=evaluate: full-resolution scores equal to independent references (MATLAB 3-D SSIM port, scikit-image),
the blurred input scored beside the output, JSON/report/grid files, sharding invariance, the protocol table."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from bdirnet_jax import config_validation
from bdirnet_jax import eval_report
from bdirnet_jax import evaluate
from bdirnet_jax import inference
from bdirnet_jax import protocols
from bdirnet_jax import sharding as sharding_lib
from configs import default
from configs import tiny
from tests.test_metrics import matlab_ssim_3d

TEST_SIZES = ((37, 53), (37, 53), (50, 45))  # two of one size (batched together), none a multiple of 4


def _write_gopro_layout(root, sizes, split, sequence):
  photo = skimage.data.astronaut()
  for i, (h, w) in enumerate(sizes):
    sharp = photo[40 * i : 40 * i + h, 60 * i : 60 * i + w]
    blurry = np.round(scipy.ndimage.gaussian_filter(sharp.astype(float), (1.5, 1.5, 0))).astype(np.uint8)
    for folder, img in (("sharp", sharp), ("blur", blurry), ("blur_gamma", blurry)):
      path = root / "GOPRO_Large" / split / sequence / folder / f"{i + 1:06d}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(img).save(path)


@pytest.fixture(scope="module")
def gopro_dummy(tmp_path_factory):
  """A GoPro-layout dataset of odd-sized crops of a shipped photo, prepared as ArrayRecord by our builder."""
  pytest.importorskip("tensorflow", reason="building a TFDS dataset needs tensorflow (CI installs it)")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  import tfds_builders  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  manual = tmp_path_factory.mktemp("manual")
  _write_gopro_layout(manual, TEST_SIZES, "test", "GOPR0384_11_00")
  _write_gopro_layout(manual, ((32, 32),), "train", "GOPR0372_07_00")
  data_dir = tmp_path_factory.mktemp("tfds")
  builder = tfds.builder("gopro", data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return str(data_dir)


def _eval_config(data_dir, **overrides):
  config = tiny.get_config()
  config.eval_datasets = [default.dataset_config("gopro", None, "test", crop_size=0, data_dir=data_dir, **overrides)]
  return config


def _copy(workdir, tmp_path):
  dst = tmp_path / "workdir"
  shutil.copytree(workdir, dst)
  return dst


def test_evaluate_writes_json_report_and_grid_with_reference_scores(trained_workdir, gopro_dummy, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  results = evaluate.evaluate(workdir, _eval_config(gopro_dummy))
  summary = json.loads((workdir / "eval" / "gopro_test.json").read_text())
  assert set(results) == {"gopro_test"}
  for key in (
    "psnr",
    "ssim",
    "input_psnr",
    "input_ssim",
    "num_images",
    "protocol",
    "protocol_definition",
    "protocol_source",
    "step",
    "per_image",
  ):
    assert key in summary, key
  assert summary["num_images"] == len(TEST_SIZES) and summary["step"] == 4 and summary["params"] == "ema"
  assert summary["protocol"] == "gopro_matlab" and "ssim_3d" in summary["protocol_definition"]
  assert results["gopro_test"]["input_psnr"] == pytest.approx(summary["input_psnr"])
  assert "(input " in evaluate.headline(results["gopro_test"])

  # Recompute every image independently: pad, deblur one at a time, crop, round, score with scikit-image's PSNR
  # and the float64 MATLAB 3-D SSIM port; the blurred input scored the same way.
  restored = inference.load(workdir)
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  examples = list(input_pipeline.create_eval_iterator(_eval_config(gopro_dummy).eval_datasets[0]))
  assert sorted(e["blurry"].shape[:2] for e in examples) == sorted(TEST_SIZES)
  by_id = {r["image_id"]: r for r in summary["per_image"]}
  fn = jax.jit(inference.deblur_fn(restored.model))
  for e in examples:
    padded, hw = inference.pad_to_multiple(e["blurry"][None], restored.model.downsample_factor)
    out = np.asarray(inference.crop(fn(restored.params, padded), hw))[0]
    out = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    assert out.shape == e["sharp"].shape
    r = by_id[e["image_id"]]
    np.testing.assert_allclose(r["psnr"], peak_signal_noise_ratio(e["sharp"], out, data_range=255), atol=1e-3)
    np.testing.assert_allclose(r["ssim"], matlab_ssim_3d(out, e["sharp"]), atol=1e-4)
    np.testing.assert_allclose(
      r["input_psnr"], peak_signal_noise_ratio(e["sharp"], e["blurry"], data_range=255), atol=1e-3
    )
    np.testing.assert_allclose(r["input_ssim"], matlab_ssim_3d(e["blurry"], e["sharp"]), atol=1e-4)
  np.testing.assert_allclose(summary["psnr"], np.mean([r["psnr"] for r in summary["per_image"]]), rtol=1e-6)
  np.testing.assert_allclose(summary["input_ssim"], np.mean([r["input_ssim"] for r in summary["per_image"]]), rtol=1e-6)

  report = (workdir / "eval" / "report.md").read_text()
  assert "| gopro |" in report and f"{summary['psnr']:.2f}" in report and f"{summary['input_psnr']:.2f}" in report
  assert "input PSNR" in report and "`gopro_matlab`:" in report
  grid = np.asarray(Image.open(workdir / "eval" / summary["grid"]))
  rows = min(len(TEST_SIZES), tiny.get_config().eval_num_grid_images)
  assert grid.shape[0] == rows * eval_report.GRID_ROW_HEIGHT + (rows - 1) * 4  # one row per image, 4-pixel gaps
  assert grid.shape[1] > 3 * eval_report.GRID_ROW_HEIGHT  # three panels: blurred, output, sharp


def test_scikit_image_protocol_stays_available(trained_workdir, gopro_dummy):
  restored = inference.load(trained_workdir)
  ds_cfg = _eval_config(gopro_dummy, protocol="rgb_uint8_gauss11").eval_datasets[0]
  summary, _ = evaluate.evaluate_dataset(restored, ds_cfg, sharding_lib.create_mesh((-1, 1)), max_images=1)
  assert summary["protocol"] == "rgb_uint8_gauss11"
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  e = next(iter(input_pipeline.create_eval_iterator(ds_cfg)))
  r = summary["per_image"][0]
  assert r["image_id"] == e["image_id"]
  np.testing.assert_allclose(
    r["input_ssim"],
    structural_similarity(
      e["sharp"],
      e["blurry"],
      gaussian_weights=True,
      sigma=1.5,
      use_sample_covariance=False,
      data_range=255,
      channel_axis=-1,
    ),
    atol=1e-4,
  )


def test_protocol_table():
  assert set(protocols.DATASET_PROTOCOLS.values()) <= set(protocols.PROTOCOLS)
  for name, protocol in protocols.PROTOCOLS.items():
    assert protocol.name == name and protocol.definition and protocol.source
  pick = lambda name, **kw: protocols.protocol_for(default.dataset_config(name, None, "test", **kw))
  assert pick("gopro") == pick("hide") == "gopro_matlab"
  assert pick("realblur") == "realblur_ecc" and pick("kohler") == "kohler_eccv12"
  assert pick("lai") == pick("synthetic_blur") == "rgb_uint8_gauss11"
  assert pick("gopro", protocol="rgb_uint8_gauss11") == "rgb_uint8_gauss11"
  with pytest.raises(config_validation.ConfigError, match="not a known protocol"):
    pick("gopro", protocol="matlab")


def test_mode_evaluate_on_gopro_tree_reports_gopro_matlab(trained_workdir, gopro_dummy, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  config_file = tmp_path / "eval_gopro.py"
  config_file.write_text(
    "from configs import default, tiny\n\n\ndef get_config():\n  config = tiny.get_config()\n"
    f"  config.eval_datasets = [default.dataset_config('gopro', None, 'test', crop_size=0, "
    f"data_dir={gopro_dummy!r})]\n  config.eval_num_grid_images = 0\n  return config\n"
  )
  proc = subprocess.run(
    [sys.executable, "main.py", "--mode=evaluate", f"--workdir={workdir}", f"--config={config_file}"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((workdir / "eval" / "gopro_test.json").read_text())
  assert summary["protocol"] == "gopro_matlab" and summary["num_images"] == len(TEST_SIZES)
  assert summary["input_psnr"] is not None and "(input " in proc.stderr
  # Ends with where the report is; no orbax chatter, no progress-bar escape codes in a redirected log.
  assert proc.stderr.strip().splitlines()[-1].endswith(f"evaluate: report written to {workdir / 'eval' / 'report.md'}")
  assert "orbax" not in proc.stderr and "\x1b[" not in proc.stderr and "\r" not in proc.stderr


def test_evaluation_is_the_same_on_1_and_4_devices(trained_workdir, gopro_dummy):
  restored = inference.load(trained_workdir)
  ds_cfg = _eval_config(gopro_dummy).eval_datasets[0]
  runs = []
  for devices in (jax.devices()[:1], jax.devices()):
    summary, _ = evaluate.evaluate_dataset(restored, ds_cfg, sharding_lib.create_mesh((-1, 1), devices=devices))
    runs.append({r["image_id"]: (r["psnr"], r["ssim"]) for r in summary["per_image"]})
  assert runs[0].keys() == runs[1].keys()
  for key, value in runs[0].items():
    np.testing.assert_allclose(value, runs[1][key], atol=1e-4)


def test_labels_keep_results_apart_and_report_accumulates(trained_workdir, gopro_dummy, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  config = _eval_config(gopro_dummy, label="gopro_again")
  config.eval_num_grid_images = 0
  # As loaded from DIR/config.json (what --mode=evaluate without --config uses): list entries are plain dicts.
  evaluate.evaluate(workdir, ml_collections.ConfigDict(json.loads(_eval_config(gopro_dummy).to_json_best_effort())))
  evaluate.evaluate(workdir, config)
  assert (workdir / "eval" / "gopro_again_test.json").exists()
  assert not (workdir / "eval" / "gopro_again_test_grid.png").exists()
  report = (workdir / "eval" / "report.md").read_text()
  assert "| gopro |" in report and "| gopro_again |" in report


def test_unknown_dataset_and_duplicate_labels_fail_with_one_line(trained_workdir, tmp_path):
  config = tiny.get_config()
  config.eval_datasets = [default.dataset_config("gopro_typo", None, "test", crop_size=0)]
  with pytest.raises(config_validation.ConfigError, match=r"eval_datasets\[0\].name='gopro_typo'.*expected one of"):
    evaluate.evaluate(trained_workdir, config)
  config.eval_datasets = [default.dataset_config("gopro", None, "test"), default.dataset_config("gopro", "x", "test")]
  with pytest.raises(config_validation.ConfigError, match="distinct `label`"):
    evaluate.evaluate(trained_workdir, config)
  assert not (tmp_path / "eval").exists()


def test_missing_checkpoint_is_one_line_from_main(tmp_path):
  proc = subprocess.run(
    [sys.executable, "main.py", "--mode=evaluate", f"--workdir={tmp_path / 'nothing'}"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert "config.json not found" in last and "--mode=train" in last, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_kohler_is_scored_against_every_frame(trained_workdir, tmp_path):
  """The builder's Köhler dummy tree, evaluated under the official protocol: best frame, gain and shift per image."""
  pytest.importorskip("tensorflow", reason="building a TFDS dataset needs tensorflow (CI installs it)")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  import tfds_builders  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from bdirnet_jax import kohler_protocol  # pylint: disable=g-import-not-at-top
  from tests.test_kohler_protocol import eval_image_port  # pylint: disable=g-import-not-at-top

  manual = Path(__file__).resolve().parents[1] / "tfds_builders" / "kohler" / "dummy_data"
  builder = tfds.builder("kohler", data_dir=str(tmp_path / "tfds"), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  restored = inference.load(trained_workdir)
  ds_cfg = default.dataset_config("kohler", None, "test", crop_size=0, data_dir=str(tmp_path / "tfds"))
  summary, _ = evaluate.evaluate_dataset(restored, ds_cfg, sharding_lib.create_mesh((-1, 1)), num_grid_images=0)
  assert summary["protocol"] == "kohler_eccv12" and summary["num_images"] == 3
  source = tfds.data_source("kohler", split="test", data_dir=str(tmp_path / "tfds"))
  records = {str(r["image_id"].decode() if isinstance(r["image_id"], bytes) else r["image_id"]): r for r in source}
  fn = jax.jit(inference.deblur_fn(restored.model))
  for r in summary["per_image"]:
    rec = records[r["image_id"]]
    frames = np.stack(list(rec["sharp_frames"]))
    assert r["frame"] in list(rec["sharp_frame_numbers"]) and "gain" in r and len(r["shift"]) == 2
    # The blurred input against the port of eval_image.m.
    ref_psnr, ref_index = eval_image_port(rec["blurry"], frames)
    assert abs(r["input_psnr"] - ref_psnr) < 0.05
    padded, hw = inference.pad_to_multiple(rec["blurry"][None], restored.model.downsample_factor)
    out = np.round(np.clip(np.asarray(inference.crop(fn(restored.params, padded), hw))[0], 0, 1) * 255)
    ref_psnr, ref_index = eval_image_port(out.astype(np.uint8), frames)
    assert abs(r["psnr"] - ref_psnr) < 0.05 and r["frame"] == int(rec["sharp_frame_numbers"][ref_index])
  assert kohler_protocol.KOHLER_PROTOCOL in protocols.PROTOCOLS


def test_realblur_and_a_set_without_ground_truth_go_through_evaluate(trained_workdir, tmp_path):
  """The builders' RealBlur-J and Lai real dummy trees through --mode=evaluate's function: RealBlur scored under its
  ECC protocol as the bare network's output would be; Lai's real photos (no ground truth) counted, never scored."""
  pytest.importorskip("tensorflow", reason="building a TFDS dataset needs tensorflow (CI installs it)")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  import tfds_builders  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from bdirnet_jax import realblur_protocol  # pylint: disable=g-import-not-at-top

  root = Path(__file__).resolve().parents[1] / "tfds_builders"
  data_dir = str(tmp_path / "tfds")
  for name in ("realblur/j", "lai/real"):
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    manual = root / name.split("/")[0] / "dummy_data"
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  config = tiny.get_config()
  config.eval_num_grid_images = 0
  config.eval_datasets = [
    default.dataset_config(n, c, "test", crop_size=0, data_dir=data_dir)
    for n, c in (("realblur", "j"), ("lai", "real"))
  ]
  workdir = _copy(trained_workdir, tmp_path)
  results = evaluate.evaluate(workdir, config)
  realblur, lai = results["realblur_test"], results["lai_test"]

  source = tfds.data_source("realblur/j", split="test", data_dir=data_dir)
  assert realblur["protocol"] == "realblur_ecc" and realblur["num_images"] == len(source) > 0
  restored = inference.load(workdir)
  fn = jax.jit(inference.deblur_fn(restored.model))
  by_id = {r["image_id"]: r for r in realblur["per_image"]}
  for record in source:
    blurry, sharp = record["blurry"], record["sharp"].astype(np.float32) / 255
    h, w = blurry.shape[:2]
    padded = np.pad(blurry.astype(np.float32) / 255, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="reflect")
    out = np.asarray(fn(restored.params, padded[None]))[0, :h, :w]
    image_id = record["image_id"].decode() if isinstance(record["image_id"], bytes) else str(record["image_id"])
    scores = by_id[image_id]
    assert scores["psnr"] == pytest.approx(realblur_protocol.realblur_metrics(out, sharp)["psnr"], abs=1e-3)
    expected_input = realblur_protocol.realblur_metrics(blurry.astype(np.float32) / 255, sharp)["psnr"]
    assert scores["input_psnr"] == pytest.approx(expected_input, abs=1e-3)

  assert lai["num_images"] == len(tfds.data_source("lai/real", split="test", data_dir=data_dir)) == 2
  assert lai["num_scored"] == 0 and lai["psnr"] is None and lai["input_psnr"] is None
  assert all("psnr" not in r for r in lai["per_image"]) and evaluate.headline(lai).startswith("no ground truth")
  saved = json.loads((workdir / "eval" / "lai_test.json").read_text())
  assert saved["num_images"] == 2 and saved["psnr"] is None
  assert "n/a (no ground truth)" in (workdir / "eval" / "report.md").read_text()
