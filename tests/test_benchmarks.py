"""Every benchmark script runs end to end for a couple of steps, so none can rot (numbers: BENCHMARKS.md)."""
import json

import pytest

from benchmarks import run_all


@pytest.mark.slow
def test_run_all_quick_runs_every_benchmark_and_reports_numbers(tmp_path):
  out = tmp_path / "bench.jsonl"
  rows = run_all.run(quick=True, out=str(out), timeout=600)
  assert [json.loads(line) for line in out.read_text().splitlines()] == rows
  train = [r for r in rows if r["bench"] == "train"]
  assert len(train) == 1 and train[0]["step_ms"] > 0 and train[0]["images_per_s"] > 0
  assert train[0]["flops_per_step"] > 1e6 and train[0]["compile_s"] > 0
  inference = [r for r in rows if r["bench"] == "inference" and "ms_per_image" in r]
  assert {r["size"] for r in inference} >= {"64x64", "96x80@64"}
  assert all(r["ms_per_image"] > 0 and r["images_per_s"] > 0 for r in inference)
  assert any("compilations" in r for r in rows if r["bench"] == "inference")
  pipeline = [r for r in rows if r["bench"] == "input_pipeline"]
  assert pipeline and all(r["crops_per_s"] > 0 for r in pipeline)
