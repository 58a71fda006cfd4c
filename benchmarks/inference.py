"""Inference benchmark: ms per image and images/s of the predict path, compile time, peak memory, compilations.

python benchmarks/inference.py --preset=small [--config=configs/unet_baseline.py] [--dtype=float32,bfloat16]
       [--sizes=256x256,720x1280,4000x3000@1024] [--batches=1,8] [--repeats=3] [--device_count=4] [--isolate]

`--config` takes the architecture (SAID, SAIR, ...) from a config file's `model` block, with `--preset` overriding
its preset; without it the model is BDIRNet of that preset. `--dtype` may list several dtypes (one process).

Sizes are HxW; `@T` tiles that size with T-pixel tiles (overlap --tile_overlap); without it the image runs whole.
For a whole image the batch is images per step, for a tiled one tiles per step; batches that the device memory
estimate says do not fit are skipped. Params are randomly initialised (timing does not depend on them). Times are
medians over --repeats runs after a first (compiling) call, each synchronised by copying the result to the host:
`ms_per_image` is Predictor.deblur end to end (host float conversion, padding, transfer, device, blending; no PNG
decode or encode), `device_ms_per_image` the jitted forward alone on a device-resident batch (whole images).
`compile_s` is the first call minus a steady one: of the jitted forward for whole images (measured before the
predict path, which then reuses the executable), of the predict path for tiled ones. `--scan` (default) compiles
one block body per repeated stage. Peak memory is the device's peak_bytes_in_use where the backend
reports it, else the process's peak host RSS, which only grows: pass --isolate to run each size in a fresh process.
`compilations` counts the padded shapes Predictor would compile for a folder of --mixed images of assorted sizes.
Prints one JSON line per measurement, then a table. TensorFlow is never imported.
"""

import json
import os
import subprocess
import sys
import time

from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def _peak_memory(jax):
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"], "device"
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024, "host_rss"
  except OSError:
    pass
  import resource  # pylint: disable=g-import-not-at-top

  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host_rss"


def _parse_sizes(text):
  specs = []
  for item in text.split(","):
    size, _, tile = item.strip().partition("@")
    h, w = (int(v) for v in size.lower().split("x"))
    specs.append((h, w, int(tile) if tile else 0, item.strip()))
  return specs


