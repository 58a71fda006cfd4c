"""The robustness report: one row per checkpoint x test set, in markdown, CSV and a plot."""

import csv
import json
import shutil

import pytest

from bdirnet_jax import robustness


def test_report_covers_every_checkpoint_and_test_set(trained_workdir, tmp_path):
  pytest.importorskip("tensorflow", reason="building synthetic_blur needs tensorflow (CI installs it)")
  second = tmp_path / "second_run"
  shutil.copytree(trained_workdir, second)
  out = tmp_path / "report"
  rows = robustness.run(
    [str(trained_workdir), str(second)],
    str(out),
    data_dir=str(tmp_path / "tfds"),
    families=("gaussian", "defocus"),
    real=(("gopro", "blur"),),
    max_images=1,
  )
  assert [(r["checkpoint"], r["test_set"]) for r in rows] == [
    (str(w), t) for w in (trained_workdir, second) for t in ("synthetic_blur-gaussian", "synthetic_blur-defocus")
  ]
  with open(out / "robustness.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 4 and all(float(r["psnr"]) > 10 and r["num_images"] == "1" for r in table)
  assert all(float(r["input_psnr"]) > 10 and 0 < float(r["input_ssim"]) <= 1 for r in table)
  # The CSV holds exactly what evaluate wrote into the checkpoint's own eval folder.
  saved = json.loads((second / "eval" / "synthetic_blur-defocus_test.json").read_text())
  assert float(table[3]["psnr"]) == pytest.approx(saved["psnr"])
  assert float(table[3]["input_psnr"]) == pytest.approx(saved["input_psnr"])
  text = (out / "robustness.md").read_text()
  assert "| synthetic_blur-gaussian | synthetic_blur-defocus |" in text
  assert "skipped: gopro-blur" in text  # not prepared in this data_dir
  assert f"(input {saved['input_psnr']:.2f} / {saved['input_ssim']:.3f})" in text and "`rgb_uint8_gauss11`:" in text
  assert (out / "robustness_psnr.png").stat().st_size > 1000


def test_unknown_family_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="unknown blur families \\['motion'\\]"):
    robustness.run([str(tmp_path)], str(tmp_path / "out"), families=("motion",))


def test_library_does_not_import_experiment_configs():
  import ast  # pylint: disable=g-import-not-at-top

  tree = ast.parse(open(robustness.__file__).read())
  modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
  modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
  assert not [m for m in modules if m.split(".")[0] == "configs"]
