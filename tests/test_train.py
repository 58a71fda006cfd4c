"""The train step and loop: learning, sharding invariance and exact resume."""
import jax
import numpy as np
import pytest

from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train
from bdirnet_jax.train_step import jit_train_step
from configs import tiny
from tests.fakes import PairIterator


def _run_steps(config, devices, num_steps, seed=0, state=None, start=0):
  mesh = sharding_lib.create_mesh((-1, 1), devices=devices)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  model, tx, _, shardings, init = train.create_state(config, mesh, init_rng)
  state = init(init_rng) if state is None else jax.device_put(state, shardings)
  step = jit_train_step(model, tx, config, mesh, shardings)
  data = PairIterator(config.batch_size, config.dataset.crop_size, seed=seed)
  data.set_state({"index": start})
  history = []
  for _ in range(num_steps):
    state, metrics = step(state, sharding_lib.global_batch(next(data), mesh), step_rng)
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def test_loss_falls_over_30_steps_of_tiny_config():
  config = tiny.get_config()
  config.optim.warmup_steps = 3
  config.optim.learning_rate = 2e-3
  _, history = _run_steps(config, jax.devices()[:1], 30)
  losses = [h["loss"] for h in history]
  assert all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
  assert history[-1]["finite"] == 1.0


def test_sharded_step_on_4_devices_matches_1_device():
  assert jax.device_count() == 4
  config = tiny.get_config()
  # Warm start: the zero-initialised ending conv makes the first upstream gradients ~1e-8, where Adam turns
  # float32 reduction-order noise into full-size updates; from a trained state the comparison is meaningful.
  warm, _ = _run_steps(config, jax.devices()[:1], 5)
  state1, hist1 = _run_steps(config, jax.devices()[:1], 3, state=warm, start=5)
  state4, hist4 = _run_steps(config, jax.devices(), 3, state=warm, start=5)
  # Same math, different reduction order across devices: agreement to 2e-5 abs / 1e-4 rel after 3 AdamW steps.
  for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state4.params)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
  np.testing.assert_allclose(hist1[-1]["loss"], hist4[-1]["loss"], rtol=1e-5)


def test_batch_is_sharded_on_data_axis():
  mesh = sharding_lib.create_mesh((-1, 1))
  batch = sharding_lib.global_batch({"x": np.zeros((8, 4, 4, 3), np.uint8)}, mesh)
  shards = batch["x"].addressable_shards
  assert len(shards) == 4 and all(s.data.shape == (2, 4, 4, 3) for s in shards)


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path):
  config = tiny.get_config()
  config.num_train_steps = 6
  config.checkpoint_every_steps = 3
  config.log_every_steps = 3
  straight = train.train_and_evaluate(config, tmp_path / "straight",
                                      PairIterator(config.batch_size, config.dataset.crop_size))
  config.num_train_steps = 3
  train.train_and_evaluate(config, tmp_path / "resumed", PairIterator(config.batch_size, config.dataset.crop_size))
  assert (tmp_path / "resumed" / "checkpoints" / "3").exists()
  assert (tmp_path / "resumed" / "config.json").exists()
  config.num_train_steps = 6  # raising num_train_steps continues training
  resumed = train.train_and_evaluate(config, tmp_path / "resumed",
                                     PairIterator(config.batch_size, config.dataset.crop_size))
  assert int(resumed.step) == 6
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(straight, name)), jax.tree.leaves(getattr(resumed, name))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_of_another_preset_is_refused(tmp_path):
  config = tiny.get_config()
  config.num_train_steps = 1
  train.train_and_evaluate(config, tmp_path, PairIterator(config.batch_size, config.dataset.crop_size))
  before = (tmp_path / "config.json").read_text()
  config.model.preset = "small"
  with pytest.raises(ValueError, match="different model"):
    train.train_and_evaluate(config, tmp_path, PairIterator(config.batch_size, config.dataset.crop_size))
  assert (tmp_path / "config.json").read_text() == before
