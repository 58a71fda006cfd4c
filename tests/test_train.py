"""The train step and loop: learning, sharding invariance and exact resume.

Every test here trains the tiny model with the config of conftest's trained_workdir (or resumes that workdir), so
the run compiles its train step once per device count and loads it from the compilation cache afterwards.
"""

import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import input_pipeline
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train
from bdirnet_jax.data_config import dataset_config
from bdirnet_jax.train_state import create_train_state
from bdirnet_jax.train_state import ema_decay
from bdirnet_jax.train_state import learning_rate_schedule
from bdirnet_jax.train_step import jit_train_step
from configs import tiny
from tests.fakes import PairIterator
from tests.fakes import trained_workdir_config


def _step_setup(config, devices):
  """(mesh, init_rng, step_rng, model, tx, shardings, init, step) as the training loop builds them."""
  mesh = sharding_lib.create_mesh((-1, 1), devices=devices)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  model, tx, _, shardings, init = train.create_state(config, mesh, init_rng)
  step_rng = jax.jit(lambda key: key, out_shardings=sharding_lib.replicated(mesh))(step_rng)  # as train.py does
  return mesh, init_rng, step_rng, model, tx, shardings, init, jit_train_step(model, tx, config, mesh, shardings)


def _run_steps(config, devices, num_steps, seed=0, state=None, start=0):
  mesh, init_rng, step_rng, _, _, shardings, init, step = _step_setup(config, devices)
  state = init(init_rng) if state is None else jax.device_put(state, shardings)
  data = PairIterator(config.batch_size, config.dataset.crop_size, seed=seed)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  data.set_state({"index": start})
  history = []
  for _ in range(num_steps):
    state, metrics = step(state, input_pipeline.make_global_batch(next(data), batch_sharding), step_rng)
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def test_ema_warms_up_from_the_first_updates():
  """EMA after 3 updates equals the warm-up recursion e_t = d_t e_{t-1} + (1 - d_t) p_t, d_t = min(d, (1+t)/(10+t))."""
  config = trained_workdir_config()
  decays = [float(ema_decay(config, t)) for t in range(3)]
  assert decays == pytest.approx([0.1, 2 / 11, 3 / 12])
  config.optim.ema_warmup = False
  assert float(ema_decay(config, 0)) == pytest.approx(config.optim.ema_decay)
  config.optim.ema_warmup = True
  mesh, init_rng, step_rng, _, _, _, init, step = _step_setup(config, jax.devices()[:1])
  state = init(init_rng)
  data = PairIterator(config.batch_size, config.dataset.crop_size)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  expected = jax.device_get(state.params)
  for t in range(3):
    state, _ = step(state, input_pipeline.make_global_batch(next(data), batch_sharding), step_rng)
    params = jax.device_get(state.params)
    expected = jax.tree.map(lambda e, p, d=decays[t]: d * e + (1 - d) * p, expected, params)
  for got, want in zip(jax.tree.leaves(jax.device_get(state.ema_params)), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # After 3 updates the EMA is mostly the trained params, not the initialisation (which it was at 0.999^3).
  moved = [
    np.abs(p - i).sum() for p, i in zip(jax.tree.leaves(params), jax.tree.leaves(jax.device_get(init(init_rng).params)))
  ]
  ema_moved = [
    np.abs(e - i).sum()
    for e, i in zip(
      jax.tree.leaves(jax.device_get(state.ema_params)), jax.tree.leaves(jax.device_get(init(init_rng).params))
    )
  ]
  assert sum(ema_moved) > 0.5 * sum(moved)


def test_schedule_horizon_is_fixed_at_start_so_extending_does_not_jump():
  config = tiny.get_config()
  config.num_train_steps = 100
  config.optim.warmup_steps = 10
  config.optim.schedule_steps = 100
  lr = learning_rate_schedule(config)
  config.num_train_steps = 200  # raised on resume: the stored horizon still rules
  extended = learning_rate_schedule(config)
  end = config.optim.learning_rate * config.optim.min_lr_ratio
  assert float(extended(99)) == pytest.approx(float(lr(99)))
  assert float(extended(150)) == pytest.approx(end, rel=1e-4)
  assert float(extended(100)) <= float(lr(98))  # never back up the cosine


def _copy(workdir, tmp_path):
  """A writable copy of the shared trained_workdir (4 steps, horizon 4, checkpoint at step 4)."""
  return shutil.copytree(workdir, tmp_path / "workdir")


def test_resumed_run_keeps_its_horizon_and_refuses_another(trained_workdir, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  assert checkpoint.load_config(workdir).optim.schedule_steps == 4  # a new run fixed it to its num_train_steps
  config = trained_workdir_config()
  config.num_train_steps = 5
  train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))
  assert config.optim.schedule_steps is None  # the caller's config is not modified
  saved = checkpoint.load_config(workdir)
  assert saved.optim.schedule_steps == 4 and saved.num_train_steps == 5
  config.num_train_steps = 6
  config.optim.schedule_steps = 6
  with pytest.raises(config_validation.ConfigError, match="schedule_steps=6 differs from the 4"):
    train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))


