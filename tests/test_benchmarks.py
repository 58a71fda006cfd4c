"""Every benchmark script runs end to end for a couple of steps, so none can rot (numbers: BENCHMARKS.md)."""

import json

import pytest

from benchmarks import run_all

# The GPU image has none of these (BENCHMARKS.md "GPU run"): the benchmarks must not need them.
ABSENT_ON_GPU = ("tensorflow", "tensorflow_datasets", "clu")


def _blocked_modules(root):
  """A PYTHONPATH entry under which importing any of ABSENT_ON_GPU raises ImportError, as on the GPU image."""
  for name in ABSENT_ON_GPU:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: absent on the GPU image')\n")
  return str(root)


@pytest.mark.slow
def test_run_all_quick_runs_every_row_without_tensorflow(tmp_path):
  out, md, jsonl = tmp_path / "bench.json", tmp_path / "bench.md", tmp_path / "rows.jsonl"
  blocked = _blocked_modules(tmp_path / "blocked")
  import os  # pylint: disable=g-import-not-at-top

  pythonpath = os.pathsep.join(p for p in (blocked, os.environ.get("PYTHONPATH")) if p)
  rows = run_all.run(quick=True, out=str(out), md=str(md), jsonl=str(jsonl), env={"PYTHONPATH": pythonpath})
  doc = json.loads(out.read_text())
  assert doc["rows"] == rows and doc["quick"] and not doc["failures"], doc["failures"]
  assert doc["machine"]["device_kind"] and doc["machine"]["jax"]
  # the one GPU-only row is skipped with its reason, and every row (skipped ones too) is in the JSON lines
  assert [s["variant"] for s in doc["skipped"]] == ["autotune_level=0"] and doc["skipped"][0]["skipped"]
  lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
  assert len(lines) == len(rows) + len(doc["skipped"])

  train = {r["model"]: r for r in rows if r["bench"] == "train" and not r.get("variant")}
  assert set(train) == {run_all.BDIRNET, run_all.UNET}
  for r in train.values():
    assert r["step_ms"] > 0 and r["images_per_s"] > 0 and r["compile_s"] > 0
    # counted apart on the host's CPU backend and filled in
    assert r["flops_per_step"] > 1e6 and r["tflops_per_s"] > 0 and "flops row" in r["flops_source"]
  # the baseline has no sharp view, SAID or SAIR: fewer FLOPs per training image than BDIRNet at the same preset
  per_image = {m: r["flops_per_step"] / r["batch"] for m, r in train.items()}
  assert per_image[run_all.UNET] < per_image[run_all.BDIRNET]
  cached = next(r for r in rows if r.get("variant") == "persistent cache, 2nd process")
  assert cached["compilation_cache"] and cached["compile_s"] > 0

  inference = [r for r in rows if r["bench"] == "inference" and "ms_per_image" in r]
  # batches 1 (row 2) and 2 (row 7), each rounded up to the 4 test devices
  assert (
    sorted((r["size"], r["batch"], r["dtype"]) for r in inference if not r["tile"]) == [("64x64", 4, "bfloat16")] * 2
  )
  assert {r["size"] for r in inference} >= {"64x64", "96x80@64"}
  assert all(r["ms_per_image"] > 0 and r["images_per_s"] > 0 for r in inference)
  assert all(r["device_ms_per_image"] > 0 and r["compile_s"] is not None for r in inference if not r["tile"])
  assert any("compilations" in r for r in rows if r["bench"] == "inference")
  profile = next(r for r in rows if r["bench"] == "profile")
  assert 0 < len(profile["top"]) <= 10 and profile["device_ms_per_step"] > 0
  pipeline = [r for r in rows if r["bench"] == "input_pipeline"]
  assert pipeline and all(r["crops_per_s"] > 0 for r in pipeline)

  summary = {s["measurement"]: s for s in doc["summary"]}
  fps = summary["train step float32: images/s"]["values"]
  assert fps[run_all.BDIRNET] == train[run_all.BDIRNET]["images_per_s"]
  assert fps[run_all.UNET] == train[run_all.UNET]["images_per_s"]
  assert summary["inference 64x64 bfloat16 batch 4: device ms/image"]["values"][run_all.BDIRNET] > 0
  assert summary["input pipeline / BDIRNet train images/s"]["values"][run_all.BDIRNET] > 0
  text = md.read_text()
  assert "| train step float32: images/s |" in text and "#### inference" in text and "#### input_pipeline" in text
  assert "#### profile: top kernels" in text and "Skipped (a GPU-only XLA flag" in text


