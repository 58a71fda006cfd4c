"""The study: bootstrap, classical baselines, fixed test sets, and the smoke study end to end (rows, means, intervals,
resume without retraining)."""

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from bdirnet_jax import blur
from bdirnet_jax import classical
from bdirnet_jax.study import plan
from bdirnet_jax.study import records
from bdirnet_jax.study import report
from bdirnet_jax.study import runner
from bdirnet_jax.study import scoring
from bdirnet_jax.study import testsets

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "studies" / "smoke.py"


def read_csv(path) -> list[dict]:
  """Rows back from the study's report.csv (seed and step as int, scores as float, blanks as None)."""
  rows = []
  with open(path, newline="") as f:
    for r in csv.DictReader(f):
      for k in ("seed", "step"):
        r[k] = int(r[k]) if r[k] != "" else None
      r["train_blur"] = r["train_blur"] or None
      r["psnr"], r["ssim"] = float(r["psnr"]), float(r["ssim"])
      rows.append(r)
  return rows


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def test_bootstrap_is_seeded_and_brackets_the_mean():
  rng = np.random.default_rng(0)
  d = 0.3 + rng.normal(size=(3, 40))
  a = report.bootstrap_mean_ci(d, samples=2000, seed=7)
  assert a == report.bootstrap_mean_ci(d, samples=2000, seed=7)
  mean, lo, hi = a
  assert mean == pytest.approx(d.mean()) and lo < mean < hi
  # Roughly the normal-theory interval of a mean of 120 unit-variance values (no seed effect here).
  assert 0.5 * 2 * 1.96 / np.sqrt(120) < hi - lo < 2.0 * 2 * 1.96 / np.sqrt(120)


def test_bootstrap_of_a_constant_is_exact():
  assert report.bootstrap_mean_ci(np.full((2, 5), 0.25), samples=500, seed=0) == (0.25, 0.25, 0.25)


def test_bootstrap_resamples_seeds_too():
  """A seed effect much larger than the image noise must widen the interval: two seeds at +1 and -0.6 cannot
  establish a sign, however many images there are (a pairs bootstrap would call this 'better')."""
  rng = np.random.default_rng(1)
  d = np.array([[1.0], [-0.6]]) + 0.01 * rng.normal(size=(2, 200))
  mean, lo, hi = report.bootstrap_mean_ci(d, samples=2000, seed=0)
  assert lo < -0.5 and hi > 0.9 and lo < mean < hi
  assert report.verdict(lo, hi) == report.UNDECIDED
  assert report.verdict(0.1, 0.3) == "better" and report.verdict(-0.3, -0.1) == "worse"


def _rows(config, train_blur, seed, test_set, psnrs):
  return [
    dict(
      config=config, train_blur=train_blur, seed=seed, test_set=test_set, image_id=f"im{i}", psnr=p, ssim=0.5, step=10
    )
    for i, p in enumerate(psnrs)
  ]


def test_plot_draws_gains_over_the_input_and_absolute_psnr_without_it():
  rows = (
    _rows("input", "", -1, "a", [30.0, 32.0])
    + _rows("input", "", -1, "b", [20.0, 20.0])
    + _rows("wiener_oracle", "", -1, "a", [33.0, 33.0])
    + _rows("wiener_oracle", "", -1, "b", [19.0, 19.0])
    + _rows("net", "g", 0, "a", [32.0, 34.0])
    + _rows("net", "g", 1, "a", [31.0, 33.0])
    + _rows("net", "g", 0, "b", [21.0, 21.0])
    + _rows("net", "g", 1, "b", [21.0, 21.0])
  )
  relative, bars = report.plot_bars(rows, ["a", "b"])
  assert relative and list(bars) == ["g"]
  series = {name: (means, stds, baseline) for name, means, stds, baseline in bars["g"]}
  assert "input" not in series  # a zero bar in a gain plot
  np.testing.assert_allclose(series["net"][0], [1.5, 1.0])  # seeds' mean 32.5 and 21 minus the input's 31 and 20
  np.testing.assert_allclose(series["net"][1], [np.std([2.0, 1.0], ddof=1), 0.0])  # per-seed gains 2 and 1 on "a"
  np.testing.assert_allclose(series["wiener_oracle"][0], [2.0, -1.0])
  assert series["wiener_oracle"][2] and not series["net"][2]
  relative, bars = report.plot_bars([r for r in rows if r["config"] != "input"], ["a", "b"])
  assert not relative
  np.testing.assert_allclose(dict((n, m) for n, m, _, _ in bars["g"])["net"], [32.5, 21.0])