def _mixed_sizes(n, seed=0):
  """Assorted photo-like sizes: phone/camera resolutions, their crops and portrait versions."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  common = [(480, 640), (720, 1280), (1080, 1920), (768, 1024), (600, 800), (1200, 1600), (256, 256), (512, 384)]
  sizes = []
  for i in range(n):
    h, w = common[rng.integers(len(common))]
    if i % 3 == 1:
      h, w = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))  # a crop
    if i % 4 == 3:
      h, w = w, h
    sizes.append((h, w))
  return sizes


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum("preset", "small", ["tiny", "small", "base"], "Model preset.", flag_values=fv)
  flags.DEFINE_string("config", None, "Config file whose `model` block gives the architecture.", flag_values=fv)
  flags.DEFINE_string("dtype", "float32", "float32, bfloat16, or a comma-separated list of both.", flag_values=fv)
  flags.DEFINE_string("sizes", "256x256,720x1280,4000x3000@1024", "HxW[@tile], comma-separated.", flag_values=fv)
  flags.DEFINE_string("batches", "1,8", "Images (whole) or tiles (tiled) per step.", flag_values=fv)
  flags.DEFINE_integer("tile_overlap", 32, "Overlap between tiles.", flag_values=fv)
  flags.DEFINE_integer("repeats", 3, "0: time the first call only (compile included).", flag_values=fv)
  flags.DEFINE_integer("mixed", 48, "Images in the mixed-size folder for the compilation count.", flag_values=fv)
  flags.DEFINE_integer("device_count", None, "Fake CPU devices.", flag_values=fv)
  flags.DEFINE_bool("isolate", False, "Each size in its own process (per-size peak memory).", flag_values=fv)
  flags.DEFINE_bool(
    "scan",
    True,
    "nn.scan over repeated blocks: compile time flat in depth (the unrolled base forward took minutes to compile "
    "per shape on a GPU). --noscan times the unrolled network.",
    flag_values=fv,
  )
  flags.DEFINE_bool(
    "memory_check",
    True,
    "Compile a probe-sized forward to estimate device memory and skip batches that would not fit (one more "
    "compile; --nomemory_check on a large-memory card).",
    flag_values=fv,
  )
  flags.DEFINE_alias("device-count", "device_count", flag_values=fv)


def main(argv=None):
  args = common.parse(define_flags, argv)
  if args.isolate:
    rows = []
    for i, (_, _, _, item) in enumerate(_parse_sizes(args.sizes)):
      child = [
        f"--{name}={args[name].value}"
        for name in ("preset", "config", "dtype", "batches", "tile_overlap", "repeats", "device_count")
        if args[name].value is not None
      ]
      child += ["--scan" if args.scan else "--noscan", "--memory_check" if args.memory_check else "--nomemory_check"]
      child += [f"--sizes={item}", f"--mixed={args.mixed if i == 0 else 0}"]
      out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *child], capture_output=True, text=True, check=False
      )
      if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"size {item} failed (exit {out.returncode})")
      for line in out.stdout.splitlines():
        if line.startswith("{"):
          print(line, flush=True)
          rows.append(json.loads(line))
    _table(rows)
    return rows

  common.force_host_device_count(args.device_count)
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np

  from bdirnet_jax import inference
  from bdirnet_jax import predict
  from bdirnet_jax import sharding as sharding_lib
  from bdirnet_jax import tiling
  from bdirnet_jax.models import create_model

  if args.config:
    import importlib.util

    if not os.path.isfile(args.config):
      raise FileNotFoundError(f"--config: no config file at {args.config!r}")
    spec = importlib.util.spec_from_file_location("bench_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model_config = module.get_config().model
    model_config.preset = args.preset
  else:
    model_config = ml_collections.ConfigDict({"preset": args.preset})
  model_config.scan = bool(args.scan)
  rows = []
  for dtype in args.dtype.split(","):
    rows += _run_dtype(
      args, dtype.strip(), model_config, jax, jnp, np, inference, predict, sharding_lib, tiling, create_model
    )
  _table(rows)
  return rows


def _run_dtype(args, dtype, model_config, jax, jnp, np, inference, predict, sharding_lib, tiling, create_model):
  """Every size and batch of `args` for one compute dtype; returns the rows (also printed as JSON lines)."""
  model = create_model(model_config, dtype)
  m = model.downsample_factor
  params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 4 * m, 4 * m, 3)), method=model.deblur)["params"])(
    jax.random.key(0)
  )
  devices = jax.local_devices()
  mesh = sharding_lib.create_mesh((-1, 1), devices=devices)
  params = jax.device_put(params, sharding_lib.replicated(mesh))
  jitted = inference.jit_deblur(model, mesh)
  memory = predict.estimate_memory(jitted, params, mesh, m) if args.memory_check else None
  apply = lambda x: jitted(params, x)
  n_dev = len(devices)
  common_row = dict(
    preset=args.preset,
    dtype=dtype,
    scan=bool(args.scan),
    devices=n_dev,
    platform=devices[0].platform,
    device_kind=devices[0].device_kind,
    jax_version=jax.__version__,
  )
  if args.config:
    common_row["config"] = args.config
  rows = []

  def emit(row):
    rows.append(common.emit({**common_row, **row}))

  rng = np.random.default_rng(0)
  for h, w, tile, item in _parse_sizes(args.sizes):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for batch in sorted({-(-max(1, int(b)) // n_dev) * n_dev for b in args.batches.split(",")}):
      if tile:
        grid_px = predict.bucket_side(min(tile, h), m) * predict.bucket_side(min(tile, w), m)
        images = [image]
      else:
        grid_px = predict.bucket_side(h, m) * predict.bucket_side(w, m)
        images = [image] * batch
      if memory is not None and memory.images_that_fit(grid_px) < batch // n_dev:
        emit(
          dict(
            size=item,
            tile=tile or None,
            batch=batch,
            skipped="does not fit the device memory estimate",
            bytes_per_pixel=round(memory.bytes_per_pixel, 1),
            budget_bytes=int(memory.budget_bytes),
          )
        )
        continue
      row = dict(size=item, tile=tile or None, batch=batch, images_per_call=len(images))
      if not tile:
        # The jitted forward alone first, on a device-resident batch: its first call is the (only) compile of this
        # shape, timed apart from the steady device time; the predict path below reuses that executable.
        x = jax.device_put(
          np.zeros((batch, predict.bucket_side(h, m), predict.bucket_side(w, m), 3), np.float32),
          sharding_lib.batch_sharding(mesh),
        )
        t = time.perf_counter()
        jax.block_until_ready(jitted(params, x))
        device_first = time.perf_counter() - t
        device_times = []
        for _ in range(max(1, args.repeats)):
          t = time.perf_counter()
          jax.block_until_ready(jitted(params, x))
          device_times.append(time.perf_counter() - t)
        device_steady = float(np.median(device_times))
        row["device_ms_per_image"] = round(1e3 * device_steady / batch, 2)
        row["compile_s"] = round(device_first - device_steady, 2)
        logging.info(
          "%s %s batch %d: compile %.1f s, device %.2f ms/image",
          item,
          dtype,
          batch,
          device_first,
          row["device_ms_per_image"],
        )
      predictor = predict.Predictor(
        apply, multiple=m, batch_multiple=n_dev, tile=tile, batch_size=batch, tile_overlap=args.tile_overlap
      )
      t = time.perf_counter()
      predictor.deblur(images)
      first = time.perf_counter() - t
      times = []
      for _ in range(args.repeats):
        t = time.perf_counter()
        predictor.deblur(images)
        times.append(time.perf_counter() - t)
      steady = float(np.median(times)) if times else first  # --repeats=0: one call, compile included
      row.update(
        ms_per_image=round(1e3 * steady / len(images), 2),
        images_per_s=round(len(images) / steady, 3),
        first_call_s=round(first, 2),
        compilations=predictor.compilations,
        shapes=sorted(predictor.shapes),
      )
      if tile:
        row["tiles"] = tiling.make_layout(h, w, tile, args.tile_overlap, align=m).num_tiles
        row["compile_s"] = round(first - steady, 2) if times else None
      row["peak_bytes"], row["peak_kind"] = _peak_memory(jax)
      emit(row)

  if args.mixed and dtype == args.dtype.split(",")[0].strip():
    sizes = _mixed_sizes(args.mixed)
    shapes = []
    counter = predict.Predictor(
      lambda x: shapes.append(x.shape) or np.zeros(x.shape, np.float32), multiple=m, batch_multiple=n_dev, memory=memory
    )
    for hw in sizes:  # only shapes are recorded: the count is the bucketing's, no network runs
      counter.submit(np.zeros(hw + (3,), np.uint8), lambda _: None)
    counter.finish()
    emit(
      dict(
        size=f"mixed folder of {len(sizes)}",
        distinct_sizes=len(set(sizes)),
        compilations=counter.compilations,
        shapes=sorted(counter.shapes),
      )
    )
  cache = getattr(jitted, "_cache_size", None)
  if cache is not None:
    emit(dict(size="jit cache", executables=cache()))
  return rows


def _table(rows):
  lines = [
    "| size | dtype | tile | batch | ms/image | images/s | device ms/image | compile s | peak MB |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    if "ms_per_image" in r:
      peak = f"{r['peak_bytes'] / 1e6:.0f} ({r['peak_kind']})"
      lines.append(
        f"| {r['size']} | {r['dtype']} | {r['tile'] or '-'} | {r['batch']} | {r['ms_per_image']} | "
        f"{r['images_per_s']} | "
        f"{r.get('device_ms_per_image', '-')} | {'-' if r['compile_s'] is None else r['compile_s']} | {peak} |"
      )
    elif "skipped" in r:
      lines.append(f"| {r['size']} | {r['dtype']} | {r['tile'] or '-'} | {r['batch']} | skipped: {r['skipped']} |")
    elif "compilations" in r:
      lines.append(f"| {r['size']} ({r['distinct_sizes']} distinct sizes) | | | | {r['compilations']} compilations |")
  logging.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
  common.run_script(define_flags, main)
