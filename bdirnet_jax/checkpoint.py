"""Orbax checkpoints of the train state plus the data iterator state, and restoring params for inference.

Layout: DIR/checkpoints/<step>/{state/, data/process_<i>-of-<n>.json}; the data files are grain's checkpoint
handler's, one per process. Orbax writes each step to a temporary folder and renames it when complete, so a crash
never leaves a half-written latest checkpoint.
"""

import json
import os

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from bdirnet_jax import atomic_io
from bdirnet_jax import config_validation
from bdirnet_jax import train_state

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
# A pretrained package (bdirnet_jax/pretrained.py): config.json + params.msgpack + pretrained.json, no checkpoints.
PRETRAINED_METADATA = "pretrained.json"
PRETRAINED_PARAMS = "params.msgpack"
PRETRAINED_FORMAT = "bdirnet-pretrained-1"


def create_manager(workdir: str, config: ml_collections.ConfigDict | None = None) -> ocp.CheckpointManager:
  keep = config.get("keep_checkpoints", 3) if config is not None else None
  async_save = config.get("async_checkpointing", True) if config is not None else False
  # Training (config given) removes the temporary folders a killed run left behind; readers never touch the dir.
  options = ocp.CheckpointManagerOptions(
    max_to_keep=keep,
    create=config is not None,
    cleanup_tmp_directories=config is not None,
    enable_async_checkpointing=async_save,
  )
  # Absolute: orbax refuses relative paths (and only says so at the first save, from a background thread).
  return ocp.CheckpointManager(
    epath.Path(os.path.abspath(str(workdir))) / CHECKPOINT_DIR,
    options=options,
    item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()},
  )


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator=None, force: bool = False) -> bool:
  """Saves `state` and the position of `data_iterator` (a grain.DatasetIterator, read now, while orbax's save
  blocks, so batches taken after this call do not move it)."""
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(step, args=ocp.args.Composite(**args), force=force)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, data_iterator=None):
  """The state restored onto `abstract_state`'s shardings (which may come from a different device count); the
  saved position is set on `data_iterator` in place."""
  args = {"state": ocp.args.StandardRestore(abstract_state)}
  data_dir = epath.Path(manager.directory) / str(step) / "data"
  if data_dir.exists():
    # Checked even without an iterator to restore, and before orbax, whose errors would read as a model mismatch.
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if not (data_dir / name).exists():
      found = sorted(p.name for p in data_dir.iterdir())
      raise FileNotFoundError(
        f"{data_dir / name} not found (found {found}): the checkpoint was written by a "
        "different number of processes, so the data iterator cannot resume exactly"
      )
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**args))
  except (ValueError, KeyError, TypeError) as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]  # orbax lists every mismatched leaf
    detail = " ".join(lines[:3]) + (f" ... ({len(lines) - 3} more lines)" if len(lines) > 3 else "")
    raise config_validation.ConfigError(
      f"checkpoint {manager.directory / str(step)} does not match the model of "
      f"this config (different preset or fields?): {detail}"
    ) from e
  return restored["state"]


# ----------------------------------------------------------------------------------------------------------------
# The resolved config beside the checkpoints: lets evaluate/predict rebuild the model, and guards a workdir from
# being overwritten by a run of a different model.


def config_path(workdir: str) -> epath.Path:
  return epath.Path(workdir) / CONFIG_FILE


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = config_path(workdir)
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: --workdir must be a directory written by --mode=train")
  saved = json.loads(path.read_text())
  if is_pretrained(workdir):
    # A package outlives the code that wrote it: fields added since then take today's defaults.
    from configs import default  # pylint: disable=g-import-not-at-top

    saved = _merged(default.get_config().to_dict(), saved)
  return ml_collections.ConfigDict(saved)


def _merged(base: dict, override: dict) -> dict:
  out = dict(base)
  for key, value in override.items():
    out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
  return out


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    path = config_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_io.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))


class CheckpointSaveError(OSError):
  """A checkpoint save failed (often in the background): names the cause and the checkpoints that are complete."""


def complete_steps(ckpt_dir) -> list[int]:
  """Steps of the finalized checkpoints in `ckpt_dir` (orbax writes into a temporary name and renames at the end)."""
  ckpt_dir = epath.Path(ckpt_dir)
  return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.exists() else []


def has_checkpoints(workdir: str) -> bool:
  ckpt_dir = epath.Path(workdir) / CHECKPOINT_DIR
  return ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir())


