"""Every benchmark in one command, for one GPU sitting of at most 8 minutes, or, with --quick, this CPU (smoke run).

  python benchmarks/run_all.py [--quick] [--out=FILE.json] [--md=FILE.md] [--jsonl=FILE.jsonl]
                               [--only=train,inference,compile,profile,input,flops] [--budget=SECONDS]

Runs each row of the plan in its own process (its own XLA flags and device memory peak) under its own time cap, in
priority order, and stops starting rows when the budget is spent. Every JSON line a row's process prints is
appended to `--jsonl` the moment it is printed, and every row that is skipped or fails is written there with the
reason, so a sitting cut short still returns what it measured; `--out` (machine, summary, every row) and `--md`
(the summary table, then one table per workload) are rewritten after each row. The GPU plan:

  1. train step, BDIRNet-base bf16 (configs/gopro.py: batch 32 of 256x256, scan), cold compile, writing the
     persistent compilation cache;
  2. inference, BDIRNet-base bf16, 720x1280, batch 1: compile seconds apart from device ms/frame and the predict
     path;
  3. train step, U-Net baseline base bf16 (configs/unet_baseline.py, same batch, crop and scan);
  4. compile from the persistent cache in a second process (row 1's step, compile only);
  5. profile of row 1's step (cache hit), the top 10 kernels;
  6. compile and step time with --xla_gpu_autotune_level=0;
  7. inference, BDIRNet-base bf16, 720x1280, batch 8;
  8. the input pipeline on the host's cores (grain, 256x256 crops, 0 and 8 workers, with and without blur).

Model FLOPs per step are counted on the host's CPU backend in a background process started after row 1 (so row 1's
compile has the host to itself), and model TFLOP/s is filled in from them for the train rows. `--quick` runs the
same plan with tiny sizes on the CPU (rows that only mean something on a GPU are skipped with the reason). Nothing
here imports TensorFlow, TensorFlow Datasets or clu; ml_collections and grain must be importable (on the GPU image:
carried wheels, BENCHMARKS.md). JAX_COMPILATION_CACHE_DIR is replaced by a fresh folder of this run's own, so row 1
compiles cold.
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
from absl import logging

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks import common  # noqa: E402

BDIRNET, UNET = "bdirnet", "unet_baseline"
MODEL_NAMES = {BDIRNET: "BDIRNet-base", UNET: "U-Net baseline (base)"}
TARGETS = {
  "train_tflops_bf16": 65.0,
  "infer_720p_bf16_b8_ms": 7.0,
  "compile_s": 30.0,
  "cache_compile_s": 5.0,
  "input_over_train": 2.0,
}
CACHE = "{cache}"  # replaced by the run's persistent compilation cache folder
WORKLOADS = ("train", "inference", "compile", "profile", "input", "flops")


def _plan(quick: bool, cpus: int) -> list[dict]:
  """The rows in priority order. cap: seconds the row may run; min_s: not started with less than this left."""
  cache = {"JAX_COMPILATION_CACHE_DIR": CACHE}
  if quick:
    bdir = ["train_step.py", "--config=configs/tiny.py", "--steps=2"]
    unet = ["train_step.py", "--config=configs/unet_baseline.py", "--preset=tiny", "--batch_size=4", "--crop=32"]
    infer = ["inference.py", "--preset=tiny", "--dtype=bfloat16", "--repeats=1", "--mixed=0", "--nomemory_check"]
    big, cap, flops_cfg = "64x64", 400, "configs/tiny.py"
    infer_b1 = [*infer, "--sizes=64x64,96x80@64", "--batches=1", "--mixed=4"]
    pipeline = ["input_pipeline.py", "--steps=2", "--warmup=1", "--workers=0", "--crop=64"]
    profile = ["profile_step.py", "--config=configs/tiny.py", "--steps=2"]
  else:
    bdir = ["train_step.py", "--config=configs/gopro.py", "--dtype=bfloat16", "--steps=15"]
    unet = ["train_step.py", "--config=configs/unet_baseline.py", "--preset=base", "--batch_size=32", "--crop=256"]
    unet += ["--scan=true", "--dtype=bfloat16"]
    infer = ["inference.py", "--preset=base", "--dtype=bfloat16", "--repeats=10", "--mixed=0", "--nomemory_check"]
    big, cap, flops_cfg = "720x1280", None, "configs/gopro.py"
    infer_b1 = [*infer, f"--sizes={big}", "--batches=1"]
    workers = sorted({0, min(8, max(2, cpus - 2))})
    pipeline = ["input_pipeline.py", "--steps=50", "--warmup=3", "--workers=" + ",".join(map(str, workers))]
    profile = ["profile_step.py", "--config=configs/gopro.py", "--dtype=bfloat16", "--steps=5"]

  def c(seconds):  # quick runs on a loaded 2-core CPU: one generous cap for every row
    return cap or seconds

  return [
    dict(bench="train", model=BDIRNET, cmd=[*bdir, "--nocount_flops"], env=cache, cap=c(200), min_s=60),
    dict(bench="inference", model=BDIRNET, cmd=infer_b1, cap=c(110), min_s=40),
    dict(
      bench="train",
      model=UNET,
      cmd=[*unet, "--steps=2" if quick else "--steps=15", "--nocount_flops"],
      cap=c(120),
      min_s=60,
    ),
    dict(
      bench="compile",
      model=BDIRNET,
      cmd=[*bdir, "--compile_only"],
      env=cache,
      variant="persistent cache, 2nd process",
      cap=c(60),
      min_s=15,
    ),
    dict(bench="profile", model=BDIRNET, cmd=profile, env=cache, cap=c(75), min_s=30),
    dict(
      bench="compile",
      model=BDIRNET,
      cmd=[*bdir, "--nocount_flops"],
      variant="autotune_level=0",
      env={"XLA_FLAGS": "--xla_gpu_autotune_level=0"},
      cap=c(150),
      min_s=60,
      gpu_only=True,
    ),
    dict(
      bench="inference",
      model=BDIRNET,
      cmd=[*infer, f"--sizes={big}", "--batches=8" if not quick else "--batches=2"],
      cap=c(90),
      min_s=40,
    ),
    dict(bench="input", model=None, cmd=pipeline, cap=c(60), min_s=20),
    # on the host's CPU beside the device rows, from after row 1 on; collected at the end
    dict(
      bench="flops",
      model=BDIRNET,
      cmd=["train_step.py", f"--config={flops_cfg}", "--flops_only"],
      env={"JAX_PLATFORMS": "cpu"},
      cap=c(400),
      min_s=0,
      background=True,
    ),
    dict(
      bench="flops",
      model=UNET,
      cmd=[*unet, "--flops_only"],
      env={"JAX_PLATFORMS": "cpu"},
      cap=c(400),
      min_s=0,
      background=True,
    ),
  ]


def _child_env(extra_env=None, cache_dir="") -> dict:
  env = dict(os.environ)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # cold compiles except where a row asks for this run's cache
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env["PYTHONUNBUFFERED"] = "1"
  for k, v in (extra_env or {}).items():
    env[k] = v.replace(CACHE, cache_dir)
  if "XLA_FLAGS" in (extra_env or {}) and os.environ.get("XLA_FLAGS"):
    env["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {env['XLA_FLAGS']}"
  return env


class _Row:
  """One plan row's process: its JSON lines are handed to `sink` as they are printed."""

  def __init__(self, item, argv, env, sink):
    self.item, self.found, self.stderr = item, [], ""
    self.t0 = time.time()
    self.proc = subprocess.Popen(
      argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    self._err = threading.Thread(target=self._read_err, daemon=True)
    self._out = threading.Thread(target=self._read_out, args=(sink,), daemon=True)
    self._err.start()
    self._out.start()

  def _read_out(self, sink):
    for line in self.proc.stdout:
      if line.startswith("{"):
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          continue
        self.found.append(row)
        sink(self.item, row)

  def _read_err(self):
    for line in self.proc.stderr:
      self.stderr = (self.stderr + line)[-6000:]

  def wait(self, limit: float) -> str | None:
    """None when the process ended well, else why not; kills it after `limit` seconds."""
    try:
      code = self.proc.wait(timeout=max(0.0, limit))
      error = f"exit {code}" if code else None
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
      error = f"killed at its time cap ({limit:.0f} s)"
    self._out.join(10)
    self._err.join(10)
    if not self.found and not error:
      error = "printed no JSON line"
    return error


def run(
  quick: bool = False,
  only=None,
  out: str | None = None,
  md: str | None = None,
  jsonl: str | None = None,
  budget: float | None = None,
  env: dict | None = None,
  keep_going: bool = True,
) -> list[dict]:
  """Runs the plan within `budget` seconds; returns every row (measured, skipped and failed ones).

  A failing row is recorded and the plan goes on; with keep_going=False it then raises.
  """
  plan = _plan(quick, os.cpu_count() or 1)
  t_start = time.time()
  cache_dir = tempfile.mkdtemp(prefix="bdirnet_jax_cache_")
  rows, skipped, failures, background = [], [], [], []
  lock = threading.Lock()

  def remaining():
    return budget - (time.time() - t_start) if budget else float("inf")

  def command(item):
    return " ".join(
      [*(f"{k}={v}" for k, v in item.get("env", {}).items()), "python benchmarks/" + " ".join(item["cmd"])]
    )

  def sink(item, row):
    row.setdefault("bench", item["bench"])
    if item["bench"] == "compile":
      row["bench"] = "train"  # a train-step measurement under another setting: summary() reads its variant
    if item.get("model"):
      row["model"] = item["model"]
    if item.get("variant"):
      row["variant"] = item["variant"]
    row["command"] = command(item)
    with lock:
      rows.append(row)
      if jsonl:
        with open(jsonl, "a") as f:
          f.write(json.dumps(row) + "\n")
      _write(rows, skipped, failures, quick, out, md, time.time() - t_start)

  def record(item, **what):
    row = dict(bench=item["bench"], model=item.get("model"), variant=item.get("variant"), command=command(item), **what)
    (skipped if "skipped" in what else failures).append(row)
    if jsonl:
      with open(jsonl, "a") as f:
        f.write(json.dumps(row) + "\n")
    _write(rows, skipped, failures, quick, out, md, time.time() - t_start)
    logging.warning("[%s] %s: %s", item["bench"], command(item), what.get("skipped") or what.get("error"))

  def launch(item):
    argv = [sys.executable, os.path.join(HERE, item["cmd"][0]), *item["cmd"][1:]]
    return _Row(item, argv, _child_env({**(env or {}), **item.get("env", {})}, cache_dir), sink)

  def finish(running, limit):
    item = running.item
    error = running.wait(limit)
    wall = time.time() - running.t0
    if error:
      record(item, error=error, wall_s=round(wall, 1), stderr_tail=running.stderr[-3000:])
    else:
      logging.info("[%s] %s: %d result(s) in %.0f s", item["bench"], command(item), len(running.found), wall)

  deferred = [item for item in plan if item.get("background") and (not only or item["bench"] in only)]
  for item in plan:
    if item.get("background") or (only and item["bench"] not in only):
      continue
    if quick and item.get("gpu_only"):
      record(item, skipped="a GPU-only XLA flag: nothing to measure on the CPU")
      continue
    left = remaining()
    if left < item["min_s"]:
      record(item, skipped=f"{left:.0f} s of the {budget:.0f} s budget left, the row needs at least {item['min_s']} s")
      continue
    finish(launch(item), min(item["cap"], left))
    while deferred:  # the host-side FLOP counts start once the first row (a cold compile) is done
      background.append(launch(deferred.pop(0)))
  for item in deferred:  # no device row ran (--only=flops): start them now
    background.append(launch(item))
  for running in background:
    finish(running, min(running.item["cap"], max(remaining(), 5.0)))
  _fill_tflops(rows)
  _write(rows, skipped, failures, quick, out, md, time.time() - t_start)
  shutil.rmtree(cache_dir, ignore_errors=True)
  logging.info("\n%s", markdown(rows, skipped, failures))
  if failures and not keep_going:
    raise RuntimeError(
      f"{len(failures)} row(s) failed: " + "; ".join(f"{f['command']}: {f['error']}" for f in failures)
    )
  return rows


def _fill_tflops(rows) -> None:
  """Model TFLOP/s of train rows measured without a FLOP count, from the host-side count of the same program."""
  counts = {
    (r["model"], r["config"], r["batch"], r["crop"]): r["flops_per_step"]
    for r in rows
    if r.get("bench") == "flops" and r.get("flops_per_step")
  }
  for r in rows:
    if r.get("bench") == "train" and r.get("step_ms") and not r.get("flops_per_step"):
      flops = counts.get((r.get("model"), r.get("config"), r.get("batch"), r.get("crop")))
      if flops:
        r.update(
          flops_per_step=flops,
          flops_source="host CPU count (flops row)",
          tflops_per_s=round(flops / (r["step_ms"] / 1e3) / 1e12, 3),
        )


def machine(rows) -> dict:
  kinds = sorted({r["device_kind"] for r in rows if r.get("device_kind")})
  versions = sorted({r["jax_version"] for r in rows if r.get("jax_version")})
  return dict(
    date=datetime.date.today().isoformat(),
    device_kind=", ".join(kinds) or None,
    jax=", ".join(versions) or None,
    host=platform.node(),
    cpu_count=os.cpu_count(),
    python=platform.python_version(),
  )


def _write(rows, skipped, failures, quick, out, md, wall) -> None:
  if out:
    doc = dict(
      machine=machine(rows),
      quick=quick,
      wall_s=round(wall, 1),
      skipped=skipped,
      failures=failures,
      summary=summary(rows),
      rows=rows,
    )
    with open(out, "w") as f:
      json.dump(doc, f, indent=1)
  if md:
    with open(md, "w") as f:
      f.write(markdown(rows, skipped, failures) + "\n")


def _pick(rows, **match):
  """The first row with these values (and no `variant`: variants are extra rows, not the plan's measurements)."""
  for r in rows:
    if all(r.get(k) == v for k, v in match.items()) and not r.get("variant"):
      return r
  return None


def summary(rows) -> list[dict]:
  """The side-by-side rows: (measurement, BDIRNet value, U-Net value, target), numbers only."""
  out = []
  for dtype in ("bfloat16", "float32"):
    tr = {m: _pick(rows, bench="train", model=m, dtype=dtype) for m in (BDIRNET, UNET)}
    for key, label, scale, target in (
      ("images_per_s", "images/s", 1, None),
      ("tflops_per_s", "model TFLOP/s", 1, f">= {TARGETS['train_tflops_bf16']:g}" if dtype == "bfloat16" else None),
      ("compile_s", "compile s", 1, f"<= {TARGETS['compile_s']:g}" if dtype == "bfloat16" else None),
      ("xla_compile_s", "compile s, XLA part", 1, None),
      ("peak_bytes", "peak memory GB", 1e-9, None),
      ("flops_per_step", "model TFLOP per step", 1e-12, None),
    ):
      vals = {m: (r[key] * scale if r and r.get(key) is not None else None) for m, r in tr.items()}
      out.append(dict(measurement=f"train step {dtype}: {label}", values=vals, target=target))
  for r in rows:
    if r.get("bench") == "train" and r.get("variant"):
      compile_target = (
        f"< {TARGETS['cache_compile_s']:g}" if "cache" in r["variant"] else f"<= {TARGETS['compile_s']:g}"
      )
      for key, label in (
        ("compile_s", "compile s"),
        ("xla_compile_s", "compile s, XLA part"),
        ("step_ms", "step ms"),
        ("images_per_s", "images/s"),
      ):
        if r.get(key) is not None:
          out.append(
            dict(
              measurement=f"train step {r['dtype']} [{r['variant']}]: {label}",
              values={r["model"]: r[key], BDIRNET if r["model"] == UNET else UNET: None},
              target=compile_target if key == "compile_s" else None,
            )
          )
  inference = [r for r in rows if r.get("bench") == "inference" and "batch" in r and not r.get("tile")]
  for size in sorted({r["size"] for r in inference}, key=lambda s: [int(v) for v in s.split("x")]):
    for dtype in ("bfloat16", "float32"):
      for batch in sorted({r["batch"] for r in inference}):
        found = {
          m: _pick(rows, bench="inference", model=m, dtype=dtype, size=size, batch=batch) for m in (BDIRNET, UNET)
        }
        if not any(found.values()):
          continue
        target = (
          f"<= {TARGETS['infer_720p_bf16_b8_ms']:g}" if (size, dtype, batch) == ("720x1280", "bfloat16", 8) else None
        )
        for key, label in (
          ("device_ms_per_image", "device ms/image"),
          ("ms_per_image", "predict-path ms/image"),
          ("compile_s", "compile s"),
        ):
          vals = {m: (r.get(key) if r else None) for m, r in found.items()}
          out.append(
            dict(
              measurement=f"inference {size} {dtype} batch {batch}: {label}",
              values=vals,
              target=target if key == "device_ms_per_image" else None,
            )
          )
  pipeline = [r for r in rows if r.get("bench") == "input_pipeline" and r.get("crops_per_s")]
  if pipeline:
    best = max(pipeline, key=lambda r: r["crops_per_s"])
    train = _pick(rows, bench="train", model=BDIRNET, dtype="bfloat16") or _pick(rows, bench="train", model=BDIRNET)
    ratio = best["crops_per_s"] / train["images_per_s"] if train and train.get("images_per_s") else None
    out.append(
      dict(
        measurement=f"input pipeline crops/s (best: {best['workers']} workers, "
        f"blur {'on' if best['on_the_fly_blur'] else 'off'})",
        values={BDIRNET: best["crops_per_s"], UNET: None},
        target=None,
      )
    )
    out.append(
      dict(
        measurement="input pipeline / BDIRNet train images/s",
        values={BDIRNET: ratio, UNET: None},
        target=f">= {TARGETS['input_over_train']:g}",
      )
    )
  return out


def _fmt(v) -> str:
  if v is None:
    return "–"
  if isinstance(v, float):
    return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
  return str(v)


def markdown(rows, skipped=(), failures=()) -> str:
  m = machine(rows)
  lines = [
    f"### One run: {m['device_kind'] or 'unknown device'}, jax {m['jax']}, {m['date']}",
    "",
    f"| measurement | {MODEL_NAMES[BDIRNET]} | {MODEL_NAMES[UNET]} | BDIRNet / U-Net | target |",
    "|---|---|---|---|---|",
  ]
  for s in summary(rows):
    a, b = s["values"][BDIRNET], s["values"][UNET]
    ratio = a / b if a is not None and b else None
    lines.append(f"| {s['measurement']} | {_fmt(a)} | {_fmt(b)} | {_fmt(ratio)} | {s['target'] or ''} |")
  for sk in skipped:
    lines += ["", f"Skipped ({sk['skipped']}): `{sk['command']}`"]
  for f in failures:
    lines += ["", f"Failed ({f['error']}): `{f['command']}`"]
  groups: dict[str, list[dict]] = {}
  for r in rows:
    groups.setdefault(r["bench"], []).append(r)
  for bench, items in groups.items():
    keys = []
    for r in items:
      keys += [
        k for k in r if k not in keys and k not in ("command", "bench", "shapes") and not isinstance(r[k], (dict, list))
      ]
    lines += ["", f"#### {bench}", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in items]
  for r in rows:
    if r.get("bench") == "profile" and r.get("top"):
      lines += [
        "",
        f"#### profile: top kernels of one {r['preset']} {r['dtype']} step ({r['device_ms_per_step']} device ms/step, "
        f"{r['kernels_per_step']} kernels/step)",
        "| kernel | ms/step | share | launches/step | bound |",
        "|---|---|---|---|---|",
      ]
      lines += [
        f"| `{k['name'][:80]}` | {k['total_ms_per_step']} | {_fmt(100 * (k['share'] or 0))}% | "
        f"{k['launches_per_step']} | {k['bound']} |"
        for k in r["top"]
      ]
  commands = sorted({r["command"] for r in rows})
  lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands)]
  return "\n".join(lines)


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_bool("quick", False, "Tiny sizes: checks every row runs (CPU, CI).", flag_values=fv)
  flags.DEFINE_list("only", None, f"Subset of {','.join(WORKLOADS)}.", flag_values=fv)
  flags.DEFINE_string("out", None, "Write the JSON file (machine, summary, every row) here.", flag_values=fv)
  flags.DEFINE_string("md", None, "Write the markdown tables here.", flag_values=fv)
  flags.DEFINE_string(
    "jsonl", None, "Append every row here as one JSON line, as soon as it is measured.", flag_values=fv
  )
  flags.DEFINE_float(
    "budget",
    None,
    "Seconds for the whole plan (benchmarks/gpu_sitting.sh: 420); each row has its own cap too.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "keep_going", True, "Record a failing row and go on (--nokeep_going: then exit non-zero).", flag_values=fv
  )


def main(argv=None):
  fv = common.parse(define_flags, argv)
  for w in fv.only or ():
    if w not in WORKLOADS:
      raise app.UsageError(f"--only: unknown workload {w!r}; expected some of {', '.join(WORKLOADS)}")
  return run(fv.quick, fv.only, fv.out, fv.md, fv.jsonl, fv.budget, keep_going=fv.keep_going)


if __name__ == "__main__":
  common.run_script(define_flags, main)
