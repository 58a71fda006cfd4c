"""The pure train step: (state, batch, rng) -> (state, metrics), jitted over a device mesh."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from bdirnet_jax import losses
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax.train_state import TrainState
from bdirnet_jax.train_state import ema_decay

# What a step with a non-finite loss or gradient does: it never updates the state (see below); `stop` then ends
# training at the next check (train.NonFiniteError), `skip` logs it and goes on.
NAN_POLICIES = ("stop", "skip")


def check_nan_policy(policy) -> str:
  """`config.nan_policy`, one of NAN_POLICIES (config_validation asks before anything is compiled)."""
  if not isinstance(policy, str) or policy not in NAN_POLICIES:
    raise ValueError(f"config.nan_policy must be one of {sorted(NAN_POLICIES)}, got {policy!r}")
  return policy


def to_float(images):
  """uint8 [0, 255] batches travel to the device (4x less traffic) and become float32 [0, 1] there; inference
  converts its inputs here too, so a network sees at test time what it saw in training."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def prepare_views(batch, rng, dataset_config):
  """Returns (blurry, sharp) float32 views; sharp-only batches are blurred on the device with their kernels."""
  sharp = to_float(batch["sharp"])
  if "kernel" in batch:
    from bdirnet_jax import blur  # pylint: disable=g-import-not-at-top

    blurry = blur.blur_batch(sharp, batch["kernel"])
    blurry = blur.add_noise_jax(rng, blurry, dataset_config.get("noise_sigma", 0.0))
    return blurry, sharp
  return to_float(batch["blurry"]), sharp


def batch_psnr(x, y):
  """Mean PSNR (dB) of [0, 1] images over the batch, outputs clipped: the training log's cheap progress number."""
  mse = jnp.mean(jnp.square(jnp.clip(x, 0, 1) - y).reshape(x.shape[0], -1), axis=-1)
  return jnp.mean(-10.0 * jnp.log10(mse + 1e-10))


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_step(
  state: TrainState,
  batch: dict,
  rng: jax.Array,
  *,
  model,
  tx: optax.GradientTransformation,
  config: ml_collections.ConfigDict,
):
  """One optimisation step. Pure: everything random comes from `rng` folded with the step."""
  rng = jax.random.fold_in(rng, state.step)
  blur_rng, _ = jax.random.split(rng)
  blurry, sharp = prepare_views(batch, blur_rng, config.dataset)
  two_view = losses.needs_sharp_view(config.loss)

  def loss_fn(params):
    if two_view:
      outputs = model.apply({"params": params}, blurry, sharp, reconstruct_sharp=config.loss.identity_weight > 0)
    else:
      outputs = {"restored": model.apply({"params": params}, blurry, method=model.deblur)}
    loss, terms = losses.total_loss(outputs, sharp, config.loss)
    return loss, (terms, outputs["restored"])

  (loss, (terms, restored)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  decay = ema_decay(config, state.step)
  new_ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, new_params)

  # NaN/Inf guard: a non-finite step leaves the state untouched and is counted; the loop stops or goes on
  # according to config.nan_policy.
  finite = jnp.isfinite(loss) & _all_finite(grads)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = TrainState(
    step=state.step + 1,
    params=keep(new_params, state.params),
    opt_state=keep(new_opt_state, state.opt_state),
    ema_params=keep(new_ema, state.ema_params),
    nonfinite_steps=state.nonfinite_steps + (1 - finite.astype(jnp.int32)),
  )
  metrics = {
    "loss": loss,
    "grad_norm": optax.global_norm(grads),
    "psnr": batch_psnr(restored, sharp),
    "input_psnr": batch_psnr(blurry, sharp),
    "finite": finite.astype(jnp.float32),
  }
  metrics.update({f"loss_{k}": v for k, v in terms.items()})
  return new_state, metrics


def jit_train_step(model, tx, config, mesh, state_shardings):
  """jax.jit of `train_step` with explicit shardings; the input state buffers are donated."""
  step = functools.partial(train_step, model=model, tx=tx, config=config)
  return jax.jit(
    step,
    in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh), sharding_lib.replicated(mesh)),
    out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
    donate_argnums=(0,),
  )
