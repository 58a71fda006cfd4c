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


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up then cosine decay to `min_lr_ratio` of the peak over `num_train_steps`."""
  o = config.optim
  warmup = min(o.warmup_steps, max(config.num_train_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else o.learning_rate, peak_value=o.learning_rate, warmup_steps=warmup,
      decay_steps=max(config.num_train_steps, warmup + 1), end_value=o.learning_rate * o.min_lr_ratio)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  o = config.optim
  chain = []
  if o.grad_clip_norm and o.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(config), b1=o.b1, b2=o.b2, eps=1e-8,
                           weight_decay=o.weight_decay))
  return optax.chain(*chain)


def create_train_state(params, tx: optax.GradientTransformation) -> TrainState:
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=jax.tree.map(jnp.copy, params), nonfinite_steps=jnp.zeros((), jnp.int32))