def test_sharded_step_on_4_devices_matches_1_device():
  assert jax.device_count() == 4
  config = trained_workdir_config()
  # Warm start: the zero-initialised ending conv makes the first upstream gradients ~1e-8, where Adam turns
  # float32 reduction-order noise into full-size updates; from a trained state the comparison is meaningful.
  warm, _ = _run_steps(config, jax.devices()[:1], 5)
  # A fresh optimizer state restarts the schedule (horizon 4: learning rates 0, 1e-3, 2e-3 for the 3 steps)
  # instead of comparing at the floor rate 2e-6 past the horizon, where 3 steps move a parameter less than the
  # tolerance and only a loss difference could fail the test. Same compiled steps as trained_workdir's.
  tx = _step_setup(config, jax.devices()[:1])[4]
  warm = warm.replace(opt_state=jax.device_get(tx.init(warm.params)))
  state1, hist1 = _run_steps(config, jax.devices()[:1], 3, state=warm, start=5)
  state4, hist4 = _run_steps(config, jax.devices(), 3, state=warm, start=5)
  # Same math, different reduction order across devices. Measured: the 3 steps move a parameter by 2.1e-3
  # (median; max 3.0e-3) and the two device counts differ by at most 2.2e-7. Tolerance 2e-6 abs: 10x the measured
  # difference, 1/1000 of the median update, so a multi-device update off by 1% fails.
  atol = 2e-6
  moved = np.concatenate([np.abs(a - b).ravel() for a, b in zip(*map(jax.tree.leaves, (state1.params, warm.params)))])
  assert np.median(moved) > 500 * atol, np.median(moved)
  for a, b in zip(jax.tree.leaves(state1.params), jax.tree.leaves(state4.params)):
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)
  np.testing.assert_allclose(hist1[-1]["loss"], hist4[-1]["loss"], rtol=1e-5)


def test_batch_is_sharded_on_data_axis():
  mesh = sharding_lib.create_mesh((-1, 1))
  batch = input_pipeline.make_global_batch({"x": np.zeros((8, 4, 4, 3), np.uint8)}, sharding_lib.batch_sharding(mesh))
  shards = batch["x"].addressable_shards
  assert len(shards) == 4 and all(s.data.shape == (2, 4, 4, 3) for s in shards)


def test_resume_is_bit_identical_to_uninterrupted_run(trained_workdir, tmp_path):
  """Stopped at step 2 and resumed to 4, a run ends bit-identical to trained_workdir's uninterrupted 4 steps."""
  config = trained_workdir_config()
  config.optim.schedule_steps = 4  # the uninterrupted run's horizon; this one stops at step 2
  config.num_train_steps = 2
  workdir = tmp_path / "resumed"
  train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))
  assert (workdir / "checkpoints" / "2").exists() and (workdir / "config.json").exists()
  config.num_train_steps = 4  # raising num_train_steps continues training
  resumed = train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))
  assert int(resumed.step) == 4
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), resumed)
  with ocp.StandardCheckpointer() as checkpointer:
    straight = checkpointer.restore(epath.Path(trained_workdir) / "checkpoints" / "4" / "state", abstract)
  assert int(straight.step) == 4
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(straight, name)), jax.tree.leaves(getattr(resumed, name))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_init_from_starts_a_new_run_at_another_runs_params(trained_workdir, tmp_path):
  """A fine-tune (config.init_from) is the run that starts from the source's EMA params with a fresh optimizer:
  after 2 steps it equals those 2 steps taken by hand from that state. Same compiled step as trained_workdir's."""
  ema = jax.device_get(checkpoint.restore_params(str(trained_workdir))[0])  # host copies: the step donates its state
  config = trained_workdir_config()
  config.optim.schedule_steps = 4
  config.num_train_steps = 2
  config.init_from = str(trained_workdir)
  data = PairIterator(config.batch_size, config.dataset.crop_size)
  tuned = train.train_and_evaluate(config, tmp_path / "tuned", data)
  tx = _step_setup(config, jax.devices())[4]
  start = create_train_state(ema, tx)
  by_hand, _ = _run_steps(config, jax.devices(), 2, state=start)
  assert int(tuned.step) == 2
  for name in ("params", "ema_params", "opt_state"):
    for a, b in zip(jax.tree.leaves(getattr(by_hand, name)), jax.tree.leaves(getattr(tuned, name))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(tuned.params))]
  assert max(moved) > 1e-4  # it trained, from there

  # Another architecture or a missing source fails before compiling, naming the source.
  config.model.preset = "small"
  with pytest.raises(config_validation.ConfigError, match="init_from=.* do not fit this config's model"):
    train.train_and_evaluate(config, tmp_path / "other", PairIterator(config.batch_size, config.dataset.crop_size))
  config.model.preset = "tiny"
  config.init_from = str(tmp_path / "absent")
  with pytest.raises(config_validation.ConfigError, match="no such workdir or pretrained package"):
    train.train_and_evaluate(config, tmp_path / "other2", PairIterator(config.batch_size, config.dataset.crop_size))