def test_in_distribution_rule():
  assert report.in_distribution("gaussian", "gaussian")
  assert not report.in_distribution("gaussian", "linear")
  assert all(report.in_distribution("mixed", f) for f in blur.FAMILIES)
  assert not report.in_distribution("mixed", "gopro-blur")


# ---------------------------------------------------------------------------------------------------------------
# Baselines


@pytest.mark.parametrize("family", ["gaussian", "linear"])
def test_oracles_beat_the_input_on_a_noiseless_blur(family):
  sharp = skimage.data.chelsea()[100:164, 200:264]
  kernel = blur.sample_kernel(np.random.default_rng(3), family, 15)
  blurry = np.round(blur.blur_image(sharp / 255.0, kernel) * 255.0).astype(np.uint8)
  scores = {m: classical.score(m, blurry, sharp, kernel, noise_sigma=0.0) for m in classical.BASELINES}
  for method in classical.NEEDS_KERNEL:
    assert scores[method][0] > scores["input"][0] + 1.0, (method, scores)
    assert scores[method][1] > scores["input"][1], (method, scores)


@pytest.mark.parametrize("family", ["gaussian", "linear", "defocus"])
def test_wiener_oracles_beat_the_input_at_the_study_noise(family):
  """At sigma 0.01 (the default training noise) the balance rule holds up on every family, defocus included,
  whose spectral zeros make the noiseless rule (quantisation noise only) under-regularise."""
  sharp = skimage.data.chelsea()[100:164, 200:264]
  rng = np.random.default_rng(3)
  kernel = blur.sample_kernel(rng, family, 15)
  y = blur.add_noise(rng, blur.blur_image(sharp / 255.0, kernel), gaussian_sigma=0.01)
  blurry = np.round(y * 255.0).astype(np.uint8)
  scores = {m: classical.score(m, blurry, sharp, kernel, noise_sigma=0.01) for m in classical.BASELINES}
  for method in ("wiener_oracle", "unsupervised_wiener"):
    assert scores[method][0] > scores["input"][0], (method, scores)


def test_baseline_outputs_are_clipped_images_and_input_is_identity():
  sharp = skimage.data.chelsea()[:48, :48]
  kernel = blur.gaussian_kernel(1.5, 9)
  blurry = np.round(blur.blur_image(sharp / 255.0, kernel) * 255.0).astype(np.uint8)
  np.testing.assert_array_equal(np.round(classical.restore("input", blurry, None, noise_sigma=0.01) * 255), blurry)
  for method in classical.NEEDS_KERNEL:
    out = classical.restore(method, blurry, kernel, noise_sigma=0.01)
    assert out.shape == sharp.shape and out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError, match="true kernel"):
      classical.restore(method, blurry, None, noise_sigma=0.01)


