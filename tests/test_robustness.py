"""The robustness report: one row per checkpoint x test set, in markdown, CSV and a plot."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from bdirnet_jax import robustness
from tests import fakes


def _numpy_scores(workdir, data_dir, family):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  record = tfds.data_source(f"synthetic_blur/{family}", split="test", data_dir=data_dir)[0]  # max_images=1: the first
  return fakes.reference_psnrs(workdir, [record])[0]


@pytest.fixture(scope="module")
def report(trained_workdir, tmp_path_factory):
  """robustness.run on two copies of the tiny workdir, 1 image of 2 synthetic families: (rows, workdirs, paths)."""
  pytest.importorskip("tensorflow", reason="building synthetic_blur needs tensorflow (CI installs it)")
  tmp_path = tmp_path_factory.mktemp("robustness")
  second = tmp_path / "second_run"
  shutil.copytree(trained_workdir, second)
  out, data_dir = tmp_path / "report", str(tmp_path / "tfds")
  rows = robustness.run(
    [str(trained_workdir), str(second)],
    str(out),
    data_dir=data_dir,
    families=("gaussian", "defocus"),
    real=(("gopro", "blur"),),
    max_images=1,
  )
  return rows, (trained_workdir, second), out, data_dir


def test_report_covers_every_checkpoint_and_test_set(report):
  rows, (trained_workdir, second), out, data_dir = report
  assert [(r["checkpoint"], r["test_set"]) for r in rows] == [
    (str(w), t) for w in (trained_workdir, second) for t in ("synthetic_blur-gaussian", "synthetic_blur-defocus")
  ]
  with open(out / "robustness.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 4 and all(r["num_images"] == "1" for r in table)
  for row in table:
    psnr, input_psnr = _numpy_scores(row["checkpoint"], data_dir, row["test_set"].split("-")[1])
    assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-3) and float(row["input_psnr"]) == pytest.approx(
      input_psnr, abs=1e-3
    )
    assert 0 < float(row["input_ssim"]) <= 1
  # The CSV holds exactly what evaluate wrote into the checkpoint's own eval folder.
  saved = json.loads((second / "eval" / "synthetic_blur-defocus_test.json").read_text())
  assert float(table[3]["psnr"]) == pytest.approx(saved["psnr"])
  assert float(table[3]["input_psnr"]) == pytest.approx(saved["input_psnr"])
  text = (out / "robustness.md").read_text()
  assert "| synthetic_blur-gaussian | synthetic_blur-defocus |" in text
  assert "skipped: gopro-blur" in text  # not prepared in this data_dir
  assert f"(input {saved['input_psnr']:.2f} / {saved['input_ssim']:.3f})" in text and "`rgb_uint8_gauss11`:" in text
  assert (out / "robustness_psnr.png").stat().st_size > 1000


def test_command_line_writes_the_report_of_a_direct_call(report, tmp_path):
  """python -m bdirnet_jax.robustness on the direct call's data_dir (families already built): exit 0, the three
  files, and the same numbers as the direct call."""
  rows, (trained_workdir, _), _, data_dir = report
  out = tmp_path / "cli_report"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "bdirnet_jax.robustness",
      f"--workdirs={trained_workdir}",
      f"--output={out}",
      f"--data_dir={data_dir}",
      "--families=gaussian,defocus",
      "--max_images=1",
    ],
    cwd=fakes.REPO,
    env=fakes.subprocess_env(4, os.environ.get("JAX_COMPILATION_CACHE_DIR")),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (out / "robustness.md").is_file() and (out / "robustness_psnr.png").stat().st_size > 1000
  with open(out / "robustness.csv") as f:
    table = list(csv.DictReader(f))
  direct = [r for r in rows if r["checkpoint"] == str(trained_workdir)]
  assert [r["test_set"] for r in table] == [r["test_set"] for r in direct]
  for cli_row, row in zip(table, direct):
    for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
      assert float(cli_row[key]) == pytest.approx(row[key], abs=1e-4), key


def test_unknown_family_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="unknown blur families \\['motion'\\]"):
    robustness.run([str(tmp_path)], str(tmp_path / "out"), families=("motion",))


def test_library_does_not_import_experiment_configs():
  import ast  # pylint: disable=g-import-not-at-top

  tree = ast.parse(open(robustness.__file__).read())
  modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
  modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
  assert not [m for m in modules if m.split(".")[0] == "configs"]
