"""Pretrained packages: written from a workdir, restored by evaluate/predict/export, guarded by their sha256."""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import pytest
import skimage.data

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import pretrained

ROOT = Path(__file__).resolve().parent.parent


def test_package_holds_the_ema_params_config_and_their_sha256(trained_workdir, tmp_path):
  out = tmp_path / "tiny"
  meta = pretrained.package(str(trained_workdir), str(out))
  assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.msgpack", "pretrained.json"]
  assert json.loads((out / "pretrained.json").read_text()) == meta
  assert meta["params_kind"] == "ema" and meta["step"] == 4
  assert meta["params_sha256"] == pretrained.sha256(out / "params.msgpack")
  assert meta["params_bytes"] == (out / "params.msgpack").stat().st_size
  ema, step, _ = checkpoint.restore_params(str(trained_workdir), use_ema=True)
  raw, _, _ = checkpoint.restore_params(str(trained_workdir), use_ema=False)
  params, pstep, config = checkpoint.restore_params(str(out))
  assert pstep == step == 4 and config.model.preset == "tiny"
  assert meta["param_count"] == sum(x.size for x in jax.tree.leaves(ema))
  jax.tree.map(np.testing.assert_array_equal, params, ema)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(raw)))

  # Never overwrites, and only the package's own step is served.
  with pytest.raises(FileExistsError, match="already exists"):
    pretrained.package(str(trained_workdir), str(out))
  with pytest.raises(FileNotFoundError, match="step 4"):
    checkpoint.restore_params(str(out), step=2)
  with pytest.raises(config_validation.ConfigError, match="EMA params only"):
    checkpoint.restore_params(str(out), use_ema=False)

  # A config written by older code (a field missing) loads with today's default for it.
  saved = json.loads((out / "config.json").read_text())
  del saved["optim"]["ema_decay"], saved["log_every_steps"]
  (out / "config.json").write_text(json.dumps(saved))
  config = checkpoint.load_config(str(out))
  assert config.log_every_steps is not None and config.optim.ema_decay > 0 and config.model.preset == "tiny"

  # A changed params file is one clear line (main.py prints ConfigError's message alone, exit status 1).
  data = bytearray((out / "params.msgpack").read_bytes())
  data[-1] ^= 1
  (out / "params.msgpack").write_bytes(bytes(data))
  with pytest.raises(config_validation.ConfigError, match="sha256 .* does not match"):
    checkpoint.restore_params(str(out))


