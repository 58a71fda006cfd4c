"""A whole reproducibility study in one command: configs x training blur families x seeds, fixed test sets,
classical baselines, paired bootstrap intervals and a report.

  python -m bdirnet_jax.study --study=configs/studies/NAME.py --output=DIR [--data_dir=D] [--study.FIELD=VALUE]

* Runs: `DIR/runs/<config>-<train_blur>-seed<k>`, ordinary workdirs trained by `train.train_and_evaluate` from
  `<study.config_dir>/<config>.py` (default `configs/`; `bdirnet` = `default.py`), loaded by path, with the
  study's `overrides`, `num_train_steps`, `seed = k`, `dataset.on_the_fly_blur = True`,
  `dataset.blur_family = <train_blur>` and no `eval_datasets` (the study scores the runs itself). Training photos
  come from `synthetic_blur` (built on first use in `--data_dir`, default `DIR/tfds`). With `study.stack_runs=N`
  (> 1), up to N unstarted runs of one config train together in one vmapped program (`stacked_train`, folders in
  `DIR/stacked`) and end as the same workdirs.
* Resume: a run whose latest checkpoint step reaches `num_train_steps` is not touched again (not even restored for
  training); an unfinished one resumes from its checkpoints. Scores are cached per run in
  `<run>/study_scores.json` and for the baselines in `DIR/baseline_scores.json`, keyed by test-set label and
  fingerprint and (for runs) the checkpoint step, so a second invocation trains and scores nothing and rewrites
  the same report.
* Test sets (`study_testsets`): every requested synthetic family at fixed seeded kernels, plus every real dataset
  prepared in `--data_dir`.
* Baselines (`classical`), statistics and report (`study_report`): `DIR/report.md`, `DIR/report.csv`,
  `DIR/report_psnr.png`.
* Compilation: runs of one config in one process share its jitted train step and deblur (`train.programs`), so
  only its first run compiles; unless a JAX compilation cache is configured already, the command also uses
  `DIR/jax_cache`, so a resumed study compiles nothing it compiled before. The log gives each run's setup,
  compile (first step), train and score seconds.

Single-process (one host, any number of local devices).
"""

import functools
import importlib
import importlib.util
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from etils import epath
from flax import traverse_util
from ml_collections import config_flags
from tqdm import tqdm

from bdirnet_jax import atomic_io
from bdirnet_jax import blur
from bdirnet_jax import classical
from bdirnet_jax import command_line
from bdirnet_jax import study_report
from bdirnet_jax import study_testsets

RUNS_DIR = "runs"
RUN_SCORES = "study_scores.json"
BASELINE_SCORES = "baseline_scores.json"
CONFIG_ALIASES = {"bdirnet": "default"}
DEFAULT_CONFIG_DIR = "configs"  # where `study.configs` names live, unless `study.config_dir` says otherwise


# ---------------------------------------------------------------------------------------------------------------
# Configs


def run_name(config_name: str, train_blur: str, seed: int) -> str:
  return f"{config_name}-{train_blur}-seed{seed}"


def _apply_overrides(config: ml_collections.ConfigDict, overrides, prefix: str = "") -> None:
  for key, value in overrides.items():
    if key not in config:
      raise ValueError(f"study override {prefix}{key}: the training config has no such field")
    if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(config[key], ml_collections.ConfigDict):
      _apply_overrides(config[key], value, f"{prefix}{key}.")
    else:
      config[key] = value


def load_training_config(config_name: str, config_dir: str = DEFAULT_CONFIG_DIR) -> ml_collections.ConfigDict:
  """`get_config()` of the file `<config_dir>/<name>.py` (`bdirnet` names `default.py`).

  Loaded by path, so the library does not import the experiment configs as a package; the study names them.
  """
  module = CONFIG_ALIASES.get(config_name, config_name)
  path = os.path.join(config_dir, f"{module}.py")
  if not os.path.isfile(path):
    raise ValueError(
      f"study config {config_name!r}: no training config file {path} (study.config_dir="
      f"{config_dir!r}, relative to the working directory {os.getcwd()})"
    )
  spec = importlib.util.spec_from_file_location(f"_bdirnet_study_config_{module}", path)
  loaded = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(loaded)
  return loaded.get_config()