def test_wiener_balance_matches_its_measured_ingredients():
  """The balance (noise variance + uint8 rounding variance) / (2 x gradient variance) against the two variances
  measured here: rounding error of uniform values, and the geometric mean over the six synthetic_blur train photos
  of their mean squared forward difference (measured 3.03e-3 at full resolution)."""
  import skimage.io  # pylint: disable=g-import-not-at-top

  from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as sb  # pylint: disable=g-import-not-at-top

  values = np.random.default_rng(0).uniform(0, 1, 10**6)
  rounding = np.var(np.round(values * 255) / 255 - values)
  paths = dict(sb.packaged_photo_paths())
  grads = []
  for image_id in sb.assign_splits(sorted(paths), 0.25)["train"]:
    x = skimage.io.imread(str(paths[image_id]))[..., :3].astype(np.float64) / 255
    grads.append((np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=0) ** 2)) / 2)
  gradient = np.exp(np.mean(np.log(grads)))
  for sigma in (0.0, 0.01, 0.05):
    assert classical.wiener_balance(sigma) == pytest.approx((sigma**2 + rounding) / (2 * gradient), rel=0.02)


# ---------------------------------------------------------------------------------------------------------------
# Test sets


def test_synthetic_sets_are_fixed_held_out_and_keep_their_kernels():
  from tfds_builders.synthetic_blur import synthetic_blur_dataset_builder as sb

  photos = testsets.test_photos()
  assert [i for i, _ in photos] == sb.assign_splits(sorted(i for i, _ in sb.packaged_photo_paths()), 0.25)["test"]
  kwargs = dict(variants=2, max_side=40, kernel_size=9, noise_sigma=0.01, photos=photos)
  a = testsets.synthetic_sets(("gaussian", "linear"), **kwargs)
  b = testsets.synthetic_sets(("gaussian", "linear"), **kwargs)
  assert [s.fingerprint for s in a] == [s.fingerprint for s in b]
  assert a[0].fingerprint != a[1].fingerprint
  assert len(a[0]) == 2 * len(photos) and a[0].image_ids == a[1].image_ids
  for ts in a:
    assert all(k.shape == (9, 9) and abs(float(k.sum()) - 1) < 1e-5 for k in ts.kernels)
    assert all(x.shape == (40, 40, 3) and x.dtype == np.uint8 for x in ts.blurry)
  # The families see the same crops, blurred differently.
  assert all(np.array_equal(x, y) for x, y in zip(a[0].sharp, a[1].sharp))
  assert not np.array_equal(a[0].blurry[0], a[1].blurry[0])
  with pytest.raises(ValueError, match="test blur families"):
    testsets.synthetic_sets(("mixed",), **kwargs)
  # Trajectory exposures change the trajectory kernels only; the default (None) is blur's own list.
  default = testsets.synthetic_sets(("trajectory", "gaussian"), **kwargs)
  same = testsets.synthetic_sets(("trajectory", "gaussian"), trajectory_exposures=blur.TRAJECTORY_EXPOSURES, **kwargs)
  long = testsets.synthetic_sets(("trajectory", "gaussian"), trajectory_exposures=(1.0,), **kwargs)
  assert [s.fingerprint for s in same] == [s.fingerprint for s in default]
  assert long[0].fingerprint != default[0].fingerprint and long[1].fingerprint == default[1].fingerprint


def test_real_sets_are_centre_cropped_capped_and_get_only_the_input_baseline(monkeypatch, tmp_path):
  import ml_collections

  from bdirnet_jax import input_pipeline
  from bdirnet_jax import robustness

  photo = skimage.data.chelsea()[:50, :70]
  examples = [dict(blurry=photo, sharp=photo, image_id=f"img{i}") for i in range(3)]
  ds = ml_collections.ConfigDict(dict(name="gopro", config="blur", label="gopro-blur"))
  monkeypatch.setattr(robustness, "test_sets", lambda data_dir, families, real: ([ds], ["hide"]))
  monkeypatch.setattr(input_pipeline, "create_eval_iterator", lambda cfg, **kw: iter(examples))
  sets, skipped = testsets.real_sets("D", max_side=32, max_images=2)
  assert skipped == ["hide"] and [s.label for s in sets] == ["gopro-blur"]
  (ts,) = sets
  assert ts.image_ids == ["img0", "img1"] and ts.kernels is None
  np.testing.assert_array_equal(ts.sharp[0], photo[9:41, 19:51])
  scores = scoring.baseline_scores(sets, tmp_path)[f"gopro-blur:{ts.fingerprint}"]
  assert list(scores) == ["input"] and scores["input"][0][0] == float("inf")  # blurry == sharp here


