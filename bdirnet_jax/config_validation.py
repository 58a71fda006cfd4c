"""Checks a config before anything is compiled, failing with one readable line naming the key."""
import ml_collections

from bdirnet_jax import losses
from bdirnet_jax.models import bdirnet as bdirnet_lib
from bdirnet_jax.models import said as said_lib

_POSITIVE_INTS = ("batch_size", "num_train_steps", "checkpoint_every_steps", "log_every_steps")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key."""


def _check(cond, msg):
  if not cond:
    raise ConfigError(msg)


def validate(config: ml_collections.ConfigDict) -> None:
  for key in ("seed",) + _POSITIVE_INTS:
    _check(key in config, f"config.{key} is missing")
    value = config[key]
    _check(isinstance(value, int) and not isinstance(value, bool),
           f"config.{key} must be an integer, got {value!r} ({type(value).__name__})")
  for key in _POSITIVE_INTS:
    _check(config[key] > 0, f"config.{key} must be > 0, got {config[key]}")
  _check(config.compute_dtype in bdirnet_lib.DTYPES,
         f"config.compute_dtype must be one of {sorted(bdirnet_lib.DTYPES)}, got {config.compute_dtype!r}")
  _check(config.nan_policy in ("stop", "skip"), f"config.nan_policy must be 'stop' or 'skip', got "
         f"{config.nan_policy!r}")
  bdirnet_lib.model_kwargs(config.model)  # raises on an unknown preset or field
  _check(config.model.said in said_lib.SAID_MODES,
         f"config.model.said must be one of {said_lib.SAID_MODES}, got {config.model.said!r}")
  loss = config.loss
  _check(loss.reconstruction in losses.RECONSTRUCTION_TYPES,
         f"config.loss.reconstruction must be one of {losses.RECONSTRUCTION_TYPES}, got {loss.reconstruction!r}")
  _check(loss.latent_distance in losses.LATENT_DISTANCES,
         f"config.loss.latent_distance must be one of {losses.LATENT_DISTANCES}, got {loss.latent_distance!r}")
  for key, value in loss.items():
    if key.endswith("_weight"):
      _check(isinstance(value, (int, float)) and value >= 0, f"config.loss.{key} must be a number >= 0, got "
             f"{value!r}")
  _check(loss.infonce_temperature > 0, f"config.loss.infonce_temperature must be > 0, got "
         f"{loss.infonce_temperature}")
  _check(0.0 <= config.optim.ema_decay < 1.0, f"config.optim.ema_decay must be in [0, 1), got "
         f"{config.optim.ema_decay}")
  _check(config.optim.learning_rate > 0, f"config.optim.learning_rate must be > 0, got "
         f"{config.optim.learning_rate}")
  ds = config.dataset
  factor = 2 ** len(bdirnet_lib.model_kwargs(config.model)["enc_blocks"])
  _check(isinstance(ds.crop_size, int) and ds.crop_size > 0 and ds.crop_size % factor == 0,
         f"config.dataset.crop_size must be a positive multiple of the model's downsampling factor {factor}, "
         f"got {ds.crop_size!r}")
  _check(ds.small_image_policy in ("pad", "reject"), f"config.dataset.small_image_policy must be 'pad' or "
         f"'reject', got {ds.small_image_policy!r}")
  if losses.needs_sharp_view(loss) and loss.infonce_weight > 0:
    _check(config.batch_size >= 2, "config.batch_size must be >= 2 for the InfoNCE loss (other images of the "
           "batch are its negatives); set config.loss.infonce_weight=0 for batch size 1")


def validate_for_mesh(config: ml_collections.ConfigDict, mesh) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  data = mesh.shape["data"]
  _check(config.batch_size % data == 0, f"config.batch_size={config.batch_size} is not divisible by the "
         f"{data} devices of the mesh's data axis")
  _check(config.batch_size % jax.process_count() == 0, f"config.batch_size={config.batch_size} is not "
         f"divisible by the {jax.process_count()} processes")