def test_summary_and_markdown_of_a_full_run_cover_every_target_row():
  """The GPU plan's rows, made up, give every measurement side by side with its target."""
  rows = []
  for i, model in enumerate((run_all.BDIRNET, run_all.UNET)):
    for dtype in ("bfloat16", "float32"):
      rows.append(
        dict(
          bench="train",
          model=model,
          dtype=dtype,
          images_per_s=300.0 + i,
          tflops_per_s=50.0,
          compile_s=40.0,
          peak_bytes=3.8e10,
          flops_per_step=5.6e12,
          batch=32,
          device_kind="H100",
          jax_version="0.11.2",
          command="x",
        )
      )
      for size in ("256x256", "720x1280"):
        for batch in (1, 8):
          rows.append(
            dict(
              bench="inference",
              model=model,
              dtype=dtype,
              size=size,
              batch=batch,
              ms_per_image=9.0,
              device_ms_per_image=6.0,
              device_kind="H100",
              command="y",
            )
          )
  rows.append(dict(bench="input_pipeline", workers=8, on_the_fly_blur=True, crops_per_s=1500.0, command="z"))
  names = [s["measurement"] for s in run_all.summary(rows)]
  for dtype in ("bfloat16", "float32"):
    for what in ("images/s", "model TFLOP/s", "compile s", "peak memory GB"):
      assert f"train step {dtype}: {what}" in names
    for size in ("256x256", "720x1280"):
      for batch in (1, 8):
        assert f"inference {size} {dtype} batch {batch}: device ms/image" in names
  text = run_all.markdown(rows)
  assert "| inference 720x1280 bfloat16 batch 8: device ms/image | 6 | 6 | 1 | <= 7 |" in text
  assert "| train step bfloat16: model TFLOP/s | 50 | 50 | 1 | >= 65 |" in text
  assert "| input pipeline / BDIRNet train images/s | 5 |" in text
  assert "H100" in text.splitlines()[0]


def test_gpu_plan_fits_one_sitting_most_important_rows_first():
  plan = run_all._plan(quick=False, cpus=16)  # pylint: disable=protected-access
  first = plan[0]
  assert (first["bench"], first["model"]) == ("train", run_all.BDIRNET) and "--dtype=bfloat16" in first["cmd"]
  second = plan[1]
  assert second["bench"] == "inference" and "--sizes=720x1280" in second["cmd"] and "--batches=1" in second["cmd"]
  assert "--dtype=bfloat16" in second["cmd"] and "--preset=base" in second["cmd"]
  assert (plan[2]["bench"], plan[2]["model"]) == ("train", run_all.UNET)
  assert all(p["cmd"][0] in ("train_step.py", "inference.py", "input_pipeline.py", "profile_step.py") for p in plan)
  # the rows that need the device get their own caps; the minimum a row needs fits what the budget leaves it
  device = [p for p in plan if not p.get("background")]
  assert all(p["cap"] >= p["min_s"] > 0 for p in device)
  assert sum(p["min_s"] for p in device[:4]) <= 470
  # the cache row reads what row 1 wrote
  cache_rows = [p for p in plan if p.get("env", {}).get("JAX_COMPILATION_CACHE_DIR")]
  assert cache_rows[0] is first and any(p.get("variant") == "persistent cache, 2nd process" for p in cache_rows)


def test_rows_past_the_budget_are_skipped_with_the_reason(tmp_path):
  jsonl = tmp_path / "rows.jsonl"
  rows = run_all.run(quick=True, only=["input"], jsonl=str(jsonl), budget=1e-3)
  assert rows == []
  (line,) = [json.loads(x) for x in jsonl.read_text().splitlines()]
  assert line["bench"] == "input" and "budget" in line["skipped"]


def test_model_flops_are_counted_when_the_backend_cost_analysis_returns_nothing(monkeypatch):
  """A GPU backend's cost analysis returned None on the H200; the count must not depend on it."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import train_step  # pylint: disable=g-import-not-at-top

  config = train_step.load_config("configs/tiny.py")
  xla, source = train_step.model_flops(config)
  assert source == "xla_cost_analysis_cpu" and xla > 1e6
  monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: None)
  monkeypatch.setattr(jax.stages.Compiled, "cost_analysis", lambda self: None)
  counted, source = train_step.model_flops(config)
  assert source == "jaxpr_conv_dot"
  # convolutions and matmuls are nearly all of the model's work (BENCHMARKS.md: within 4% of XLA's count)
  assert abs(counted - xla) < 0.1 * xla


def test_gpu_sitting_script_runs_its_plan_and_leaves_every_file_in_out(tmp_path):
  """The prepared GPU call's CPU path: one cheap row, the files that come back, and the reason a row is skipped."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  out = tmp_path / "out"
  env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, WHEELS=str(tmp_path / "none"), BUDGET="200")
  r = subprocess.run(
    ["bash", "benchmarks/gpu_sitting.sh", "--quick", "--only=input"],
    cwd=run_all.ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  assert {"rows.jsonl", "bench.json", "bench.md", "run_all.log", "gpu.txt"} <= {p.name for p in out.iterdir()}
  rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
  assert rows and all(r["bench"] == "input_pipeline" and r["crops_per_s"] > 0 for r in rows)
  assert "jax" in (out / "gpu.txt").read_text()
