"""Every benchmark in one command, for a lent GPU (about 8 minutes) or, with --quick, this CPU (a smoke run).

  python benchmarks/run_all.py [--quick] [--out=FILE.json] [--md=FILE.md] [--only=train,inference,input]
                               [--deadline=SECONDS]

Runs each measurement in its own process (its own XLA flags and device memory peak), collects the JSON lines they
print, and writes one JSON file (`--out`: machine, every row, the side-by-side summary) and one markdown file
(`--md`: the summary table against the targets, then one table per workload), rewritten after every process so a
run cut short still leaves what it measured. GPU plan, most important first:

  - train step, BDIRNet-base (configs/gopro.py: batch 32 of 256x256, scan) and the U-Net baseline at the base
    preset (configs/unet_baseline.py, same batch, crop and scan), bfloat16, then float32: images/s, model
    TFLOP/s, compile seconds (no persistent cache), peak device memory;
  - inference, both networks, 256x256 and 720x1280 at batch 1 and 8, bfloat16 and float32 (device ms/image of the
    jitted forward, and the whole predict path);
  - the input pipeline (grain, 256x256 crops, 0 and 8 workers, with and without on-the-fly blur).

`--deadline` skips whatever would start after that many seconds (the GPU lease is short). Nothing here imports
TensorFlow, TensorFlow Datasets or clu; ml_collections and grain must be importable (on the GPU image: carried
wheels, BENCHMARKS.md "GPU run"). JAX_COMPILATION_CACHE_DIR is removed from the children's environment so compile
times are cold.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BDIRNET, UNET = "bdirnet", "unet_baseline"
MODEL_NAMES = {BDIRNET: "BDIRNet-base", UNET: "U-Net baseline (base)"}
TARGETS = {"train_tflops_bf16": 65.0, "infer_720p_bf16_b8_ms": 7.0, "compile_s": 30.0, "input_over_train": 2.0}


def _plan(quick: bool, cpus: int) -> list[dict]:
  """(workload, model, command) in priority order: the bf16 rows the targets are about come first."""
  if quick:
    return [
      dict(bench="train", model=BDIRNET, cmd=["train_step.py", "--config=configs/tiny.py", "--steps=2"]),
      dict(
        bench="train",
        model=UNET,
        cmd=[
          "train_step.py",
          "--config=configs/unet_baseline.py",
          "--preset=tiny",
          "--batch_size=4",
          "--crop=32",
          "--steps=2",
        ],
      ),
      dict(
        bench="inference",
        model=BDIRNET,
        cmd=[
          "inference.py",
          "--preset=tiny",
          "--dtype=float32,bfloat16",
          "--sizes=64x64,96x80@64",
          "--batches=1,2",
          "--repeats=1",
          "--mixed=4",
        ],
      ),
      dict(
        bench="inference",
        model=UNET,
        cmd=[
          "inference.py",
          "--config=configs/unet_baseline.py",
          "--preset=tiny",
          "--sizes=64x64",
          "--batches=1",
          "--repeats=1",
          "--mixed=0",
        ],
      ),
      dict(
        bench="input", model=None, cmd=["input_pipeline.py", "--steps=2", "--warmup=1", "--workers", "0", "--crop=64"]
      ),
    ]
  workers = sorted({0, min(8, max(2, cpus - 2))})
  base = ["--preset=base", "--batch_size=32", "--crop=256", "--scan=true", "--steps=15"]
  bdir = ["train_step.py", "--config=configs/gopro.py", "--steps=15"]
  unet = ["train_step.py", "--config=configs/unet_baseline.py", *base]
  infer = [
    "--preset=base",
    "--dtype=bfloat16,float32",
    "--sizes=256x256,720x1280",
    "--batches=1,8",
    "--repeats=10",
    "--mixed=0",
  ]
  return [
    dict(bench="train", model=BDIRNET, cmd=[*bdir, "--dtype=bfloat16"]),
    dict(bench="train", model=UNET, cmd=[*unet, "--dtype=bfloat16"]),
    dict(bench="inference", model=BDIRNET, cmd=["inference.py", *infer]),
    dict(bench="inference", model=UNET, cmd=["inference.py", "--config=configs/unet_baseline.py", *infer]),
    dict(bench="input", model=None, cmd=["input_pipeline.py", "--steps=100", "--workers", *map(str, workers)]),
    # float32: the model FLOPs are those of the bf16 row (same program), passed on so they are not recounted
    dict(bench="train", model=BDIRNET, cmd=[*bdir, "--dtype=float32"], flops_from=0),
    dict(bench="train", model=UNET, cmd=[*unet, "--dtype=float32"], flops_from=1),
    # compile-time levers, if time is left: XLA's autotuning off (compile and step time), scan off (compile only)
    dict(
      bench="train",
      model=BDIRNET,
      cmd=[*bdir, "--dtype=bfloat16"],
      flops_from=0,
      variant="autotune_level=0",
      env={"XLA_FLAGS": "--xla_gpu_autotune_level=0"},
    ),
    dict(
      bench="train",
      model=BDIRNET,
      cmd=[*bdir, "--dtype=bfloat16", "--scan=false", "--compile-only"],
      variant="scan=false",
    ),
  ]


def _child_env(extra_env=None) -> dict:
  env = dict(os.environ)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # cold compiles: the compile-time target excludes the cache
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env["PYTHONUNBUFFERED"] = "1"
  env.update(extra_env or {})
  return env


def run(
  quick: bool = False,
  only=None,
  out: str | None = None,
  timeout: int = 900,
  md: str | None = None,
  deadline: float | None = None,
  env: dict | None = None,
  grace: float = 150.0,
  keep_going: bool = False,
) -> list[dict]:
  """Runs the plan; returns every JSON row. A failing script raises unless `keep_going` (then it is recorded).

  With `deadline`, nothing starts after `deadline` seconds and every script is killed `grace` seconds after it
  (its JSON lines printed so far are kept), so the whole run ends by deadline + grace.
  """
  plan = _plan(quick, os.cpu_count() or 1)
  t_start = time.time()
  rows, skipped, failures, first_rows = [], [], [], {}
  for i, item in enumerate(plan):
    workload, cmd = item["bench"], list(item["cmd"])
    if only and workload not in only:
      continue
    elapsed = time.time() - t_start
    if deadline and elapsed > deadline:
      skipped.append(" ".join(cmd))
      print(f"[{workload}] skipped (past --deadline={deadline:.0f}s): {' '.join(cmd)}", flush=True)
      continue
    source = first_rows.get(item.get("flops_from"))
    if source and source.get("flops_per_step"):
      cmd.append(f"--flops={source['flops_per_step']}")
    argv = [sys.executable, os.path.join(HERE, cmd[0]), *cmd[1:]]
    limit = timeout if not deadline else max(30.0, min(timeout, deadline + grace - elapsed))
    t0 = time.time()
    try:
      proc = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=limit,
        env=_child_env({**(env or {}), **item.get("env", {})}),
        check=False,
      )
      stdout, stderr, error = proc.stdout, proc.stderr, (f"exit {proc.returncode}" if proc.returncode else None)
    except subprocess.TimeoutExpired as e:
      decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
      stdout, stderr, error = decode(e.stdout), decode(e.stderr), f"killed after {limit:.0f}s"
    wall = time.time() - t0
    found = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if not found and not error:
      error = "printed no JSON line"
    for r in found:
      r.setdefault("bench", workload)
      if item["model"]:
        r["model"] = item["model"]
      if item.get("variant"):
        r["variant"] = item["variant"]
      r["command"] = " ".join(
        [*(f"{k}={v}" for k, v in item.get("env", {}).items()), "python benchmarks/" + " ".join(cmd)]
      )
      rows.append(r)
    if found:
      first_rows[i] = found[0]
    if error:
      failures.append(dict(command=" ".join(cmd), error=error, stderr_tail=stderr[-3000:], stdout_tail=stdout[-1000:]))
      print(f"[{workload}] {' '.join(cmd)}: FAILED ({error}) after {wall:.0f}s\n{stderr[-3000:]}", flush=True)
      if not keep_going:
        _write(rows, skipped, failures, quick, out, md, time.time() - t_start)
        raise RuntimeError(f"{' '.join(cmd)} failed ({error}) after {wall:.0f}s:\n{stderr[-3000:]}")
    else:
      print(f"[{workload}] {' '.join(cmd)}: {len(found)} result(s) in {wall:.0f}s", flush=True)
    _write(rows, skipped, failures, quick, out, md, time.time() - t_start)
  print(markdown(rows, skipped, failures))
  return rows


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
      ("peak_bytes", "peak memory GB", 1e-9, None),
      ("flops_per_step", "model TFLOP per step", 1e-12, None),
    ):
      vals = {m: (r[key] * scale if r and r.get(key) is not None else None) for m, r in tr.items()}
      out.append(dict(measurement=f"train step {dtype}: {label}", values=vals, target=target))
  for r in rows:
    if r.get("bench") == "train" and r.get("variant"):
      for key, label in (("compile_s", "compile s"), ("step_ms", "step ms"), ("images_per_s", "images/s")):
        if r.get(key) is not None:
          out.append(
            dict(
              measurement=f"train step {r['dtype']} [{r['variant']}]: {label}",
              values={r["model"]: r[key], BDIRNET if r["model"] == UNET else UNET: None},
              target=f"<= {TARGETS['compile_s']:g}" if key == "compile_s" else None,
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
        for key, label in (("device_ms_per_image", "device ms/image"), ("ms_per_image", "predict-path ms/image")):
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
  if skipped:
    lines += ["", "Skipped (past the deadline): " + "; ".join(f"`{c}`" for c in skipped)]
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
  commands = sorted({r["command"] for r in rows})
  lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands)]
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes: checks every script runs (CPU, CI)")
  p.add_argument("--only", default=None, help="comma-separated subset of train,inference,input")
  p.add_argument("--out", default=None, help="write the JSON file (machine, summary, every row) here")
  p.add_argument("--md", default=None, help="write the markdown tables here")
  p.add_argument("--timeout", type=int, default=900, help="seconds per script")
  p.add_argument("--deadline", type=float, default=None, help="start nothing after this many seconds")
  p.add_argument("--grace", type=float, default=150.0, help="with --deadline: kill any script this long after it")
  p.add_argument("--keep_going", "--keep-going", action="store_true", help="record a failing script, go on")
  args = p.parse_args(argv)
  run(
    args.quick,
    args.only.split(",") if args.only else None,
    args.out,
    args.timeout,
    args.md,
    args.deadline,
    grace=args.grace,
    keep_going=args.keep_going,
  )


if __name__ == "__main__":
  main()
