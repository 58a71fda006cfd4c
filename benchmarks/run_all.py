"""Every benchmark in one command, for a lent GPU (a few minutes) or, with --quick, this CPU (a smoke run).

  python benchmarks/run_all.py [--quick] [--out=FILE.jsonl] [--only=train,inference,input]

Runs each workload in its own process (its own XLA flags and memory), collects the JSON lines they print, and ends
with one table per workload. GPU run: the `base` preset in bfloat16 and float32 (batch 32 of 256x256, as in
../shared/REFERENCE.md section 5), inference at 256x256, 720x1280 and 4000x3000 (tiled), and the input pipeline by
worker count. The GPU image has no ml_collections, clu or grain: carry their wheels (see the device README) and put
them on PYTHONPATH before running this.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _plan(quick: bool, cpus: int) -> dict[str, list[list[str]]]:
  if quick:
    return {
        "train": [["train_step.py", "--config=configs/tiny.py", "--steps=2"]],
        "inference": [["inference.py", "--preset=tiny", "--sizes=64x64,96x80@64", "--batches=1,2", "--repeats=1",
                       "--mixed=4"]],
        "input": [["input_pipeline.py", "--steps=2", "--warmup=1", "--workers", "0", "--crop=64"]],
    }
  workers = sorted({0, 2, max(2, cpus // 2), max(2, cpus - 2)})
  train = [["train_step.py", "--config=configs/gopro.py", f"--dtype={d}", "--steps=15"]
           for d in ("bfloat16", "float32")]
  return {
      "train": train,
      "inference": [["inference.py", "--preset=base", f"--dtype={d}", "--isolate"] for d in ("bfloat16", "float32")],
      "input": [["input_pipeline.py", "--steps=100", "--workers", *map(str, workers)]],
  }


def run(quick: bool = False, only=None, out: str | None = None, timeout: int = 900) -> list[dict]:
  plan = _plan(quick, os.cpu_count() or 1)
  rows = []
  for workload, commands in plan.items():
    if only and workload not in only:
      continue
    for cmd in commands:
      argv = [sys.executable, os.path.join(HERE, cmd[0]), *cmd[1:]]
      t0 = time.time()
      proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
      wall = time.time() - t0
      if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}) after {wall:.0f}s:\n{proc.stderr[-3000:]}")
      found = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
      if not found:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON line:\n{proc.stdout[-2000:]}")
      for r in found:
        r.setdefault("bench", workload)
        r["command"] = "python benchmarks/" + " ".join(cmd)
        rows.append(r)
      print(f"[{workload}] {' '.join(cmd)}: {len(found)} result(s) in {wall:.0f}s", flush=True)
  if out:
    with open(out, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  _print_tables(rows)
  return rows


def _print_tables(rows) -> None:
  groups: dict[str, list[dict]] = {}
  for r in rows:
    groups.setdefault(r["bench"], []).append(r)
  for bench, items in groups.items():
    keys = [k for k in items[0] if k not in ("command", "bench") and not isinstance(items[0][k], (dict, list))]
    print(f"\n## {bench}\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in items:
      print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes: checks every script runs (CPU, CI)")
  p.add_argument("--only", default=None, help="comma-separated subset of train,inference,input")
  p.add_argument("--out", default=None, help="also write every JSON line to this file")
  p.add_argument("--timeout", type=int, default=900, help="seconds per script")
  args = p.parse_args(argv)
  run(args.quick, args.only.split(",") if args.only else None, args.out, args.timeout)


if __name__ == "__main__":
  main()
