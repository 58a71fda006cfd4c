"""Checks a config before anything is compiled, failing with one readable line naming the key.

A bad value otherwise surfaces minutes later as an XLA shape error or a Python TypeError deep in the loop. Configs
loaded from JSON (DIR/config.json) are not type-safe, so types are checked here too. A rule that a module enforces
itself (model fields, SAID mode, loss names, weight-decay targets, nan_policy, mesh shape, dataset policies, blur
families, the batch split) lives in that module; this file only calls it early (`_owner_check`).
"""

import re

import ml_collections

from bdirnet_jax import losses
from bdirnet_jax import sharding
from bdirnet_jax import train_state
from bdirnet_jax import train_step
from bdirnet_jax.models import bdirnet as bdirnet_lib
from bdirnet_jax.models import said as said_lib

_POSITIVE_INTS = ("batch_size", "num_train_steps", "checkpoint_every_steps", "log_every_steps")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key."""


def _check(cond, msg):
  if not cond:
    raise ConfigError(msg)


def _owner_check(check, *args):
  """Runs a module's own check now; its ValueError (which names the config key) becomes a ConfigError."""
  try:
    return check(*args)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _get(config, path):
  node = config
  for part in path.split("."):
    _check(isinstance(node, (ml_collections.ConfigDict, dict)) and part in node, f"config.{path} is missing")
    node = node[part]
  return node


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(config, path, minimum=None, optional=False):
  value = _get(config, path)
  if value is None and optional:
    return None
  _check(_is_int(value), f"config.{path} must be an integer, got {value!r} ({type(value).__name__})")
  _check(minimum is None or value >= minimum, f"config.{path} must be >= {minimum}, got {value}")
  return value


def _number(config, path, low=None, high=None, low_open=False, high_open=False, optional=False):
  value = _get(config, path)
  if value is None and optional:
    return None
  _check(_is_number(value), f"config.{path} must be a number, got {value!r} ({type(value).__name__})")
  ok_low = low is None or (value > low if low_open else value >= low)
  ok_high = high is None or (value < high if high_open else value <= high)
  lo = "" if low is None else ("(" if low_open else "[") + str(low)
  hi = "" if high is None else str(high) + (")" if high_open else "]")
  _check(ok_low and ok_high, f"config.{path} must be in {lo or '(-inf'}, {hi or 'inf)'}, got {value}")
  return value


def _bool(config, path):
  value = _get(config, path)
  _check(isinstance(value, bool), f"config.{path} must be True or False, got {value!r} ({type(value).__name__})")
  return value


def _choice(config, path, choices):
  value = _get(config, path)
  _check(isinstance(value, str) and value in choices, f"config.{path} must be one of {sorted(choices)}, got {value!r}")
  return value


def _validate_model(config):
  _get(config, "model")
  # preset, known fields, block lists, embed_pool, width/proj_dim/middle_blocks
  kwargs = _owner_check(bdirnet_lib.model_kwargs, config.model)
  _owner_check(said_lib.check_mode, _get(config, "model.said"))
  for key in ("said_skips", "said_learned_mix", "sair", "global_residual", "identity_residual", "scan", "remat"):
    if key in config.model:
      _bool(config, f"model.{key}")
  return kwargs


def _validate_loss(config):
  _owner_check(losses.check_names, _get(config, "loss.reconstruction"), _get(config, "loss.latent_distance"))
  for key in config.loss:
    if key.endswith("_weight"):
      _number(config, f"loss.{key}", low=0)
  _number(config, "loss.infonce_temperature", low=0, low_open=True)
  _number(config, "loss.charbonnier_eps", low=0, low_open=True)
  for key in ("latent_normalize", "stats_scale_free"):
    if key in config.loss:
      _bool(config, f"loss.{key}")
  if losses.needs_sharp_view(config.loss) and config.loss.infonce_weight > 0:
    _check(
      config.batch_size >= 2,
      "config.batch_size must be >= 2 for the InfoNCE loss (other images of the "
      "batch are its negatives); set config.loss.infonce_weight=0 for batch size 1",
    )


