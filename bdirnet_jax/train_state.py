"""Train state (params, optimizer, EMA) and the optimizer schedule."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs to continue bit-identically (the data iterator state is saved beside it)."""

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  nonfinite_steps: jax.Array  # count of steps skipped by the NaN/Inf guard


def schedule_steps(config: ml_collections.ConfigDict) -> int:
  """The schedule's horizon: `optim.schedule_steps`, fixed to `num_train_steps` when a run starts (train.py)."""
  steps = config.optim.get("schedule_steps", None)
  return int(config.num_train_steps if steps is None else steps)


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up then cosine decay to `min_lr_ratio` of the peak over the schedule's horizon.

  Past the horizon the rate stays at its final value, so raising `num_train_steps` on resume continues training
  at the minimum rate instead of jumping back up the cosine.
  """
  optim = config.optim
  horizon = schedule_steps(config)
  warmup = min(optim.warmup_steps, max(horizon - 1, 0))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0 if warmup else optim.learning_rate,
    peak_value=optim.learning_rate,
    warmup_steps=warmup,
    decay_steps=max(horizon, warmup + 1),
    end_value=optim.learning_rate * optim.min_lr_ratio,
  )


def ema_decay(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """EMA decay at `step` (updates done so far): min(decay, (1 + t) / (10 + t)) with `optim.ema_warmup`.

  Without the warm-up the EMA starts at the initial params: after 600 steps at 0.999, 55% of it is still the
  untrained network. The warm-up (TensorFlow's ExponentialMovingAverage num_updates rule) averages over roughly
  the last t/10 steps early on and reaches the configured decay after ~9/(1-decay) steps.
  """
  decay = jnp.asarray(config.optim.ema_decay, jnp.float32)
  if config.optim.get("ema_warmup", True):
    t = jnp.asarray(step, jnp.float32)
    decay = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
  return decay


def params_kind(config: ml_collections.ConfigDict, use_ema: bool = True) -> str:
  """Which params evaluation, prediction and export use: "ema" when asked for and the run kept an EMA
  (`optim.ema_decay` > 0), else "raw"."""
  return "ema" if use_ema and config.optim.get("ema_decay", 0) > 0 else "raw"


WEIGHT_DECAY_TARGETS = ("kernels", "all")


def check_weight_decay_on(targets) -> str:
  """`config.optim.weight_decay_on`, one of WEIGHT_DECAY_TARGETS (config_validation asks before compiling)."""
  if not isinstance(targets, str) or targets not in WEIGHT_DECAY_TARGETS:
    raise ValueError(f"config.optim.weight_decay_on must be one of {sorted(WEIGHT_DECAY_TARGETS)}, got {targets!r}")
  return targets


def weight_decay_mask(params, targets: str = "kernels"):
  """True where weight decay applies: `kernels` = convolution and dense kernels only (the NAFNet/Restormer and
  big_vision convention). Decaying SAID's gamma/beta, the NAFBlock residual scales, norms and biases pulls
  them towards 0, i.e. towards switching the block or the statistics off, which no one asked for."""
  check_weight_decay_on(targets)
  if targets == "all":
    return jax.tree.map(lambda _: True, params)
  return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  optim = config.optim
  chain = []
  if optim.grad_clip_norm and optim.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  targets = optim.get("weight_decay_on", "kernels")
  chain.append(
    optax.adamw(
      learning_rate_schedule(config),
      b1=optim.b1,
      b2=optim.b2,
      eps=1e-8,
      weight_decay=optim.weight_decay,
      mask=lambda p: weight_decay_mask(p, targets),
    )
  )
  return optax.chain(*chain)


def create_train_state(params, tx: optax.GradientTransformation) -> TrainState:
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    ema_params=jax.tree.map(jnp.copy, params),
    nonfinite_steps=jnp.zeros((), jnp.int32),
  )
