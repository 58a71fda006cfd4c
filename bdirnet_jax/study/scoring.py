"""Scores on the study's test sets: a trained run's latest checkpoint (EMA params) and the classical baselines, both
cached in the study folder (`records`) so that nothing is scored twice.

The network's outputs come from `batching.Batcher` (the batcher evaluate and predict use) at exact image sizes,
scored by `testsets.set_scores` (`protocols.score_images`).
"""

import functools
import time

import jax
import numpy as np
from absl import logging
from etils import epath

from bdirnet_jax import classical
from bdirnet_jax.study import records
from bdirnet_jax.study import testsets


def baseline_scores(test_sets, output: epath.Path) -> dict[str, dict[str, list]]:
  """{set key: {method: [[psnr, ssim] per image]}}, computed once and cached in DIR/baseline_scores.json."""
  path = output / records.BASELINE_SCORES
  cache = records.read_json(path)
  changed = False
  for ts in test_sets:
    key = records.set_key(ts)
    methods = [m for m in classical.BASELINES if ts.kernels is not None or m not in classical.NEEDS_KERNEL]
    entry = cache.setdefault(key, {})
    for method in methods:
      if method in entry:
        continue
      t0 = time.time()
      outputs = [
        classical.restore(
          method,
          b,
          None if ts.kernels is None else ts.kernels[i],
          noise_sigma=ts.noise_sigma or 0.0,
          seed=testsets.stable_seed(method, ts.label, ts.image_ids[i]),
        )
        for i, b in enumerate(ts.blurry)
      ]
      entry[method] = [list(s) for s in testsets.set_scores(outputs, ts)]
      changed = True
      logging.info("study: baseline %s on %s: %.1fs", method, ts.label, time.time() - t0)
  if changed:
    records.write_json(path, cache)
  return cache


# Jitted deblur programs by model config and mesh: the runs of one config score with one compiled program (a study
# cycles through its configs, seed-major, so it keeps them all; a study has a handful).
_DEBLUR_PROGRAMS: dict = {}
_MAX_DEBLUR_PROGRAMS = 16


def _jit_deblur(restored, mesh):
  from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top

  model = restored.model
  key = (restored.config.model.to_json_best_effort(sort_keys=True), repr(getattr(model, "dtype", None)), mesh)
  if key not in _DEBLUR_PROGRAMS:
    if len(_DEBLUR_PROGRAMS) >= _MAX_DEBLUR_PROGRAMS:
      _DEBLUR_PROGRAMS.pop(next(iter(_DEBLUR_PROGRAMS)))
    _DEBLUR_PROGRAMS[key] = inference.jit_deblur(model, mesh)
  return _DEBLUR_PROGRAMS[key]


def _deblur_all(restored, images: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
  """float32 [0, 1] deblurred images through `batching.Batcher` (exact sizes, fixed batches of `batch_size`
  rounded up to the device count: one compilation per image size)."""
  from bdirnet_jax import batching  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import sharding as sharding_lib  # pylint: disable=g-import-not-at-top

  mesh = sharding_lib.create_mesh((-1, 1), devices=jax.local_devices())
  devices = mesh.shape[sharding_lib.DATA_AXIS]
  outputs: list[np.ndarray | None] = [None] * len(images)

  def collect(indices, out, sizes):
    for k, (i, (h, w)) in enumerate(zip(indices, sizes)):
      outputs[i] = out[k, :h, :w]

  batcher = batching.Batcher(
    functools.partial(_jit_deblur(restored, mesh), restored.params),
    collect,
    multiple=restored.model.downsample_factor,
    batch_multiple=devices,
    batch_size=max(1, batch_size),
    buckets=False,
    fixed_batch=True,
    to_host=True,
    log_name="study",
  )
  for i, img in enumerate(images):
    batcher.add(img, i)
  batcher.finish()
  return outputs


def run_scores(workdir: epath.Path, test_sets, batch_size: int) -> tuple[int, dict[str, list]]:
  """(step, {set key: [[psnr, ssim] per image]}) of a trained run's latest checkpoint (EMA params), cached in
  the run's study_scores.json."""
  path = workdir / records.RUN_SCORES
  cache = records.read_json(path)
  step = records.latest_step(workdir)
  missing = [ts for ts in test_sets if cache.get(records.set_key(ts), {}).get("step") != step]
  if missing:
    from bdirnet_jax import inference  # pylint: disable=g-import-not-at-top
    from bdirnet_jax import train_state  # pylint: disable=g-import-not-at-top

    t0 = time.time()
    restored = inference.load(str(workdir), use_ema=True, step=step)
    params = train_state.params_kind(restored.config)
    for ts in missing:
      outputs = _deblur_all(restored, ts.blurry, batch_size)
      cache[records.set_key(ts)] = {
        "step": step,
        "params": params,
        "scores": [list(s) for s in testsets.set_scores(outputs, ts)],
      }
    records.write_json(path, cache)
    logging.info("study: scored %s on %d test set(s) in %.1fs", workdir.name, len(missing), time.time() - t0)
  return step, {records.set_key(ts): cache[records.set_key(ts)]["scores"] for ts in test_sets}