def test_config_drift_of_a_finished_run_is_reported(tmp_path):
  from bdirnet_jax import checkpoint
  from configs.studies import smoke

  cfg = smoke.get_config()
  config = plan.training_config(cfg, "bdirnet", "gaussian", 0, str(tmp_path / "tfds"))
  checkpoint.save_config(str(tmp_path), config)
  assert records.config_drift(tmp_path, plan.training_config(cfg, "bdirnet", "gaussian", 0, "elsewhere")) == []
  cfg.overrides.optim.learning_rate = 1e-3
  assert records.config_drift(tmp_path, plan.training_config(cfg, "bdirnet", "gaussian", 0, "x")) == [
    "optim.learning_rate"
  ]


def test_study_config_errors_come_before_any_work(tmp_path):
  from configs.studies import smoke

  cfg = smoke.get_config()
  cfg.overrides.dataset.crop_sise = 32
  with pytest.raises(ValueError, match="crop_sise"):
    runner.run(cfg, str(tmp_path))
  cfg = smoke.get_config()
  cfg.test_blurs = ("gaussian", "motion")
  with pytest.raises(ValueError, match="motion"):
    runner.run(cfg, str(tmp_path))
  assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu", "full"])
def test_shipped_study_configs_resolve_and_validate(name, tmp_path):
  import importlib

  from bdirnet_jax import config_validation

  cfg = importlib.import_module(f"configs.studies.{name}").get_config()
  plan.validate_study(cfg)
  assert cfg.expected_wall_time
  for config_name in cfg.configs:
    for tb in cfg.train_blurs:
      config = plan.training_config(cfg, config_name, tb, cfg.seeds[-1], str(tmp_path))
      config_validation.validate(config)
      assert config.dataset.on_the_fly_blur and config.dataset.blur_family == tb
      assert config.num_train_steps == cfg.num_train_steps and config.seed == cfg.seeds[-1]
  if name == "cpu":
    assert len(cfg.seeds) >= 3 and "mixed" in cfg.train_blurs and len(cfg.train_blurs) >= 2
    assert set(cfg.configs) == {"bdirnet", "no_latent", "no_said", "no_sair", "unet_baseline"}
    assert set(cfg.test_blurs) == set(blur.FAMILIES)


# ---------------------------------------------------------------------------------------------------------------
# The smoke study, end to end


def _cli_env():
  env = dict(os.environ)
  # The CLI as a user runs it: one CPU device (tests otherwise see 4 fake ones).
  env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
  env["JAX_LOG_COMPILES"] = "1"  # every lowering is logged ("Compiling jit(NAME) ..."), persistent-cache hit or not
  return env


def _run_cli(out: Path) -> tuple[float, str]:
  t0 = time.time()
  proc = subprocess.run(
    [sys.executable, "-m", "bdirnet_jax.study", f"--study={SMOKE}", f"--output={out}"],
    cwd=ROOT,
    env=_cli_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return time.time() - t0, proc.stderr


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
  pytest.importorskip("tensorflow", reason="building synthetic_blur needs tensorflow (CI installs it)")
  out = tmp_path_factory.mktemp("study") / "smoke"
  seconds, log = _run_cli(out)
  print(f"smoke study: {seconds:.1f}s")
  return out, log


def _table(text: str, heading: str) -> dict[tuple[str, str], dict[str, str]]:
  """{(config, train blur): {column: cell}} of the table under `heading`."""
  lines = text[text.index(heading) :].splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("| config | train blur |"))
  header = [c.strip() for c in lines[start].strip("|").split("|")]
  out = {}
  for line in lines[start + 2 :]:
    if not line.startswith("|"):
      break
    cells = [c.strip() for c in line.strip("|").split("|")]
    out[(cells[0], cells[1])] = dict(zip(header, cells))
  return out


