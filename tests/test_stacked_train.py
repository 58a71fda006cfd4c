"""Stacked training: R runs of one config in one vmapped program end where each run ends alone.

The runs use the config of conftest's trained_workdir (so each run alone loads its compiled step from the test
run's compilation cache) on the 4 fake devices, i.e. the sharded path; the stacked program is compiled once and
shared by every test here.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from bdirnet_jax import checkpoint
from bdirnet_jax import config_validation
from bdirnet_jax import input_pipeline
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import stacked_train
from bdirnet_jax import train
from bdirnet_jax import writers
from tests.fakes import PairIterator
from tests.fakes import trained_workdir_config

SEEDS = (0, 1)


def _config(seed, **dataset):
  config = trained_workdir_config()
  config.seed = seed
  config.dataset.update(dataset)
  return config


def _iterator(config):
  """Each run's own data: PairIterator seeded by the run's seed."""
  return PairIterator(config.batch_size, config.dataset.crop_size, seed=config.seed)


class _Recorder:
  """Stands in for a clu writer: keeps every scalar written, by workdir."""

  log: dict = {}

  def __init__(self, workdir, process_index):
    del process_index
    self.scalars = self.log.setdefault(str(workdir), {})

  def write_scalars(self, step, scalars):
    self.scalars.setdefault(int(step), {}).update({k: float(v) for k, v in scalars.items()})

  def __getattr__(self, name):
    return lambda *args, **kwargs: None


def _float_leaves(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree) if np.issubdtype(np.asarray(x).dtype, np.floating)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Each seed trained alone through train.train_and_evaluate, and both stacked; metrics recorded per workdir."""
  root = tmp_path_factory.mktemp("stacked")
  configs = [_config(s) for s in SEEDS]
  _Recorder.log = {}
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(writers, "create_writer", _Recorder)
    alone = [train.train_and_evaluate(c, root / f"alone{c.seed}", _iterator(c)) for c in configs]
    workdirs = [root / f"stacked{c.seed}" for c in configs]
    timings = {}
    stacked = stacked_train.train_stacked(configs, workdirs, root / "stack", [_iterator(c) for c in configs], timings)
  init = train.programs(configs[0], sharding_lib.create_mesh((-1, 1)), jax.random.key(0))[4]
  initial = [init(jax.random.split(jax.random.key(c.seed))[0]) for c in configs]
  return dict(
    root=root,
    configs=configs,
    alone=jax.device_get(alone),
    initial=jax.device_get(initial),
    stacked=jax.device_get(stacked),
    stacked_shardings=jax.tree.map(lambda x: x.sharding, stacked),
    workdirs=workdirs,
    metrics=dict(_Recorder.log),
    timings=timings,
  )


def test_each_stacked_run_equals_the_run_trained_alone(runs):
  """From the same init, 4 steps alone or stacked differ by float rounding only: a run fed another run's batches,
  rng, schedule step or EMA would differ by a whole update."""
  assert jax.device_count() == 4  # the sharded path: every run's batch is split over 4 devices
  assert all(s.spec == P() for s in jax.tree.leaves(runs["stacked_shardings"]))  # runs axis replicated
  stacked = runs["stacked"]
  assert list(np.asarray(stacked.step)) == [4, 4]
  for r, (alone, initial) in enumerate(zip(runs["alone"], runs["initial"])):
    mine = jax.tree.map(lambda x, r=r: x[r], stacked)
    moved = np.concatenate(
      [np.abs(a - b).ravel() for a, b in zip(_float_leaves(alone.params), _float_leaves(initial.params))]
    )
    step = np.median(moved)  # measured 1.5e-3: a parameter's typical move in 4 steps
    assert step > 1e-4, step
    for name in ("params", "ema_params", "opt_state"):
      diff = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(_float_leaves(getattr(alone, name)), _float_leaves(getattr(mine, name)))]
      )
      # Measured (params): median 2.2e-8, 99th percentile 5.4e-6, max 1.9e-4, where Adam turns the first steps'
      # ~1e-8 gradients of the zero-initialised output conv into full-size updates (tests/test_train.py). Bounds:
      # median 1/1000 of a move (65x the measured), 99th percentile 1/20 (13x), max 1e-3 (5x).
      assert np.median(diff) < step / 1000, (name, np.median(diff))
      assert np.quantile(diff, 0.99) < step / 20, (name, np.quantile(diff, 0.99))
      assert diff.max() < 1e-3, (name, diff.max())
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(mine)):
      if not np.issubdtype(np.asarray(a).dtype, np.floating):
        np.testing.assert_array_equal(a, b)  # step, NaN counter, Adam's count