def training_config(
  study: ml_collections.ConfigDict, config_name: str, train_blur: str, seed: int, data_dir: str
) -> ml_collections.ConfigDict:
  """The resolved training config of one run."""
  config = load_training_config(config_name, study.get("config_dir", DEFAULT_CONFIG_DIR))
  _apply_overrides(config, study.get("overrides", {}))
  config.seed = int(seed)
  config.num_train_steps = int(study.num_train_steps)
  config.dataset.on_the_fly_blur = True
  config.dataset.blur_family = train_blur
  config.dataset.data_dir = data_dir
  # The study scores every run on its own fixed test sets; the config's periodic/final evaluation would only cost
  # time (and build its datasets outside the study folder).
  config.eval_datasets = []
  return config


def synthetic_test_params(study: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> dict:
  """kernel_size, noise_sigma and trajectory_exposures of the study's synthetic test sets (`study_testsets.
  synthetic_sets` keywords): `study.test`'s value where set, else the run config's (`config`, a resolved one)."""
  test_cfg = study.test
  exposures = test_cfg.get("trajectory_exposures")
  exposures = config.dataset.get("trajectory_exposures") if exposures is None else exposures
  return dict(
    kernel_size=int(test_cfg.get("kernel_size") or config.dataset.kernel_size),
    noise_sigma=float(config.dataset.noise_sigma if test_cfg.get("noise_sigma") is None else test_cfg.noise_sigma),
    trajectory_exposures=(
      None if exposures is None else blur.check_exposures(exposures, "study.test.trajectory_exposures")
    ),
  )


def validate_study(study: ml_collections.ConfigDict) -> None:
  for field in ("configs", "seeds", "train_blurs", "test_blurs", "num_train_steps"):
    if not study.get(field):
      raise ValueError(f"study.{field} is empty or missing")
  blur.check_families(study.train_blurs, "study.train_blurs")
  blur.check_families(study.test_blurs, "study.test_blurs", allow_mixed=False)
  for field in ("configs", "seeds", "train_blurs", "test_blurs"):
    if len(set(study[field])) != len(study[field]):
      raise ValueError(f"study.{field} has duplicates: {list(study[field])}")


class StudyInterrupted(RuntimeError):
  """A run stopped before its last step (SIGTERM): rerun the same command to resume."""


def config_drift(workdir: epath.Path, config: ml_collections.ConfigDict) -> list[str]:
  """Fields whose value in the run's saved config.json differs from the study's resolved config: a finished run
  trained under another recipe is reused, so the report says so. Compared: fields present on both sides whose
  study value is set (a None placeholder is resolved by training, e.g. optim.schedule_steps); dataset.data_dir is
  ignored."""
  from bdirnet_jax import checkpoint  # pylint: disable=g-import-not-at-top

  path = workdir / checkpoint.CONFIG_FILE
  if not path.exists():
    return []
  saved = traverse_util.flatten_dict(json.loads(path.read_text()), sep=".")
  now = traverse_util.flatten_dict(json.loads(config.to_json_best_effort(sort_keys=True)), sep=".")
  return sorted(
    k for k in set(saved) & set(now) if now[k] is not None and saved[k] != now[k] and k != "dataset.data_dir"
  )


# ---------------------------------------------------------------------------------------------------------------
# Caches


def _read_json(path: epath.Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: epath.Path, obj: dict) -> None:
  atomic_io.write_json(path, obj, indent=1, sort_keys=True)


def _set_key(ts: study_testsets.TestSet) -> str:
  return f"{ts.label}:{ts.fingerprint}"


def setup_compilation_cache(output: epath.Path) -> None:
  """DIR/jax_cache as JAX's persistent compilation cache, unless one is configured already."""
  if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_compilation_cache_dir", str(output / "jax_cache"))
  compilation_cache.reset_cache()  # re-initialise even if something was compiled before in this process


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def baseline_scores(test_sets, output: epath.Path) -> dict[str, dict[str, list]]:
  """{set key: {method: [[psnr, ssim] per image]}}, computed once and cached in DIR/baseline_scores.json."""
  path = output / BASELINE_SCORES
  cache = _read_json(path)
  changed = False
  for ts in test_sets:
    key = _set_key(ts)
    methods = [m for m in classical.BASELINES if ts.kernels is not None or m not in classical.NEEDS_KERNEL]
    entry = cache.setdefault(key, {})
    for method in methods:
      if method in entry:
        continue
      t0 = time.time()
      outputs = [
        classical.restore(
          method,
          b,
          None if ts.kernels is None else ts.kernels[i],
          noise_sigma=ts.noise_sigma or 0.0,
          seed=study_testsets.stable_seed(method, ts.label, ts.image_ids[i]),
        )
        for i, b in enumerate(ts.blurry)
      ]
      entry[method] = [list(s) for s in study_testsets.set_scores(outputs, ts)]
      changed = True
      logging.info("study: baseline %s on %s: %.1fs", method, ts.label, time.time() - t0)
  if changed:
    _write_json(path, cache)
  return cache


# Jitted deblur programs by model config and mesh: the runs of one config score with one compiled program (a study
# cycles through its configs, seed-major, so it keeps them all; a study has a handful).
_DEBLUR_PROGRAMS: dict = {}
_MAX_DEBLUR_PROGRAMS = 16


def _jit_deblur(restored, mesh):
  from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top

  model = restored.model
  key = (restored.config.model.to_json_best_effort(sort_keys=True), repr(getattr(model, "dtype", None)), mesh)
  if key not in _DEBLUR_PROGRAMS:
    if len(_DEBLUR_PROGRAMS) >= _MAX_DEBLUR_PROGRAMS:
      _DEBLUR_PROGRAMS.pop(next(iter(_DEBLUR_PROGRAMS)))
    _DEBLUR_PROGRAMS[key] = inference.jit_deblur(model, mesh)
  return _DEBLUR_PROGRAMS[key]


def _deblur_all(restored, images: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
  """float32 [0, 1] deblurred images through `batching.Batcher` (exact sizes, fixed batches of `batch_size`
  rounded up to the device count: one compilation per image size)."""
  from bdirnet_jax import batching  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top

  mesh = sharding_lib.create_mesh((-1, 1), devices=jax.local_devices())
  devices = mesh.shape[sharding_lib.DATA_AXIS]
  outputs: list[np.ndarray | None] = [None] * len(images)

  def collect(indices, out, sizes):
    for k, (i, (h, w)) in enumerate(zip(indices, sizes)):
      outputs[i] = out[k, :h, :w]

  batcher = batching.Batcher(
    functools.partial(_jit_deblur(restored, mesh), restored.params),
    collect,
    multiple=restored.model.downsample_factor,
    batch_multiple=devices,
    batch_size=max(1, batch_size),
    buckets=False,
    fixed_batch=True,
    to_host=True,
    log_name="study",
  )
  for i, img in enumerate(images):
    batcher.add(img, i)
  batcher.finish()
  return outputs


def run_scores(workdir: epath.Path, test_sets, batch_size: int) -> tuple[int, dict[str, list]]:
  """(step, {set key: [[psnr, ssim] per image]}) of a trained run's latest checkpoint (EMA params), cached in
  the run's study_scores.json."""
  path = workdir / RUN_SCORES
  cache = _read_json(path)
  step = latest_step(workdir)
  missing = [ts for ts in test_sets if cache.get(_set_key(ts), {}).get("step") != step]
  if missing:
    from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top
    from bdirnet_jax import train_state  # pylint: disable=g-import-not-at-top

    t0 = time.time()
    restored = inference.load(str(workdir), use_ema=True, step=step)
    params = train_state.params_kind(restored.config)
    for ts in missing:
      outputs = _deblur_all(restored, ts.blurry, batch_size)
      cache[_set_key(ts)] = {
        "step": step,
        "params": params,
        "scores": [list(s) for s in study_testsets.set_scores(outputs, ts)],
      }
    _write_json(path, cache)
    logging.info("study: scored %s on %d test set(s) in %.1fs", workdir.name, len(missing), time.time() - t0)
  return step, {_set_key(ts): cache[_set_key(ts)]["scores"] for ts in test_sets}


def latest_step(workdir: epath.Path) -> int | None:
  """The latest checkpoint step of a workdir (None: none), without restoring anything.

  A run whose checkpoints were removed (a study committed with only config.json and study_scores.json per run,
  so that a later sitting on another machine resumes it) is known by the step of its cached scores.
  """
  from bdirnet_jax import checkpoint  # pylint: disable=g-import-not-at-top

  if (workdir / checkpoint.CHECKPOINT_DIR).exists():
    manager = checkpoint.create_manager(str(workdir))
    try:
      step = manager.latest_step()
    finally:
      manager.close()
    if step is not None:
      return step
  steps = [entry.get("step") for entry in _read_json(workdir / RUN_SCORES).values() if entry.get("step") is not None]
  return max(steps) if steps else None


# ---------------------------------------------------------------------------------------------------------------
# The study


def run(
  study: ml_collections.ConfigDict, output: str, *, data_dir: str | None = None, report_only: bool = False
) -> list[dict]:
  """Trains what is missing, scores what is not cached, writes the report; returns the report's rows.

  `report_only` trains nothing: the report covers the finished runs and lists the others as not run yet (an
  interim report of a study that runs in several sittings).

  The command line also enables the persistent compilation cache (`setup_compilation_cache`); a library caller
  decides that for its own process.
  """
  from bdirnet_jax import config_validation  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import train  # pylint: disable=g-import-not-at-top

  validate_study(study)
  if jax.process_count() > 1:
    raise ValueError(
      "the study runs in one process (its runs are independent: split them over processes by "
      "giving each its own --study.configs/--study.seeds and the same --output)"
    )
  out = epath.Path(output)
  out.mkdir(parents=True, exist_ok=True)
  train_data_dir = data_dir or str(out / "tfds")
  # Seed-major: a study stopped part-way has every (config, train blur) cell of its first seeds, so an interim
  # report already compares configs on equal terms.
  runs = [(c, tb, int(s)) for s in study.seeds for tb in study.train_blurs for c in study.configs]
  configs = {r: training_config(study, *r, train_data_dir) for r in runs}
  for r, config in configs.items():  # every config checked before anything is trained
    try:
      config_validation.validate(config)
    except config_validation.ConfigError as e:
      raise config_validation.ConfigError(f"run {run_name(*r)}: {e}") from None

  test_cfg = study.test
  params = synthetic_test_params(study, next(iter(configs.values())))
  t0 = time.time()
  test_sets = study_testsets.synthetic_sets(
    study.test_blurs, variants=test_cfg.variants, max_side=test_cfg.max_side, **params
  )
  skipped = []
  if data_dir and study.get("real_datasets", True):
    real, skipped = study_testsets.real_sets(
      data_dir, max_side=test_cfg.max_side, max_images=test_cfg.get("max_real_images", 16)
    )
    test_sets += real
  logging.info(
    "study: %d test sets (%s) in %.1fs",
    len(test_sets),
    ", ".join(f"{ts.label}: {len(ts)}" for ts in test_sets),
    time.time() - t0,
  )

  if study.get("stack_runs", 0) > 1 and not report_only:  # up to N runs of one config in one program
    from bdirnet_jax import stacked_train  # pylint: disable=g-import-not-at-top

    try:
      pairs = [(configs[r], out / RUNS_DIR / run_name(*r)) for r in runs]
      stacked_train.train_unfinished(pairs, study.stack_runs, out / "stacked", latest_step)
    except stacked_train.Interrupted as e:
      raise StudyInterrupted(f"{e}; rerun the same command to resume the study") from None
  rows = []
  drifted = {}
  not_run = []
  for r in tqdm(runs, desc="study", unit="run", disable=None):  # drawn on a terminal only
    workdir = out / RUNS_DIR / run_name(*r)
    step = latest_step(workdir)
    if report_only and (step is None or step < study.num_train_steps):
      not_run.append(run_name(*r))
      continue
    if step is not None and step >= study.num_train_steps:
      if step > study.num_train_steps:
        logging.warning(
          "study: %s is at step %d, past the study's %d steps; scored as it is",
          workdir.name,
          step,
          study.num_train_steps,
        )
      logging.info("study: %s finished (step %d); not trained", workdir.name, step)
    else:
      logging.info(
        "study: training %s (%s)", workdir.name, "from scratch" if step is None else f"resuming from step {step}"
      )
      timings = {}
      train.train_and_evaluate(configs[r], str(workdir), timings=timings)
      if (latest_step(workdir) or 0) < study.num_train_steps:
        raise StudyInterrupted(
          f"{workdir.name} stopped at step {latest_step(workdir)} of "
          f"{study.num_train_steps}; rerun the same command to resume the study"
        )
      logging.info(
        "study: trained %s: setup %.1fs, compile (first step) %.1fs, train %.1fs",
        workdir.name,
        timings["setup_s"],
        timings["compile_s"],
        timings["train_s"],
      )
    drift = config_drift(workdir, configs[r])
    if drift:
      logging.warning(
        "study: %s was trained with a different config (%s); its checkpoint is used as it is",
        workdir.name,
        ", ".join(drift),
      )
      drifted[run_name(*r)] = drift
    t1 = time.time()
    step, scores = run_scores(workdir, test_sets, test_cfg.get("eval_batch", 8))
    logging.info("study: %s score %.1fs", workdir.name, time.time() - t1)
    for ts in test_sets:
      for iid, (psnr, ssim) in zip(ts.image_ids, scores[_set_key(ts)]):
        rows.append(
          dict(
            config=r[0], train_blur=r[1], seed=r[2], test_set=ts.label, image_id=iid, psnr=psnr, ssim=ssim, step=step
          )
        )

  base = baseline_scores(test_sets, out)
  for method in classical.BASELINES:
    for ts in test_sets:
      for iid, (psnr, ssim) in zip(ts.image_ids, base[_set_key(ts)].get(method, ())):
        rows.append(
          dict(
            config=method, train_blur=None, seed=None, test_set=ts.label, image_id=iid, psnr=psnr, ssim=ssim, step=None
          )
        )

  meta = dict(
    name=study.get("name", "study"),
    configs=list(study.configs),
    seeds=[int(s) for s in study.seeds],
    train_blurs=list(study.train_blurs),
    num_train_steps=int(study.num_train_steps),
    **params,
    max_side=int(test_cfg.max_side),
    variants=int(test_cfg.variants),
    overrides=study.get("overrides", ml_collections.ConfigDict()).to_dict(),
    bootstrap_samples=int(study.bootstrap.samples),
    bootstrap_seed=int(study.bootstrap.seed),
    drifted=drifted,
    not_run=not_run,
  )
  study_report.write(
    rows,
    out,
    study=meta,
    test_sets=test_sets,
    skipped=skipped,
    min_gain_db=float(study.get("learned_min_gain_db", 0.5)),
    samples=int(study.bootstrap.samples),
    seed=int(study.bootstrap.seed),
  )
  logging.info("study: report in %s", out / "report.md")
  return rows


FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file("study", None, "Study config file (configs/studies/NAME.py).", lock_config=True)
  flags.DEFINE_string("output", None, "Study folder: runs/, caches, report.md, report.csv, report_psnr.png.")
  flags.DEFINE_string(
    "data_dir",
    None,
    "TFDS data_dir: synthetic_blur is built there for training (default "
    "OUTPUT/tfds) and every real dataset prepared there is a test set.",
  )
  flags.DEFINE_bool("report_only", False, "Train nothing: report the finished runs, list the others as not run.")


def main(argv):
  del argv
  command_line.setup_logging()
  command_line.no_bars_when_redirected()
  if FLAGS.study is None or not FLAGS.output:
    raise app.UsageError("--study=configs/studies/NAME.py and --output=DIR are required")
  t0 = time.time()
  setup_compilation_cache(epath.Path(FLAGS.output))
  try:
    run(FLAGS.study, FLAGS.output, data_dir=FLAGS.data_dir, report_only=FLAGS.report_only)
  except StudyInterrupted as e:
    logging.warning("study: %s", e)
    raise SystemExit(1) from None
  logging.info("study: done in %.1fs", time.time() - t0)


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