@pytest.mark.slow
def test_smoke_study_report(smoke_study):
  out, log = smoke_study
  rows = read_csv(out / "report.csv")
  sets = ("gaussian", "linear")
  runs = {(r["config"], r["train_blur"], r["seed"]) for r in rows if r["seed"] is not None}
  assert runs == {(c, "gaussian", s) for c in ("bdirnet", "unet_baseline") for s in (0, 1)}
  images = {r["image_id"] for r in rows}
  assert len(images) == 4  # 2 test photos x 2 variants
  assert len(rows) == len(runs) * len(sets) * len(images) + len(classical.BASELINES) * len(sets) * len(images)
  assert {r["config"] for r in rows} == {"bdirnet", "unet_baseline", *classical.BASELINES}
  assert all(r["step"] == 6 for r in rows if r["seed"] is not None)
  assert log.count("study: training") == 4 and "resuming" not in log

  text = (out / "report.md").read_text()
  for heading, metric, digits in (("## PSNR", "psnr", 3), ("## SSIM", "ssim", 4)):
    table = _table(text, heading)
    for (config, tb), cells in table.items():
      for label in sets:
        sel = [
          r[metric] for r in rows if r["config"] == config and r["test_set"] == label and (r["train_blur"] or "–") == tb
        ]
        shown = float(cells[label].split("±")[0])
        assert shown == pytest.approx(np.mean(sel), abs=0.6 * 10**-digits), (config, label, metric)
      if config in classical.BASELINES:
        continue
      ind = [r[metric] for r in rows if r["config"] == config and r["test_set"] == "gaussian"]
      ood = [r[metric] for r in rows if r["config"] == config and r["test_set"] == "linear"]
      assert float(cells["in-dist"].split("±")[0]) == pytest.approx(np.mean(ind), abs=0.6 * 10**-digits)
      assert float(cells["out-of-dist"].split("±")[0]) == pytest.approx(np.mean(ood), abs=0.6 * 10**-digits)

  comparisons = re.findall(
    r"^\| (\S+) \| (\S+) \| gaussian \| (\S+) \| (PSNR|SSIM) \| ([-+][\d.]+) \| "
    r"\[([-+][\d.]+), ([-+][\d.]+)\] \| 2 x 4 \| ([a-z ]+) \|$",
    text,
    re.M,
  )
  assert len(comparisons) == 4  # bdirnet vs unet_baseline x {in, out of distribution} x {PSNR, SSIM}
  for variant, reference, scope, metric, mean, lo, hi, verdict in comparisons:
    assert (variant, reference) == ("bdirnet", "unet_baseline")
    assert float(lo) <= float(mean) <= float(hi)
    assert verdict == report.verdict(float(lo), float(hi))
    # The paired mean difference is the difference of the two configs' means over the same rows.
    test_set = "gaussian" if scope == "in-distribution" else "linear"
    by = {
      c: np.mean([r[metric.lower()] for r in rows if r["config"] == c and r["test_set"] == test_set])
      for c in (variant, reference)
    }
    assert float(mean) == pytest.approx(by[variant] - by[reference], abs=0.6 * 10 ** -(3 if metric == "PSNR" else 4))
  assert text.count("not distinguishable at this budget") + text.count(" is better (") + text.count(" is worse (") >= 4
  assert "| bdirnet | gaussian | 0 | 6 |" in text  # the per-run "learned?" table
  assert "Warning" not in text  # no run was trained under another config
  assert (out / "report_psnr.png").stat().st_size > 5000