def test_readme_predict_command_on_a_package(trained_workdir, tmp_path):
  """python main.py --mode=predict --workdir=pretrained/NAME --input=IMG --output=OUT on a bundled photo."""
  pkg = tmp_path / "pretrained" / "tiny"
  pretrained.package(str(trained_workdir), str(pkg))
  photo = skimage.data.astronaut()[100:160, 150:230]
  iio.imwrite(tmp_path / "photo.png", photo)
  cmd = [sys.executable, "main.py", "--mode=predict", f"--workdir={pkg}", f"--input={tmp_path / 'photo.png'}"]
  result = subprocess.run(cmd + [f"--output={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  out = iio.imread(tmp_path / "out" / "photo.png")
  assert out.shape == photo.shape and out.dtype == np.uint8
  # The same pixels as predict from the training workdir itself.
  from bdirnet_jax import predict  # pylint: disable=g-import-not-at-top

  assert predict.predict(str(trained_workdir), str(tmp_path / "photo.png"), str(tmp_path / "ref")) == 0
  np.testing.assert_array_equal(out, iio.imread(tmp_path / "ref" / "photo.png"))


def test_validation_and_card_tables(trained_workdir, tmp_path):
  """validate.py's photo is outside every split; the table's rows are the per-image scores' means; no overwrite."""
  sys.path.insert(0, str(ROOT / "studies" / "pretrained"))
  import card_table  # pylint: disable=g-import-not-at-top
  import validate  # pylint: disable=g-import-not-at-top

  from bdirnet_jax.study import testsets  # pylint: disable=g-import-not-at-top
  from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as sb  # pylint: disable=g-import-not-at-top

  ((pid, photo),) = validate.validation_photos()
  assert photo.ndim == 3 and pid not in {i for i, _ in testsets.test_photos()}
  project = {os.path.basename(rel) for _, rel in sb.PACKAGED_PHOTOS}  # every split's photos
  wide = validate.validation_photos(sorted(validate.PHOTOS))
  for name, image in wide:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 128
    assert os.path.basename(validate.PHOTOS[name][1]) not in project, name
  assert dict(wide)[pid].tobytes() == photo.tobytes()
  sets, params = card_table.build_sets(str(trained_workdir), [(pid, photo)], 3, 32, 9, 0.01)
  assert [ts.family for ts in sets] == list(card_table.FAMILIES) and params == {"kernel_size": 9, "noise_sigma": 0.01}
  step, scores = card_table.score_sets(str(trained_workdir), None, sets)
  rows = {r["set"]: r for r in card_table.rows_of(sets, scores)}
  assert step == 4 and set(card_table.FAMILIES) <= set(rows)
  split = [rows[k]["images"] for k in ("trajectory (blurring)", "trajectory (point-like)") if k in rows]
  assert sum(split) == rows["trajectory"]["images"] == 3
  for ts in sets:
    r = rows[ts.family]
    assert r["input_psnr"] == pytest.approx(np.mean([p for p, _ in scores[ts.family]["input"]]))
    assert r["gain_db"] == pytest.approx(r["network_psnr"] - r["input_psnr"])
  card_table.write(str(tmp_path), "card_step4", {"rows": list(rows.values())}, card_table.markdown(rows.values(), "t"))
  assert "| linear | 3 |" in (tmp_path / "card_step4.md").read_text()
  with pytest.raises(SystemExit, match="exists"):
    card_table.write(str(tmp_path), "card_step4", {}, "")


def test_validation_photos_rescale_and_name_their_records():
  """--rescale resizes every photo (softer content when magnified) and the record's name says so."""
  sys.path.insert(0, str(ROOT / "studies" / "pretrained"))
  import validate  # pylint: disable=g-import-not-at-top

  photos = validate.validation_photos(["ihc", "camera"])
  big, small = validate.rescaled(photos, 2.0), validate.rescaled(photos, 0.5)
  for (name, p), (_, b), (_, s) in zip(photos, big, small):
    h, w = p.shape[:2]
    assert b.shape == (2 * h, 2 * w, 3) and s.shape == (round(h / 2), round(w / 2), 3) and b.dtype == np.uint8
    rough = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert rough(b) < rough(p) < rough(s), name
  assert validate.rescaled(photos, 1.0)[0][1] is photos[0][1]
  with pytest.raises(SystemExit, match="--rescale"):
    validate.rescaled(photos, 0.0)
  assert validate.photos_tag(["grace_hopper"]) == "" and validate.photos_tag(["grace_hopper"], 2.0) == "_x2"
  assert validate.photos_tag(["ihc", "retina"], 0.5) == "_ihc+retina_x0.5"


def test_sharpness_energy_falls_with_blur_and_rises_with_sharpening():
  """sharpness.py's Laplacian energy: what tells over-sharpening (ratio > 1) from blur (< 1)."""
  from scipy import ndimage

  sys.path.insert(0, str(ROOT / "studies" / "pretrained" / "scale"))
  import sharpness  # pylint: disable=g-import-not-at-top

  img = skimage.data.astronaut()[:128, :128]
  x = img.astype(np.float64) / 255.0
  soft = ndimage.gaussian_filter(x, (1.5, 1.5, 0))
  sharpened = np.clip(x + 1.5 * (x - soft), 0, 1)
  e = sharpness.laplacian_energy
  assert e(soft) < e(x) < e(sharpened)
  assert e(img) == pytest.approx(e(x))  # uint8 is read as [0, 255]


def test_gain_by_input_bins_crops_by_their_input_psnr():
  sys.path.insert(0, str(ROOT / "studies" / "pretrained"))
  import gain_by_input  # pylint: disable=g-import-not-at-top

  assert gain_by_input._bins([12.0, 24.99, 25.0, 29.9, 30.0, 34.99, 35.0, 41.0]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
  assert [gain_by_input._label(b) for b in range(4)] == ["< 25 dB", "25-30 dB", "30-35 dB", ">= 35 dB"]
