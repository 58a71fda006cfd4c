"""The study's orchestration: `run()` trains what is missing, scores what is not cached and writes the report.

Runs are trained one at a time, in `plan.runs` order, by `train_run` (the one place the study trains); runs of one
config share its compiled programs (`train.programs`).
"""

import time

import jax
import ml_collections
from absl import logging
from etils import epath
from tqdm import tqdm

from bdirnet_jax import classical
from bdirnet_jax.study import plan
from bdirnet_jax.study import records
from bdirnet_jax.study import report
from bdirnet_jax.study import scoring
from bdirnet_jax.study import testsets


class StudyInterrupted(RuntimeError):
  """A run stopped before its last step (SIGTERM): rerun the same command to resume."""


def _row(config, train_blur, seed, test_set, image_id, scores, step) -> dict:
  psnr, ssim = scores
  return dict(
    config=config,
    train_blur=train_blur,
    seed=seed,
    test_set=test_set,
    image_id=image_id,
    psnr=psnr,
    ssim=ssim,
    step=step,
  )


def train_run(config: ml_collections.ConfigDict, workdir: epath.Path, num_train_steps: int, step: int | None) -> None:
  """Trains one run to `num_train_steps`, from scratch or resuming from its checkpoint at `step`.

  Raises StudyInterrupted when the run stopped before its last step (SIGTERM), so the study stops there too.
  """
  from bdirnet_jax import train  # pylint: disable=g-import-not-at-top

  logging.info(
    "study: training %s (%s)", workdir.name, "from scratch" if step is None else f"resuming from step {step}"
  )
  timings = {}
  train.train_and_evaluate(config, str(workdir), timings=timings)
  reached = records.latest_step(workdir)
  if (reached or 0) < num_train_steps:
    raise StudyInterrupted(
      f"{workdir.name} stopped at step {reached} of {num_train_steps}; rerun the same command to resume the study"
    )
  logging.info(
    "study: trained %s: setup %.1fs, compile (first step) %.1fs, train %.1fs",
    workdir.name,
    timings["setup_s"],
    timings["compile_s"],
    timings["train_s"],
  )


def _test_sets(study: ml_collections.ConfigDict, params: dict, data_dir: str | None):
  """(test sets, skipped real datasets): the synthetic families, plus the real datasets prepared in `data_dir`."""
  t0 = time.time()
  test_cfg = study.test
  sets = testsets.synthetic_sets(study.test_blurs, variants=test_cfg.variants, max_side=test_cfg.max_side, **params)
  skipped = []
  if data_dir and study.get("real_datasets", True):
    real, skipped = testsets.real_sets(
      data_dir, max_side=test_cfg.max_side, max_images=test_cfg.get("max_real_images", 16)
    )
    sets += real
  logging.info(
    "study: %d test sets (%s) in %.1fs", len(sets), ", ".join(f"{ts.label}: {len(ts)}" for ts in sets), time.time() - t0
  )
  return sets, skipped


def run(
  study: ml_collections.ConfigDict, output: str, *, data_dir: str | None = None, report_only: bool = False
) -> list[dict]:
  """Trains what is missing, scores what is not cached, writes the report; returns the report's rows.

  `report_only` trains nothing: the report covers the finished runs and lists the others as not run yet (an
  interim report of a study that runs in several sittings).

  The command line also enables the persistent compilation cache (`cli.setup_compilation_cache`); a library
  caller decides that for its own process.
  """
  from bdirnet_jax import config_validation  # pylint: disable=g-import-not-at-top

  plan.validate_study(study)
  if jax.process_count() > 1:
    raise ValueError(
      "the study runs in one process (its runs are independent: split them over processes by "
      "giving each its own --study.configs/--study.seeds and the same --output)"
    )
  out = epath.Path(output)
  out.mkdir(parents=True, exist_ok=True)
  runs = plan.runs(study)
  configs = {r: plan.training_config(study, *r, data_dir or str(out / "tfds")) for r in runs}
  for r, config in configs.items():  # every config checked before anything is trained
    try:
      config_validation.validate(config)
    except config_validation.ConfigError as e:
      raise config_validation.ConfigError(f"run {plan.run_name(*r)}: {e}") from None
  params = plan.synthetic_test_params(study, next(iter(configs.values())))
  test_sets, skipped = _test_sets(study, params, data_dir)

  if study.get("stack_runs", 0) > 1 and not report_only:  # up to N runs of one config in one program
    from bdirnet_jax import stacked_train  # pylint: disable=g-import-not-at-top

    try:
      pairs = [(configs[r], out / records.RUNS_DIR / plan.run_name(*r)) for r in runs]
      stacked_train.train_unfinished(pairs, study.stack_runs, out / "stacked", records.latest_step)
    except stacked_train.Interrupted as e:
      raise StudyInterrupted(f"{e}; rerun the same command to resume the study") from None

  rows, drifted, not_run = [], {}, []
  for r in tqdm(runs, desc="study", unit="run", disable=None):  # drawn on a terminal only
    name = plan.run_name(*r)
    workdir = out / records.RUNS_DIR / name
    step = records.latest_step(workdir)
    if step is None or step < study.num_train_steps:
      if report_only:
        not_run.append(name)
        continue
      train_run(configs[r], workdir, study.num_train_steps, step)
    else:
      if step > study.num_train_steps:
        logging.warning(
          "study: %s is at step %d, past the study's %d steps; scored as it is", name, step, study.num_train_steps
        )
      logging.info("study: %s finished (step %d); not trained", name, step)
    drift = records.config_drift(workdir, configs[r])
    if drift:
      logging.warning(
        "study: %s was trained with a different config (%s); its checkpoint is used as it is", name, ", ".join(drift)
      )
      drifted[name] = drift
    t0 = time.time()
    step, scores = scoring.run_scores(workdir, test_sets, study.test.get("eval_batch", 8))
    logging.info("study: %s score %.1fs", name, time.time() - t0)
    for ts in test_sets:
      for image_id, s in zip(ts.image_ids, scores[records.set_key(ts)]):
        rows.append(_row(*r, ts.label, image_id, s, step))

  base = scoring.baseline_scores(test_sets, out)
  for method in classical.BASELINES:
    for ts in test_sets:
      for image_id, s in zip(ts.image_ids, base[records.set_key(ts)].get(method, ())):
        rows.append(_row(method, None, None, ts.label, image_id, s, None))

  meta = dict(
    name=study.get("name", "study"),
    configs=list(study.configs),
    seeds=[int(s) for s in study.seeds],
    train_blurs=list(study.train_blurs),
    num_train_steps=int(study.num_train_steps),
    **params,
    max_side=int(study.test.max_side),
    variants=int(study.test.variants),
    overrides=study.get("overrides", ml_collections.ConfigDict()).to_dict(),
    bootstrap_samples=int(study.bootstrap.samples),
    bootstrap_seed=int(study.bootstrap.seed),
    drifted=drifted,
    not_run=not_run,
  )
  report.write(
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