def test_each_stacked_run_logs_the_losses_of_the_run_alone(runs):
  for config, workdir in zip(runs["configs"], runs["workdirs"]):
    alone = runs["metrics"][str(runs["root"] / f"alone{config.seed}")]
    mine = runs["metrics"][str(workdir)]
    assert sorted(mine) == sorted(alone) == [2, 4]
    for step in alone:
      assert set(mine[step]) == set(alone[step]) - {"steps_per_sec", "uptime"}  # the stack folder logs the pace
      for key in ("loss", "psnr", "input_psnr", "learning_rate"):
        np.testing.assert_allclose(mine[step][key], alone[step][key], rtol=1e-5, err_msg=f"{key} at step {step}")
  seed0, seed1 = (runs["metrics"][str(w)] for w in runs["workdirs"])
  assert seed0[2]["loss"] != seed1[2]["loss"]  # the runs saw different data


def test_run_workdirs_are_written_as_a_single_run_writes_them(runs):
  for config, workdir in zip(runs["configs"], runs["workdirs"]):
    alone = runs["root"] / f"alone{config.seed}"
    assert (workdir / "config.json").read_text() == (alone / "config.json").read_text()
    data = "checkpoints/4/data/process_0-of-1.json"
    assert json.loads((workdir / data).read_text()) == json.loads((alone / data).read_text()) == {"index": 4}
    params, step, _ = checkpoint.restore_params(str(workdir))
    assert step == 4
    r = runs["configs"].index(config)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(runs["stacked"].ema_params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[r])
  assert {"setup_s", "compile_s", "train_s", "export_s"} <= set(runs["timings"])


def test_interrupted_stack_resumes_bit_identical_to_the_uninterrupted_one(runs, tmp_path, monkeypatch):
  configs = runs["configs"]
  workdirs = [tmp_path / f"run{c.seed}" for c in configs]

  def sigterm_at_step_2(self, step, manager):
    del manager
    self.stopped = step == 2
    return self.stopped

  with monkeypatch.context() as mp:
    mp.setattr(train._Preemption, "reached", sigterm_at_step_2)  # pylint: disable=protected-access
    with pytest.raises(stacked_train.Interrupted, match="stopped at step 2"):
      stacked_train.train_stacked(configs, workdirs, tmp_path / "stack", [_iterator(c) for c in configs])
  assert (tmp_path / "stack" / "checkpoints" / "2").exists()
  assert not any((w / "checkpoints").exists() for w in workdirs)  # nothing half-done in the runs' workdirs
  resumed = stacked_train.train_stacked(configs, workdirs, tmp_path / "stack", [_iterator(c) for c in configs])
  for a, b in zip(jax.tree.leaves(runs["stacked"]), jax.tree.leaves(jax.device_get(resumed))):
    np.testing.assert_array_equal(a, b)
  for workdir, reference in zip(workdirs, runs["workdirs"]):
    mine, _, _ = checkpoint.restore_params(str(workdir))
    theirs, _, _ = checkpoint.restore_params(str(reference))
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The same stack folder with other members is refused before anything runs.
  with pytest.raises(config_validation.ConfigError, match="lists other runs"):
    stacked_train.train_stacked(configs, workdirs[::-1], tmp_path / "stack", [_iterator(c) for c in configs])


