"""benchmarks/train_loop.py runs the training loop's pieces end to end for a few steps and reports finite numbers
(its measurements: BENCHMARKS.md)."""

import math

import pytest

from benchmarks import train_loop


@pytest.mark.slow
def test_train_loop_benchmark_reports_every_key(synthetic_blur_data_dir):
  from configs import tiny  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  config.num_train_steps = 4  # the schedule horizon of the other on-the-fly tiny runs: one compiled step for all
  config.dataset.data_dir = str(synthetic_blur_data_dir)
  row = train_loop.measure(config, steps=3)
  assert set(train_loop.KEYS) <= set(row)
  assert set(row["host_breakdown_ms"]) == set(train_loop.BREAKDOWN)
  assert all(v >= 0 and math.isfinite(v) for v in row["host_breakdown_ms"].values())
  assert row["host_breakdown_ms"]["decode"] > 0 and row["host_breakdown_ms"]["dispatch"] > 0
  assert row["loop_steps_per_s"] > 0 and row["step_steps_per_s"] > 0 and row["host_ms_per_step"] >= 0
  assert math.isfinite(row["ratio"]) and row["ratio"] > 0
  assert row["ratio"] == pytest.approx(row["loop_steps_per_s"] / row["step_steps_per_s"], rel=1e-2)
