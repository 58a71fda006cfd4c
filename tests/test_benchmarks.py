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
def test_run_all_quick_runs_every_benchmark_without_tensorflow(tmp_path):
  out, md = tmp_path / "bench.json", tmp_path / "bench.md"
  blocked = _blocked_modules(tmp_path / "blocked")
  import os  # pylint: disable=g-import-not-at-top

  pythonpath = os.pathsep.join(p for p in (blocked, os.environ.get("PYTHONPATH")) if p)
  rows = run_all.run(quick=True, out=str(out), md=str(md), timeout=600, env={"PYTHONPATH": pythonpath})
  doc = json.loads(out.read_text())
  assert doc["rows"] == rows and doc["quick"] and not doc["skipped"]
  assert doc["machine"]["device_kind"] and doc["machine"]["jax"]

  train = {r["model"]: r for r in rows if r["bench"] == "train"}
  assert set(train) == {run_all.BDIRNET, run_all.UNET}
  for r in train.values():
    assert r["step_ms"] > 0 and r["images_per_s"] > 0 and r["compile_s"] > 0 and r["flops_per_step"] > 1e6
  # the baseline has no sharp view, SAID or SAIR: fewer FLOPs per training image than BDIRNet at the same preset
  per_image = {m: r["flops_per_step"] / r["batch"] for m, r in train.items()}
  assert per_image[run_all.UNET] < per_image[run_all.BDIRNET]

  inference = [r for r in rows if r["bench"] == "inference" and "ms_per_image" in r]
  assert {(r["model"], r["dtype"]) for r in inference} == {
    (run_all.BDIRNET, "float32"),
    (run_all.BDIRNET, "bfloat16"),
    (run_all.UNET, "float32"),
  }
  assert {r["size"] for r in inference} >= {"64x64", "96x80@64"}
  assert all(r["ms_per_image"] > 0 and r["images_per_s"] > 0 for r in inference)
  assert any("compilations" in r for r in rows if r["bench"] == "inference")
  pipeline = [r for r in rows if r["bench"] == "input_pipeline"]
  assert pipeline and all(r["crops_per_s"] > 0 for r in pipeline)

  summary = {s["measurement"]: s for s in doc["summary"]}
  fps = summary["train step float32: images/s"]["values"]
  assert fps[run_all.BDIRNET] == train[run_all.BDIRNET]["images_per_s"]
  assert fps[run_all.UNET] == train[run_all.UNET]["images_per_s"]
  unet_batch = next(r["batch"] for r in inference if r["model"] == run_all.UNET)  # 1, rounded up to the devices
  assert summary[f"inference 64x64 float32 batch {unet_batch}: device ms/image"]["values"][run_all.UNET] > 0
  assert summary["input pipeline / BDIRNet train images/s"]["values"][run_all.BDIRNET] > 0
  text = md.read_text()
  assert "| train step float32: images/s |" in text and "#### inference" in text and "#### input_pipeline" in text


def test_summary_and_markdown_of_a_full_run_cover_every_issue_row():
  """The GPU plan's rows, made up, give every measurement of the GPU plan side by side with its target."""
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


def test_gpu_plan_is_ordered_by_priority_and_needs_no_tensorflow():
  plan = run_all._plan(quick=False, cpus=16)  # pylint: disable=protected-access
  assert [p["bench"] for p in plan[:2]] == ["train", "train"]
  assert all("--dtype=bfloat16" in p["cmd"] for p in plan[:2])
  assert {p["model"] for p in plan if p["bench"] == "inference"} == {run_all.BDIRNET, run_all.UNET}
  assert all(p["cmd"][0] in ("train_step.py", "inference.py", "input_pipeline.py") for p in plan)