def test_one_stacked_step_from_trained_states_matches_each_step_alone(runs):
  """The vmapped step itself, from trained states (no Adam amplification of ~1e-8 gradients): as tight as the
  sharded-against-one-device step test."""
  config = runs["configs"][0]
  mesh = sharding_lib.create_mesh((-1, 1))
  _, tx, _, shardings, _, step1, replicate = train.programs(config, mesh, jax.random.key(0))
  _, _, _, _, _, stack, step_r, _ = stacked_train.programs(config, mesh, len(SEEDS))
  # A fresh optimizer state restarts the schedule (learning rates 0, 1e-3, 2e-3), as in tests/test_train.py.
  warm = [s.replace(opt_state=jax.device_get(tx.init(s.params))) for s in runs["alone"]]
  rngs = [jax.random.split(jax.random.key(c.seed))[1] for c in runs["configs"]]
  data = [_iterator(c) for c in runs["configs"]]
  for it in data:
    it.set_state({"index": 4})
  batches = [[next(it) for _ in range(3)] for it in data]

  alone = []
  for r, state in enumerate(warm):
    state = jax.device_put(state, shardings)
    for batch in batches[r]:
      state, metrics = step1(
        state, input_pipeline.make_global_batch(batch, sharding_lib.batch_sharding(mesh)), replicate(rngs[r])
      )
    alone.append((jax.device_get(state), float(metrics["loss"])))

  state = stack(*[jax.device_put(s, shardings) for s in warm])
  for k in range(3):
    batch = {key: np.stack([b[k][key] for b in batches]) for key in batches[0][k]}
    state, metrics = step_r(
      state, input_pipeline.make_global_batch(batch, stacked_train.batch_sharding(mesh)), replicate(jnp.stack(rngs))
    )
  state = jax.device_get(state)
  atol = 2e-6  # tests/test_train.py's bound for 4 devices against 1
  for r, (single, loss) in enumerate(alone):
    moved = np.concatenate(
      [np.abs(a - b).ravel() for a, b in zip(_float_leaves(single.params), _float_leaves(warm[r].params))]
    )
    assert np.median(moved) > 500 * atol, np.median(moved)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(b)[r], a, atol=atol, rtol=0)
    np.testing.assert_allclose(float(metrics["loss"][r]), loss, rtol=1e-5)


def test_configs_whose_programs_differ_are_refused_by_field():
  seeds_and_blurs = [_config(0, blur_family="gaussian"), _config(1, blur_family="mixed")]
  seeds_and_blurs[1].log_every_steps = 1
  stacked_train.check_stackable(seeds_and_blurs)  # run-only fields: accepted
  other = _config(1)
  other.optim.learning_rate = 1e-3
  with pytest.raises(
    config_validation.ConfigError, match=r"config\.optim\.learning_rate differs \(0.002 against 0.001\)"
  ):
    stacked_train.check_stackable([_config(0), other])
  crop = _config(1, crop_size=64)
  with pytest.raises(config_validation.ConfigError, match=r"config\.dataset\.crop_size differs"):
    stacked_train.check_stackable([_config(0), crop])


def test_a_run_trained_alone_part_of_the_way_is_not_stacked(trained_workdir, tmp_path):
  workdir = tmp_path / "alone"
  shutil.copytree(trained_workdir, workdir)
  configs = [_config(0), _config(1)]
  with pytest.raises(config_validation.ConfigError, match="checkpoint of step 4 that .* did not write"):
    stacked_train.train_stacked(configs, [workdir, tmp_path / "new"], tmp_path / "stack")
  assert not (tmp_path / "stack" / "checkpoints").exists()
  configs[1].init_from = str(trained_workdir)  # a fine-tune is trained alone
  with pytest.raises(config_validation.ConfigError, match="stacked training starts from fresh params"):
    stacked_train.train_stacked(configs, [tmp_path / "a", tmp_path / "b"], tmp_path / "stack")


