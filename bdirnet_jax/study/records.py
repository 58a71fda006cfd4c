"""What a study folder holds and how it is read back: run folders, the score caches, each run's latest step and
whether a finished run was trained under the study's current recipe (checkpoint is imported when first needed, so
the command's --help and config errors come before orbax loads).

  DIR/runs/<config>-<train_blur>-seed<k>/   an ordinary workdir (checkpoints/, config.json) + study_scores.json
  DIR/baseline_scores.json                  the classical baselines' scores
"""

import json

import ml_collections
from etils import epath
from flax import traverse_util

from bdirnet_jax import atomic_io
from bdirnet_jax.study import testsets

RUNS_DIR = "runs"
RUN_SCORES = "study_scores.json"
BASELINE_SCORES = "baseline_scores.json"


def read_json(path: epath.Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


def write_json(path: epath.Path, obj: dict) -> None:
  atomic_io.write_json(path, obj, indent=1, sort_keys=True)


def set_key(ts: testsets.TestSet) -> str:
  """A test set's key in the score caches: its label and fingerprint, so changed images are scored anew."""
  return f"{ts.label}:{ts.fingerprint}"


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
  steps = [entry.get("step") for entry in read_json(workdir / RUN_SCORES).values() if entry.get("step") is not None]
  return max(steps) if steps else None


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