def test_workdir_of_another_preset_is_refused(trained_workdir, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  before = (workdir / "config.json").read_text()
  config = trained_workdir_config()
  config.model.preset = "small"
  with pytest.raises(ValueError, match="different model"):
    train.train_and_evaluate(config, workdir, PairIterator(config.batch_size, config.dataset.crop_size))
  assert (workdir / "config.json").read_text() == before


def test_workdir_of_another_compute_dtype_is_refused(tmp_path):
  config = tiny.get_config()
  checkpoint.save_config(str(tmp_path), config)
  (tmp_path / "checkpoints" / "5").mkdir(parents=True)
  checkpoint.check_workdir_model(str(tmp_path), config)
  config.compute_dtype = "bfloat16"
  with pytest.raises(config_validation.ConfigError, match="compute_dtype='float32', not 'bfloat16'"):
    checkpoint.check_workdir_model(str(tmp_path), config)


def test_weight_decay_hits_kernels_only():
  """AdamW with zero gradients moves exactly the conv/dense kernels; SAID's gamma/beta, the NAFBlock residual
  scales, norms and biases stay (decaying them would pull blocks and statistics towards off)."""
  from bdirnet_jax.models import create_model
  from bdirnet_jax.train_state import create_optimizer
  from bdirnet_jax.train_state import weight_decay_mask

  config = tiny.get_config()
  config.optim.weight_decay = 0.5
  config.optim.warmup_steps = 0
  x = np.zeros((1, 16, 16, 3), np.float32)
  params = jax.eval_shape(create_model(config.model).init, jax.random.key(0), x, x)["params"]
  params = jax.tree.map(lambda s: np.ones(s.shape, np.float32), params)
  tx = create_optimizer(config)
  updates, _ = tx.update(jax.tree.map(np.zeros_like, params), tx.init(params), params)
  flat = jax.tree_util.tree_flatten_with_path(updates)[0]
  names = {jax.tree_util.keystr(path): (path[-1].key, float(np.abs(u).max())) for path, u in flat}
  assert {n for n, _ in names.values()} >= {"kernel", "bias", "gamma", "beta"}
  for where, (leaf, moved) in names.items():
    assert (moved > 0) == (leaf == "kernel"), where
  assert any("said" in w.lower() and leaf == "gamma" for w, (leaf, _) in names.items())
  config.optim.weight_decay_on = "all"
  everything = jax.tree.leaves(weight_decay_mask(params, "all"))
  assert all(everything) and len(everything) == len(names)
  config.optim.weight_decay_on = "biases"
  with pytest.raises(config_validation.ConfigError, match="optim.weight_decay_on"):
    config_validation.validate(config)


def test_eval_every_steps_scores_the_state_of_that_step_and_writes_its_scalars(tmp_path, monkeypatch):
  """eval_every_steps=2 over 4 steps: an evaluation at step 2 (with step 2's EMA params, as its checkpoint holds
  them), the final one at step 4, none at the other steps; each one's scores reach the metric writer."""
  from bdirnet_jax import evaluate  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import writers  # pylint: disable=g-import-not-at-top

  calls, scalars = [], {}

  def evaluate_params(model, params, step, config, mesh, workdir, params_kind):
    del model, config, mesh
    calls.append((step, workdir is not None, params_kind, jax.device_get(params)))
    return {"fake_test": {"psnr": 20.0 + step, "ssim": 0.5, "input_psnr": 19.0, "input_ssim": 0.4, "protocol": "x"}}

  real_create_writer = writers.create_writer

  def create_writer(workdir, process_index):
    writer = real_create_writer(workdir, process_index)
    real_write = writer.write_scalars
    writer.write_scalars = lambda step, values: (scalars.setdefault(step, {}).update(values), real_write(step, values))
    return writer

  monkeypatch.setattr(evaluate, "evaluate_params", evaluate_params)
  monkeypatch.setattr(train.writers, "create_writer", create_writer)
  config = trained_workdir_config()  # its compiled step: eval and checkpoint fields are not part of it
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_datasets = [dataset_config(split="test", crop_size=0, label="fake")]  # evaluate_params stands in
  train.train_and_evaluate(config, tmp_path, PairIterator(config.batch_size, config.dataset.crop_size))
  assert [(step, final, kind) for step, final, kind, _ in calls] == [(2, False, "ema"), (4, True, "ema")]
  with ocp.StandardCheckpointer() as checkpointer:
    saved = checkpointer.restore(epath.Path(tmp_path) / "checkpoints" / "2" / "state")
  for a, b in zip(jax.tree.leaves(calls[0][3]), jax.tree.leaves(saved["ema_params"])):
    np.testing.assert_array_equal(a, b)
  assert scalars[2]["eval/fake_test/psnr"] == 22.0 and scalars[4]["eval/fake_test/psnr"] == 24.0
  assert not any(k.startswith("eval/") for step in (1, 3) for k in scalars.get(step, {}))


def _stack_blocks(tree):
  """Loop-stage params ({block_0, block_1, ...}) in the scanned layout ({scan: {block: stacked}})."""
  if not isinstance(tree, dict):
    return tree
  keys = sorted(tree)
  if keys and all(k.startswith("block_") for k in keys) and len(keys) > 1:
    return {"scan": {"block": jax.tree.map(lambda *a: np.stack(a), *[tree[f"block_{i}"] for i in range(len(keys))])}}
  return {k: _stack_blocks(v) for k, v in tree.items()}


def test_scan_and_remat_train_like_the_plain_loop_and_bf16_like_float32():
  """Scan over a 2-block middle stage with remat, started from the loop's init, follows the loop's losses and
  params over 3 steps (only float summation order differs); bfloat16 activations follow float32's losses."""
  devices = jax.devices()[:1]
  loop = trained_workdir_config()
  loop.model.middle_blocks = 2
  scanned = trained_workdir_config()
  scanned.model.update(middle_blocks=2, scan=True, remat=True)
  mesh, init_rng, _, _, _, _, init, _ = _step_setup(loop, devices)
  start = jax.device_get(init(init_rng))
  _, _, _, _, _, _, init_scanned, _ = _step_setup(scanned, devices)
  start_scanned = jax.device_get(init_scanned(init_rng)).replace(
    params=_stack_blocks(start.params), ema_params=_stack_blocks(start.ema_params)
  )
  end, history = _run_steps(loop, devices, 3, state=start)
  end_scanned, history_scanned = _run_steps(scanned, devices, 3, state=start_scanned)
  losses = np.array([m["loss"] for m in history])
  np.testing.assert_allclose([m["loss"] for m in history_scanned], losses, rtol=1e-5)
  moved = [
    np.abs(a - b).max()
    for a, b in zip(jax.tree.leaves(_stack_blocks(start.params)), jax.tree.leaves(end_scanned.params))
  ]
  for a, b in zip(jax.tree.leaves(_stack_blocks(end.params)), jax.tree.leaves(end_scanned.params)):
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-6)
  assert max(moved) > 1e-3  # the params moved far more than the tolerance (3 Adam steps near the peak rate)

  # bfloat16 activations from the same start, against the float32 loop above (one compile fewer than a float32
  # run of its own).
  bf16 = trained_workdir_config()
  bf16.model.middle_blocks = 2
  bf16.compute_dtype = "bfloat16"
  _, history_bf16 = _run_steps(bf16, devices, 3, state=start)
  bf16_losses = np.array([m["loss"] for m in history_bf16])
  assert np.all(np.isfinite(bf16_losses))
  np.testing.assert_allclose(bf16_losses, losses, rtol=0.02)