def test_study_groups_unstarted_runs_of_one_program(tmp_path, monkeypatch):
  """Up to N unstarted runs per program key, in the study's order; finished, part-trained and lone runs are left
  to the single-run loop."""
  calls = []
  monkeypatch.setattr(
    stacked_train,
    "train_stacked",
    lambda configs, workdirs, stack_dir, timings: (
      calls.append(([c.seed for c in configs], [w.rsplit("/", 1)[-1] for w in workdirs], stack_dir)),
      timings.update(setup_s=0, compile_s=0, train_s=0, export_s=0),
    ),
  )
  a = [(_config(s, blur_family="gaussian" if s % 2 else "mixed"), tmp_path / f"a{s}") for s in range(5)]
  b = [(_config(s, crop_size=64), tmp_path / f"b{s}") for s in range(2)]
  steps = {"a1": 4, "b0": 2}  # a1 finished, b0 trained alone part of the way
  done = stacked_train.train_unfinished(
    [a[0], b[0], a[1], b[1], a[2], a[3], a[4]], 2, tmp_path / "stacked", lambda w: steps.get(w.name)
  )
  assert [c[:2] for c in calls] == [([0, 2], ["a0", "a2"]), ([3, 4], ["a3", "a4"])]
  assert len({c[2] for c in calls}) == 2 and all(c[2].startswith(str(tmp_path / "stacked")) for c in calls)
  assert len(done) == 2


def test_stacked_iterator_gives_each_run_its_own_pipeline_and_resumes(synthetic_blur_data_dir):
  """Each run's batches are those of its own pipeline (its seed, its blur family), and the saved position of
  the stack resumes every run."""
  configs = [
    _config(0, on_the_fly_blur=True, blur_family="gaussian", data_dir=str(synthetic_blur_data_dir), kernel_size=9),
    _config(1, on_the_fly_blur=True, blur_family="linear", data_dir=str(synthetic_blur_data_dir), kernel_size=9),
  ]
  alone = [input_pipeline.create_train_iterator(c) for c in configs]
  expected = [[next(it) for _ in range(3)] for it in alone]
  stacked = stacked_train.StackedIterator([input_pipeline.create_train_iterator(c) for c in configs])
  first = next(stacked)
  position = stacked.get_state()
  for k, batch in enumerate([first, next(stacked), next(stacked)]):
    for r in range(2):
      for key in ("sharp", "kernel"):
        np.testing.assert_array_equal(batch[key][r], expected[r][k][key])
  assert not np.array_equal(first["kernel"][0], first["kernel"][1])
  again = stacked_train.StackedIterator([input_pipeline.create_train_iterator(c) for c in configs])
  again.set_state(json.loads(json.dumps(position)))  # as the checkpoint stores it
  np.testing.assert_array_equal(next(again)["sharp"], np.stack([expected[r][1]["sharp"] for r in range(2)]))
  with pytest.raises(ValueError, match="holds 1 runs' positions, expected 2"):
    again.set_state({"runs": position["runs"][:1]})


@pytest.mark.slow
def test_stacked_benchmark_reports_run_steps_per_second(synthetic_blur_data_dir):
  """benchmarks/stacked_train.py end to end for a stack of 2 (its measurements: BENCHMARKS.md)."""
  from benchmarks import stacked_train as bench  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  config.num_train_steps = 4
  config.dataset.data_dir = str(synthetic_blur_data_dir)
  row = bench.measure(config, 2, steps=2, blurs=("gaussian", "linear"))
  assert set(bench.KEYS) <= set(row) and row["runs"] == 2
  assert row["step_run_steps_per_s"] > 0 and row["loop_run_steps_per_s"] > 0 and row["compile_s"] > 0
  assert row["host_ms_per_step"] >= 0
