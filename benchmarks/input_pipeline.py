"""Input-pipeline throughput: random crops per second, with/without on-the-fly blur kernels, by
number of grain worker processes.

  python benchmarks/input_pipeline.py                      # skimage photos, workers 0 and 2
  python benchmarks/input_pipeline.py --dataset gopro --data_dir ~/tensorflow_datasets
  python benchmarks/input_pipeline.py --steps=2 --warmup=1 --workers=0   # smoke test

Prints one JSON line per configuration, then a table. Host-side only: the device blur
(``blur.blur_batch``) is not included; pass --device_blur to time it on the default JAX backend.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def _texture(seed: int, size=(512, 512)) -> np.ndarray:
  """A photo-sized image with structure at several scales (bilinear upsampling of random grids)."""
  rng = np.random.default_rng(seed)
  out = np.zeros((*size, 3), np.float32)
  for cells in (4, 16, 64):
    grid = rng.random((cells + 1, cells + 1, 3), np.float32)
    y = np.linspace(0, cells, size[0])[:, None]
    x = np.linspace(0, cells, size[1])[None, :]
    y0, x0 = np.minimum(y.astype(int), cells - 1), np.minimum(x.astype(int), cells - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    out += (
      (1 - fy) * (1 - fx) * grid[y0, x0]
      + (1 - fy) * fx * grid[y0, x0 + 1]
      + fy * (1 - fx) * grid[y0 + 1, x0]
      + fy * fx * grid[y0 + 1, x0 + 1]
    )
  return np.round(out / 3 * 255).astype(np.uint8)


def photo_source(copies: int):
  """Shipped skimage colour photos, host-blurred once (gaussian family) to give (blurry, sharp)."""
  from bdirnet_jax import blur

  try:
    import skimage.data

    loaders = [(name, getattr(skimage.data, name, None)) for name in PHOTOS]
  except ImportError:  # GPU images may lack scikit-image: smooth random textures of photo size instead
    loaders = [(f"texture{i}", lambda i=i: _texture(i)) for i in range(len(PHOTOS))]
  recs = []
  rng = np.random.default_rng(0)
  for name, load in loaders:
    try:
      img = np.asarray(load())
    except Exception:  # not shipped with this skimage build (would need a download)
      continue
    if img.ndim != 3 or img.shape[-1] != 3:
      continue
    blurry = blur.synthesize_blurry(img, rng, family="gaussian", kernel_size=15)
    recs.append({"blurry": blurry, "sharp": img, "image_id": name})
  if not recs:
    raise RuntimeError("no skimage colour photos available")
  return [dict(r, image_id=f"{r['image_id']}_{i}") for i in range(copies) for r in recs]


def make_config(args, workers: int, on_the_fly: bool):
  import ml_collections

  name, _, cfg_name = (args.dataset or "photos").partition("/")
  return ml_collections.ConfigDict(
    dict(
      seed=0,
      batch_size=args.batch_size,
      dataset=dict(
        name=name,
        config=cfg_name or None,
        split=args.split,
        data_dir=args.data_dir,
        crop_size=args.crop,
        small_image_policy="pad",
        augment=True,
        on_the_fly_blur=on_the_fly,
        blur_family=args.family,
        kernel_size=args.kernel_size,
        num_workers=workers,
        prefetch=args.prefetch,
        num_threads=args.threads,
      ),
    )
  )


def run_one(args, source, workers: int, on_the_fly: bool) -> dict:
  from bdirnet_jax import input_pipeline as ip

  cfg = make_config(args, workers, on_the_fly)
  t0 = time.perf_counter()
  it = ip.create_train_iterator(cfg, source, process_index=0, process_count=1)
  try:
    for _ in range(args.warmup):
      next(it)
    t1 = time.perf_counter()
    for _ in range(args.steps):
      next(it)
    dt = time.perf_counter() - t1
  finally:
    it.close()
  return {
    "bench": "input_pipeline",
    "dataset": args.dataset or "skimage_photos",
    "crop": args.crop,
    "batch_size": args.batch_size,
    "workers": workers,
    "threads": args.threads,
    "on_the_fly_blur": on_the_fly,
    "blur_family": args.family if on_the_fly else None,
    "kernel_size": args.kernel_size if on_the_fly else None,
    "steps": args.steps,
    "startup_s": round(t1 - t0, 3),
    "batches_per_s": round(args.steps / dt, 3),
    "crops_per_s": round(args.steps * args.batch_size / dt, 2),
    "cpu_count": os.cpu_count(),
  }


def time_device_blur(args) -> dict:
  import jax
  import jax.numpy as jnp

  from bdirnet_jax import blur

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((args.batch_size, args.crop, args.crop, 3), np.float32))
  k = jnp.asarray(np.stack([blur.sample_kernel(rng, "mixed", args.kernel_size) for _ in range(args.batch_size)]))
  f = jax.jit(blur.blur_batch)
  f(x, k).block_until_ready()
  t = time.perf_counter()
  for _ in range(args.steps):
    y = f(x, k)
  y.block_until_ready()
  dt = time.perf_counter() - t
  return {
    "bench": "device_blur_batch",
    "backend": jax.default_backend(),
    "crop": args.crop,
    "batch_size": args.batch_size,
    "kernel_size": args.kernel_size,
    "crops_per_s": round(args.steps * args.batch_size / dt, 2),
  }


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("dataset", None, "TFDS name[/config]; default: skimage photos.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "TFDS data_dir.", flag_values=fv)
  flags.DEFINE_string("split", "train", "Split.", flag_values=fv)
  flags.DEFINE_integer("crop", 256, "Crop side.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 8, "Crops per batch.", flag_values=fv)
  flags.DEFINE_integer("steps", 20, "Timed batches.", flag_values=fv)
  flags.DEFINE_integer("warmup", 3, "Batches before timing.", flag_values=fv)
  flags.DEFINE_list("workers", ["0", "2"], "Grain worker process counts to time.", flag_values=fv)
  flags.DEFINE_integer("threads", 2, "Grain read threads per process.", flag_values=fv)
  flags.DEFINE_integer("prefetch", 2, "Grain prefetch.", flag_values=fv)
  flags.DEFINE_string("family", "mixed", "On-the-fly blur family.", flag_values=fv)
  flags.DEFINE_integer("kernel_size", 31, "On-the-fly blur kernel size.", flag_values=fv)
  flags.DEFINE_integer("copies", 8, "Photo list repeats (photos source only).", flag_values=fv)
  flags.DEFINE_bool("device_blur", False, "Also time blur.blur_batch on the default JAX backend.", flag_values=fv)


def main(argv=None):
  args = common.parse(define_flags, argv)
  if args.dataset:
    from bdirnet_jax import input_pipeline as ip

    source = ip.open_source(make_config(args, 0, False).dataset)
  else:
    source = photo_source(args.copies)

  rows = []
  for workers in (int(w) for w in args.workers):
    for on_the_fly in (False, True):
      rows.append(common.emit(run_one(args, source, workers, on_the_fly)))
  if args.device_blur:
    common.emit(time_device_blur(args))

  lines = [f"{'workers':>7} {'otf_blur':>8} {'crops/s':>9} {'batch/s':>8} {'startup_s':>9}"]
  for r in rows:
    lines.append(
      f"{r['workers']:>7} {str(r['on_the_fly_blur']):>8} {r['crops_per_s']:>9.1f} "
      f"{r['batches_per_s']:>8.2f} {r['startup_s']:>9.2f}"
    )
  logging.info("\n%s", "\n".join(lines))
  return rows


if __name__ == "__main__":
  common.run_script(define_flags, main)
