"""A pretrained package: a workdir's resolved config and one step's inference params, nothing else.

`python -m bdirnet_jax.pretrained --workdir=W --output=pretrained/NAME [--step=N]` writes

  pretrained/NAME/config.json      the run's resolved config
  pretrained/NAME/params.msgpack   the EMA params (the raw params if the run kept no EMA), flax.serialization
  pretrained/NAME/pretrained.json  step, params kind, parameter count, file size and the params' sha256

a few MB instead of the checkpoint's params + EMA + optimizer moments. `--mode=evaluate|predict|export
--workdir=pretrained/NAME` restore it (checkpoint.restore_params), checking the sha256 first.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from etils import epath
from flax import serialization

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation

METADATA_FILE = checkpoint.PRETRAINED_METADATA
PARAMS_FILE = checkpoint.PRETRAINED_PARAMS
FORMAT = checkpoint.PRETRAINED_FORMAT


def sha256(path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def package(workdir: str, output: str, step: int | None = None) -> dict:
  """Writes the package of `workdir`'s checkpoint `step` (default: latest) to `output`; returns its metadata.

  Refuses an existing `output`; the folder appears complete or not at all (written beside it, then renamed).
  """
  output = epath.Path(os.path.abspath(output))
  if output.exists():
    raise FileExistsError(f"{output} already exists; choose a new --output (nothing was overwritten)")
  if checkpoint.is_pretrained(workdir):
    raise ValueError(f"{workdir} is already a pretrained package; copy the folder instead")
  params, step, config = checkpoint.restore_params(str(workdir), use_ema=True, step=step)
  from bdirnet_jax import train_state  # pylint: disable=g-import-not-at-top

  kind = train_state.params_kind(config, True)
  host_params = jax.tree.map(np.asarray, params)
  data = serialization.msgpack_serialize(serialization.to_state_dict(host_params))
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = epath.Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=str(output.parent)))
  try:
    (tmp / PARAMS_FILE).write_bytes(data)
    (tmp / checkpoint.CONFIG_FILE).write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    metadata = {
      "format": FORMAT,
      "step": int(step),
      "params_kind": kind,
      "param_count": int(sum(np.size(x) for x in jax.tree.leaves(host_params))),
      "params_file": PARAMS_FILE,
      "params_bytes": len(data),
      "params_sha256": sha256(tmp / PARAMS_FILE),
      "source_workdir": os.path.basename(os.path.normpath(str(workdir))),
      "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o755)  # mkdtemp made it private
    os.rename(tmp, output)  # fails, rather than merging, if output appeared meanwhile
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
  logging.info(
    "pretrained: step %d of %s -> %s (%s params, %d params, %.2f MB, sha256 %s)",
    step,
    workdir,
    output,
    kind,
    metadata["param_count"],
    len(data) / 1e6,
    metadata["params_sha256"],
  )
  return metadata


def _define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir (with checkpoints/ and config.json).", required=True)
  flags.DEFINE_string("output", None, "New folder for the package, e.g. pretrained/NAME.", required=True)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  try:
    package(FLAGS.workdir, FLAGS.output, FLAGS.step)
  except (FileExistsError, FileNotFoundError, ValueError, config_validation.ConfigError) as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  _define_flags()
  app.run(main)