@pytest.mark.slow
def test_runs_of_one_config_share_its_compiled_programs(smoke_study):
  _, log = smoke_study
  # Two configs x two seeds: each config's train step and deblur are lowered once, for its first seed.
  assert len(re.findall(r"Compiling jit\(train_step\)", log)) == 2, re.findall(r"Compiling \S+", log)
  assert log.count("Reusing the compiled programs of an earlier run") == 2
  for config in ("bdirnet", "unet_baseline"):
    for seed in (0, 1):
      name = f"{config}-gaussian-seed{seed}"
      assert re.search(rf"study: trained {name}: setup [\d.]+s, compile \(first step\) [\d.]+s, train [\d.]+s", log)
      assert re.search(rf"study: {name} score [\d.]+s", log)


def _forbid_training_and_restoring(monkeypatch, message):
  """Training, model loading and the baselines' restore raise `message` if called."""
  from bdirnet_jax import inference
  from bdirnet_jax import train

  def refuse(*args, **kwargs):
    raise AssertionError(message)

  monkeypatch.setattr(train, "train_and_evaluate", refuse)
  monkeypatch.setattr(inference, "load", refuse)
  monkeypatch.setattr(classical, "restore", refuse)


@pytest.mark.slow
def test_second_invocation_trains_and_scores_nothing(smoke_study, monkeypatch):
  from configs.studies import smoke

  out, _ = smoke_study
  checkpoints = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoints/**/*") if p.is_file()}
  assert {p.relative_to(out / "runs").parts[0] for p in checkpoints} == {
    f"{c}-gaussian-seed{s}" for c in ("bdirnet", "unet_baseline") for s in (0, 1)
  }
  before = {name: (out / name).read_bytes() for name in ("report.md", "report.csv")}

  _forbid_training_and_restoring(monkeypatch, "a finished study must not train or restore anything")
  runner.run(smoke.get_config(), str(out))
  assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
  assert {name: (out / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_unfinished_run_resumes_from_its_checkpoint(smoke_study):
  import shutil

  out, _ = smoke_study
  run = out / "runs" / "unet_baseline-gaussian-seed1"
  shutil.rmtree(run / "checkpoints" / "6")  # as if killed between the checkpoints at steps 3 and 6
  before = (out / "report.md").read_bytes()
  _, log = _run_cli(out)
  assert log.count("study: training") == 1
  assert "study: training unet_baseline-gaussian-seed1 (resuming from step 3)" in log
  assert (run / "checkpoints" / "6").is_dir()
  assert (out / "report.md").read_bytes() == before


@pytest.mark.slow
def test_committed_study_without_checkpoints_resumes_and_reports_alike(smoke_study, monkeypatch, tmp_path):
  """What a study commits (per run: config.json and study_scores.json; baseline_scores.json) is enough for a later
  sitting on another machine: finished runs are neither retrained nor rescored, and the report is the same."""
  import shutil

  from configs.studies import smoke

  out, _ = smoke_study
  kept = tmp_path / "committed"
  for path in out.glob("runs/*/*.json"):
    (kept / path.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, kept / path.relative_to(out))
  shutil.copy(out / "baseline_scores.json", kept / "baseline_scores.json")

  _forbid_training_and_restoring(monkeypatch, "a committed finished run must not be trained or restored")
  runner.run(smoke.get_config(), str(kept))
  assert (kept / "report.csv").read_bytes() == (out / "report.csv").read_bytes()
  # An interim report: a run not done yet is listed, nothing is trained.
  shutil.rmtree(kept / "runs" / "unet_baseline-gaussian-seed1")
  rows = runner.run(smoke.get_config(), str(kept), report_only=True)
  assert not any(r["config"] == "unet_baseline" and r["seed"] == 1 for r in rows)
  assert (
    "not finished yet and are not in any number below: unet_baseline-gaussian-seed1" in (kept / "report.md").read_text()
  )


def test_training_configs_are_loaded_by_path_and_a_missing_one_is_named(tmp_path):
  """The library does not import the experiment configs package; `study.config_dir` says where they are."""

  (tmp_path / "mine.py").write_text(
    "from configs import tiny\n\ndef get_config():\n  c = tiny.get_config()\n  c.batch_size = 3\n  return c\n"
  )
  assert plan.load_training_config("mine", str(tmp_path)).batch_size == 3
  assert plan.load_training_config("bdirnet").model.preset == "small"
  with pytest.raises(ValueError, match=r"no training config file .*nothere\.py"):
    plan.load_training_config("nothere", str(tmp_path))


def test_study_argument_is_resolved_beside_the_configs_package(tmp_path, monkeypatch):
  """From a directory without configs/, --study=configs/... names the shipped file (both flag forms, a
  get_config argument kept); a path that exists where the command runs wins; a missing one is left for the error."""
  from bdirnet_jax.study import cli

  monkeypatch.chdir(tmp_path)
  shipped = str(SMOKE)
  assert cli.resolve_study_argument(["x", "--study=configs/studies/smoke.py:a", "--output=o"]) == [
    "x",
    f"--study={shipped}:a",
    "--output=o",
  ]
  assert cli.resolve_study_argument(["x", "--study", "configs/studies/smoke.py"]) == ["x", "--study", shipped]
  (tmp_path / "configs" / "studies").mkdir(parents=True)
  (tmp_path / "configs" / "studies" / "smoke.py").write_text("")
  assert cli.resolve_study_argument(["x", "--study=configs/studies/smoke.py"]) == [
    "x",
    "--study=configs/studies/smoke.py",
  ]
  assert plan.resolve_path("configs/studies/nothere.py") == "configs/studies/nothere.py"
  assert str(tmp_path) in plan.where_looked("configs/studies/nothere.py")


_RESOLVE_IN_ANOTHER_DIRECTORY = """
import json
from absl import flags
import bdirnet_jax
import configs
from bdirnet_jax.study import cli
from bdirnet_jax.study import plan

cli.define_flags()
flags.FLAGS(cli.resolve_study_argument(["study", "--study=configs/studies/smoke.py", "--output=out"]))
study = flags.FLAGS.study
runs = {plan.run_name(*r): plan.training_config(study, *r, "tfds").to_dict() for r in plan.runs(study)}
print(json.dumps(dict(
  files=[bdirnet_jax.__file__, configs.__file__, flags.FLAGS["study"].config_filename],
  study=study.to_dict(),
  runs=runs,
), default=str))
"""


def test_installed_copy_runs_the_shipped_configs_from_another_directory(tmp_path):
  """`pip install .` ships configs/ and configs/studies/; run elsewhere with only the installed copy importable,
  the study finds --study=configs/studies/smoke.py and every run's training config there, and they are the
  repository's configs."""
  import json
  import shutil

  from configs.studies import smoke

  src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
  for name in ("bdirnet_jax", "configs", "tfds_builders"):
    shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "dummy_data"))
  for name in ("pyproject.toml", "requirements.txt", "README.md"):
    shutil.copy(ROOT / name, src / name)
  site = tmp_path / "site"
  subprocess.run(
    [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile"]
    + ["--target", str(site), str(src)],
    check=True,
    capture_output=True,
    timeout=300,
  )
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in _cli_env().items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)
  proc = subprocess.run(
    [sys.executable, "-c", _RESOLVE_IN_ANOTHER_DIRECTORY],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.splitlines()[-1])
  assert all(Path(f).resolve().is_relative_to(site.resolve()) for f in got["files"]), got["files"]
  assert got["files"][2].endswith("configs/studies/smoke.py")
  expected = smoke.get_config()
  assert got["study"]["configs"] == list(expected.configs) and got["study"]["name"] == expected.name
  assert sorted(got["runs"]) == sorted(plan.run_name(*r) for r in plan.runs(expected))
  for r in plan.runs(expected):
    here = json.loads(json.dumps(plan.training_config(expected, *r, "tfds").to_dict(), default=str))
    assert got["runs"][plan.run_name(*r)] == here