def check_workdir_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses to reuse a workdir whose checkpoints belong to a different model or were trained in another compute
  dtype (a resumed run would then not continue the same computation); nothing is overwritten."""
  if not config_path(workdir).exists() or not has_checkpoints(workdir):
    return
  old = load_config(workdir)
  old_model = json.loads(ml_collections.ConfigDict(old.get("model", {})).to_json_best_effort(sort_keys=True))
  new_model = json.loads(config.model.to_json_best_effort(sort_keys=True))
  if old_model != new_model:
    diff = {
      k: (old_model.get(k), new_model.get(k))
      for k in sorted(set(old_model) | set(new_model))
      if old_model.get(k) != new_model.get(k)
    }
    raise config_validation.ConfigError(
      f"--workdir={workdir} holds checkpoints of a different model (config.model "
      f"differs: {diff}, as (saved, requested)); use a new --workdir. Nothing was "
      "overwritten."
    )
  saved_dtype = old.get("compute_dtype", None)
  if saved_dtype is not None and saved_dtype != config.compute_dtype:
    raise config_validation.ConfigError(
      f"--workdir={workdir} holds checkpoints trained with config.compute_dtype="
      f"{saved_dtype!r}, not {config.compute_dtype!r}; use a new --workdir. "
      "Nothing was overwritten."
    )


def _replicated_target(state_dir: epath.Path, key: str):
  """The saved `key` subtree's shapes and dtypes, replicated over this process's devices.

  Without a target orbax reuses the saved shardings, which fails on any other device count (a checkpoint from 4
  training devices evaluated on 1 GPU).
  """
  metadata = ocp.StandardCheckpointer().metadata(state_dir)
  tree = getattr(metadata, "item_metadata", metadata)[key]
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("replica",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
    tree,
    is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
  )


def is_pretrained(workdir: str) -> bool:
  return (epath.Path(workdir) / PRETRAINED_METADATA).exists()


def _restore_pretrained(workdir: str, use_ema: bool, step: int | None):
  """(params, step, config) of a pretrained package, after checking the params file against its sha256."""
  import hashlib  # pylint: disable=g-import-not-at-top

  from flax import serialization  # pylint: disable=g-import-not-at-top

  root = epath.Path(workdir)
  meta_path = root / PRETRAINED_METADATA
  try:
    meta = json.loads(meta_path.read_text())
    params_path = root / meta["params_file"]
    expected, saved_step, kind = meta["params_sha256"], int(meta["step"]), meta["params_kind"]
  except (ValueError, KeyError, TypeError) as e:
    raise config_validation.ConfigError(f"{meta_path}: not a valid pretrained metadata file ({e!r})") from e
  if step is not None and step != saved_step:
    raise FileNotFoundError(f"{workdir} is a pretrained package of step {saved_step}; --step={step} is not in it")
  if not use_ema and kind == "ema":
    raise config_validation.ConfigError(f"{workdir} holds the EMA params only; --use_ema=false cannot be served")
  if not params_path.exists():
    raise FileNotFoundError(f"{params_path} not found: the pretrained package is incomplete")
  data = params_path.read_bytes()
  actual = hashlib.sha256(data).hexdigest()
  if actual != expected:
    raise config_validation.ConfigError(
      f"{params_path}: sha256 {actual} does not match {expected} in {meta_path.name} (corrupt or replaced file)"
    )
  params = serialization.msgpack_restore(data)
  mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("replica",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.device_put(params, replicated), saved_step, load_config(workdir)


def restore_params(workdir: str, use_ema: bool = True, step: int | None = None):
  """(params, step, config) for inference: EMA params when the run kept an EMA, the raw params otherwise.

  A partial restore: only that subtree is read, not the optimizer's moments (twice the params' size). A pretrained
  package (pretrained.json beside config.json) is read from its params file instead.
  """
  if is_pretrained(workdir):
    return _restore_pretrained(workdir, use_ema, step)
  config = load_config(workdir)
  manager = create_manager(workdir)
  available = list(manager.all_steps())
  step = manager.latest_step() if step is None else step
  manager.close()
  if step is None:
    raise FileNotFoundError(
      f"no checkpoint in {epath.Path(workdir) / CHECKPOINT_DIR}: train first "
      f"(python main.py --mode=train --workdir={workdir} ...)"
    )
  if step not in available:
    raise FileNotFoundError(
      f"no checkpoint of step {step} in {epath.Path(workdir) / CHECKPOINT_DIR}; it has steps {sorted(available)}"
    )
  key = "ema_params" if train_state.params_kind(config, use_ema) == "ema" else "params"
  state_dir = epath.Path(manager.directory) / str(step) / "state"
  target = {key: _replicated_target(state_dir, key)}
  with ocp.PyTreeCheckpointer() as checkpointer:
    restored = checkpointer.restore(
      state_dir,
      args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
      ),
    )
  return restored[key], step, config


def warm_start_params(source: str, abstract_params) -> tuple:
  """(params, step) to start a new run from: those `restore_params` serves from `source` (a training workdir or a
  pretrained package; its EMA params when it kept them), placed with the shardings of `abstract_params`.

  Fine-tuning needs the same architecture, so every parameter path and shape must match; the first mismatch is the
  error, naming `source`. The optimizer moments are not taken: a fine-tune has its own schedule and loss.
  """
  if not epath.Path(source).exists():
    raise config_validation.ConfigError(f"config.init_from={source!r}: no such workdir or pretrained package")
  try:
    params, step, _ = restore_params(source, use_ema=True)
  except FileNotFoundError as e:
    raise config_validation.ConfigError(f"config.init_from={source!r}: {e}") from None
  by_key = {jax.tree_util.keystr(p): np.asarray(x, np.float32) for p, x in jax.tree_util.tree_leaves_with_path(params)}
  have = {key: x.shape for key, x in by_key.items()}
  want = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(abstract_params)}
  for key in sorted(set(have) | set(want)):
    if have.get(key) != want.get(key):
      raise config_validation.ConfigError(
        f"config.init_from={source!r}: its params do not fit this config's model: {key} is "
        f"{have.get(key, 'absent')} there and {want.get(key, 'absent')} here (same config.model needed)"
      )

  def place(path, abstract):
    host = by_key[jax.tree_util.keystr(path)]
    # From a callback, not device_put: with several processes the sharding spans devices this one cannot address.
    return jax.make_array_from_callback(host.shape, abstract.sharding, lambda index: host[index])

  return jax.tree_util.tree_map_with_path(place, abstract_params), int(step)