def _validate_optim(config):
  _number(config, "optim.learning_rate", low=0, low_open=True)
  _number(config, "optim.min_lr_ratio", low=0, high=1)
  _int(config, "optim.warmup_steps", minimum=0)
  _number(config, "optim.weight_decay", low=0)
  _number(config, "optim.b1", low=0, high=1, high_open=True)
  _number(config, "optim.b2", low=0, high=1, high_open=True)
  _number(config, "optim.grad_clip_norm", low=0, optional=True)
  _number(config, "optim.ema_decay", low=0, high=1, high_open=True)
  if "schedule_steps" in config.optim:
    _int(config, "optim.schedule_steps", minimum=1, optional=True)
  if "ema_warmup" in config.optim:
    _bool(config, "optim.ema_warmup")
  if "weight_decay_on" in config.optim:
    _owner_check(train_state.check_weight_decay_on, config.optim.weight_decay_on)


def _validate_dataset(config, downsample_factor):
  ds = "dataset"
  name = _get(config, f"{ds}.name")
  _check(isinstance(name, str) and name, f"config.{ds}.name must be a dataset name, got {name!r}")
  crop = _get(config, f"{ds}.crop_size")
  _check(
    _is_int(crop) and crop > 0 and crop % downsample_factor == 0,
    f"config.{ds}.crop_size must be a positive multiple of the model's downsampling factor "
    f"{downsample_factor}, got {crop!r}",
  )
  for key in ("augment", "on_the_fly_blur", "auto_prepare"):
    if key in config.dataset:
      _bool(config, f"{ds}.{key}")
  _get(config, f"{ds}.small_image_policy")
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  _owner_check(input_pipeline.check_dataset, config.dataset)  # small_image_policy, blur_family
  if config.dataset.get("on_the_fly_blur", False):
    _int(config, f"{ds}.kernel_size", minimum=3)
  if "noise_sigma" in config.dataset:
    _number(config, f"{ds}.noise_sigma", low=0)
  for key, minimum in (("num_workers", 0), ("num_threads", 1), ("prefetch", 0)):
    if key in config.dataset:
      _int(config, f"{ds}.{key}", minimum=minimum)
  for key in ("data_dir", "manual_dir"):
    value = config.dataset.get(key)
    _check(value is None or isinstance(value, str), f"config.{ds}.{key} must be a path, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first value that cannot work (types, ranges, names); compiles nothing."""
  _int(config, "seed")
  for key in _POSITIVE_INTS:
    _int(config, key, minimum=1)
  _int(config, "keep_checkpoints", minimum=1, optional=True)
  for key in ("profile_steps", "eval_every_steps"):
    if key in config:
      _int(config, key, minimum=0)
  if "async_checkpointing" in config:
    _bool(config, "async_checkpointing")
  if config.get("init_from") is not None:
    value = config.init_from
    _check(isinstance(value, str), f"config.init_from must be a path or empty, got {value!r} ({type(value).__name__})")
  _owner_check(bdirnet_lib.compute_dtype, _get(config, "compute_dtype"))
  _owner_check(train_step.check_nan_policy, _get(config, "nan_policy"))
  _owner_check(sharding.resolve_mesh_shape, _get(config, "mesh_shape"))
  kwargs = _validate_model(config)
  _validate_loss(config)
  _validate_optim(config)
  _validate_dataset(config, bdirnet_lib.downsample_factor(kwargs["enc_blocks"]))
  validate_eval_datasets(config)


_SPLIT = re.compile(r"^[A-Za-z0-9_-]+(\[[^\]]*\])?(\+[A-Za-z0-9_-]+(\[[^\]]*\])?)*$")  # TFDS split syntax


def _prepared_splits(tfds, name, cfg, data_dir) -> list[str]:
  """The split names of a prepared dataset (reads its dataset_info.json); [] when it is not prepared yet (evaluate
  says how to build it)."""
  try:
    builder = tfds.builder(f"{name}/{cfg}" if cfg else name, data_dir=data_dir)
    return list(builder.info.splits.keys()) if builder.is_prepared() else []
  except Exception:  # pylint: disable=broad-except  (an unreadable data_dir is evaluate's error to report)
    return []


def validate_eval_datasets(config: ml_collections.ConfigDict) -> None:
  """Names, builder configs, splits, protocols and output labels of `config.eval_datasets`, so that a misspelled
  entry fails before training instead of at the final evaluation after the whole run. Imports the TFDS builder
  registry (not TensorFlow): a second or two."""
  datasets = config.get("eval_datasets", None)
  if not datasets:
    return
  _check(
    isinstance(datasets, (list, tuple)),
    f"config.eval_datasets must be a list of dataset configs, got {type(datasets).__name__}",
  )
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  import tfds_builders  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import protocols  # pylint: disable=g-import-not-at-top  (the protocol registry)

  labels = {}
  for i, ds in enumerate(datasets):
    key = f"config.eval_datasets[{i}]"
    _check(isinstance(ds, (ml_collections.ConfigDict, dict)), f"{key} must be a dataset config, got {ds!r}")
    name = ds.get("name", None)
    _check(isinstance(name, str) and name, f"{key}.name must be a dataset name, got {name!r}")
    try:
      builder_cls = tfds.builder_cls(name)
    except Exception:  # pylint: disable=broad-except  (tfds raises several types for an unknown name)
      raise ConfigError(
        f"{key}.name={name!r} is not a known dataset; expected one of {list(tfds_builders.BUILDER_NAMES)} or "
        "another registered TFDS name"
      ) from None
    known_configs = [c.name for c in (getattr(builder_cls, "BUILDER_CONFIGS", None) or [])]
    cfg = ds.get("config", None)
    if known_configs:
      _check(
        cfg is None or cfg in known_configs,
        f"{key}.config={cfg!r} is not a config of {name}; expected one of {known_configs}",
      )
    else:
      _check(cfg is None, f"{key}.config={cfg!r}: {name} has no builder configs; expected None")
    split = ds.get("split", "test")
    _check(
      isinstance(split, str) and _SPLIT.match(split) is not None,
      f"{key}.split={split!r} is not a TFDS split (e.g. 'test', 'train[:10]')",
    )
    prepared = _prepared_splits(tfds, name, cfg, ds.get("data_dir", None))
    for part in split.split("+"):
      base = part.split("[")[0]
      _check(
        not prepared or base in prepared,
        f"{key}.split={split!r}: {name}{'/' + cfg if cfg else ''} has no split {base!r}; it has {sorted(prepared)}",
      )
    protocol = ds.get("protocol", None)
    _check(
      protocol is None or protocol in protocols.PROTOCOLS,
      f"{key}.protocol={protocol!r} is not a known protocol; expected one of {sorted(protocols.PROTOCOLS)}",
    )
    label = (ds.get("label", None) or name).replace("/", "-")  # evaluate.label_of, for plain dicts too
    _check(
      (label, split) not in labels,
      f"{key} writes {label}_{split}.json like config.eval_datasets[{labels.get((label, split))}]; give the "
      "entries distinct `label` fields",
    )
    labels[(label, split)] = i


def validate_for_mesh(config: ml_collections.ConfigDict, mesh) -> None:
  """The checks that need the device count: the global batch is split evenly over devices and processes."""
  import jax  # pylint: disable=g-import-not-at-top

  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  data = mesh.shape[sharding.DATA_AXIS]
  _check(
    config.batch_size % data == 0,
    f"config.batch_size={config.batch_size} is not divisible by the {data} devices of the mesh's data axis",
  )
  _owner_check(input_pipeline.local_batch_size, config.batch_size, jax.process_count())
