"""Full-resolution evaluation of a trained workdir on every `config.eval_datasets` entry.

Writes DIR/eval/<label>_<split>.json (summary + per-image scores), DIR/eval/<label>_<split>_grid.png (blurred |
output | sharp rows) and DIR/eval/report.md (a table of every JSON in DIR/eval, so evaluations of different
datasets or steps accumulate). `label` is `dataset.label` when set, else the dataset name.

Images are reflect-padded to the network's multiple and cropped back before scoring. Images of one size are
batched across the local devices; each process scores its own strided share and process 0 merges the parts, so
no collective ever waits on another process's image sizes.
"""
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from bdirnet_jax import config_validation
from bdirnet_jax import inference
from bdirnet_jax import metrics as metrics_lib
from bdirnet_jax import sharding as sharding_lib

EVAL_DIR = "eval"
GRID_ROW_HEIGHT = 192


def protocol_for(ds_cfg) -> str:
  """RealBlur needs its ECC alignment protocol; everything else the NAFNet/DeblurGAN RGB uint8 protocol."""
  protocol = ds_cfg.get("protocol", None)
  if protocol:
    return protocol
  if str(ds_cfg.name).startswith("realblur"):
    from bdirnet_jax import realblur_protocol  # pylint: disable=g-import-not-at-top
    return realblur_protocol.REALBLUR_PROTOCOL
  return metrics_lib.DEFAULT_PROTOCOL


def label_of(ds_cfg) -> str:
  label = ds_cfg.get("label", None) or str(ds_cfg.name)
  return label.replace("/", "-")


def check_dataset_names(datasets) -> None:
  """One readable line for an unknown dataset name, before anything is restored or compiled."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tfds_builders  # pylint: disable=g-import-not-at-top
  labels = set()
  for i, ds_cfg in enumerate(datasets):
    name = str(ds_cfg.get("name", ""))
    try:
      tfds.builder_cls(name)
    except Exception:  # pylint: disable=broad-except
      raise config_validation.ConfigError(
          f"config.eval_datasets[{i}].name={name!r} is not a known dataset; expected one of "
          f"{list(tfds_builders.BUILDER_NAMES)} or another registered TFDS name") from None
    key = (label_of(ds_cfg), ds_cfg.get("split", "test"))
    if key in labels:
      raise config_validation.ConfigError(
          f"config.eval_datasets[{i}] writes {key[0]}_{key[1]}.json like an earlier entry; give the entries "
          "distinct `label` fields")
    labels.add(key)


@jax.jit
def _scores(restored, sharp):
  """Per-image PSNR/SSIM of a batch under the default protocol (restored in [0, 1], sharp uint8)."""
  out = metrics_lib.to_uint8(restored)
  return metrics_lib.psnr(out, sharp, 255.0), metrics_lib.ssim(out, sharp, 255.0)


class _Batcher:
  """Groups examples by size and runs them through the jitted, device-sharded deblur."""

  def __init__(self, restored: inference.Restored, mesh, protocol: str):
    self.restored, self.mesh, self.protocol = restored, mesh, protocol
    self.deblur = inference.jit_deblur(restored.model, mesh)
    self.factor = restored.model.downsample_factor
    self.devices = mesh.shape[sharding_lib.DATA_AXIS]
    self.pending: dict[tuple[int, int], list[dict]] = {}
    self.results: list[dict] = []
    self.grid: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    self.shapes: set[tuple[int, int]] = set()

  def add(self, example: dict, want_grid: bool) -> None:
    example["want_grid"] = want_grid
    key = example["blurry"].shape[:2]
    self.pending.setdefault(key, []).append(example)
    if len(self.pending[key]) == self.devices:
      self._run(self.pending.pop(key))

  def flush(self) -> None:
    for key in list(self.pending):
      self._run(self.pending.pop(key))

  def _run(self, examples: list[dict]) -> None:
    self.shapes.add(examples[0]["blurry"].shape[:2])
    blurry, hw = inference.pad_to_multiple(np.stack([e["blurry"] for e in examples]), self.factor)
    blurry, n = inference.pad_batch(blurry, self.devices)
    out = inference.crop(self.deblur(self.restored.params, blurry), hw)[:n]
    has_sharp = all("sharp" in e for e in examples)
    scores = None
    if has_sharp and self.protocol == metrics_lib.DEFAULT_PROTOCOL:
      scores = jax.device_get(_scores(out, jnp.asarray(np.stack([e["sharp"] for e in examples]))))
    out_host = None
    if (has_sharp and self.protocol != metrics_lib.DEFAULT_PROTOCOL) or any(e["want_grid"] for e in examples):
      out_host = np.asarray(jax.device_get(out))
    for i, e in enumerate(examples):
      entry: dict[str, Any] = {"image_id": e["image_id"], "height": int(hw[0]), "width": int(hw[1])}
      if scores is not None:
        entry["psnr"], entry["ssim"] = float(scores[0][i]), float(scores[1][i])
      elif has_sharp:
        from bdirnet_jax import realblur_protocol  # pylint: disable=g-import-not-at-top
        r = realblur_protocol.realblur_metrics(out_host[i], e["sharp"].astype(np.float32) / 255.0)
        entry.update(psnr=float(r["psnr"]), ssim=float(r["ssim"]), ecc_failed=bool(r["ecc_failed"]))
      self.results.append(entry)
      if e["want_grid"]:
        self.grid.append((e["blurry"], np.asarray(jax.device_get(metrics_lib.to_uint8(out_host[i]))),
                          e.get("sharp")))


def _grid_image(rows) -> np.ndarray:
  """Rows of (blurred, output, sharp) scaled to a common height, separated by white gaps."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  gap = 4
  rendered = []
  for row in rows:
    cells = []
    for img in row:
      if img is None:
        continue
      h, w = img.shape[:2]
      width = max(1, round(w * GRID_ROW_HEIGHT / h))
      cells.append(np.asarray(Image.fromarray(img).resize((width, GRID_ROW_HEIGHT), Image.BICUBIC)))
    parts = []
    for c in cells:
      parts += [c, np.full((GRID_ROW_HEIGHT, gap, 3), 255, np.uint8)]
    rendered.append(np.concatenate(parts[:-1], axis=1))
  width = max(r.shape[1] for r in rendered)
  rendered = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rendered]
  return np.concatenate(rendered, axis=0)[:-gap]


def _write_json(path: epath.Path, obj) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1))
  os.replace(tmp, path)


def evaluate_dataset(restored: inference.Restored, ds_cfg, mesh, *, num_grid_images: int = 4,
                     max_images: int | None = None) -> tuple[dict, list]:
  """(summary with per-image scores, grid rows) of this process's share of one dataset."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  protocol = protocol_for(ds_cfg)
  batcher = _Batcher(restored, mesh, protocol)
  iterator = input_pipeline.create_eval_iterator(ds_cfg, process_index=None, process_count=None)
  t0 = time.time()
  for i, example in enumerate(iterator):
    if max_images is not None and i >= max_images:
      break
    batcher.add(dict(example), want_grid=i < num_grid_images)
  batcher.flush()
  summary = {
      "dataset": str(ds_cfg.name), "config": ds_cfg.get("config", None), "split": ds_cfg.get("split", "test"),
      "label": label_of(ds_cfg), "protocol": protocol, "num_images": len(batcher.results),
      "seconds": round(time.time() - t0, 3), "num_image_sizes": len(batcher.shapes), "per_image": batcher.results,
  }
  return summary, batcher.grid


def _aggregate(summary: dict) -> dict:
  scored = [r for r in summary["per_image"] if "psnr" in r]
  summary["num_images"] = len(summary["per_image"])
  summary["num_scored"] = len(scored)
  summary["psnr"] = float(np.mean([r["psnr"] for r in scored])) if scored else None
  summary["ssim"] = float(np.mean([r["ssim"] for r in scored])) if scored else None
  if summary["protocol"] != metrics_lib.DEFAULT_PROTOCOL:
    summary["ecc_failures"] = sum(bool(r.get("ecc_failed")) for r in summary["per_image"])
  return summary


def write_report(eval_dir: epath.Path) -> epath.Path:
  """report.md: one row per JSON in the eval folder."""
  rows = []
  for path in sorted(eval_dir.glob("*.json")):
    s = json.loads(path.read_text())
    if "protocol" not in s:
      continue
    fmt = lambda v, p: "n/a (no ground truth)" if v is None else f"{v:.{p}f}"
    grid = s.get("grid")
    rows.append(f"| {s['label']} | {s.get('config') or ''} | {s['split']} | {s['num_images']} | "
                f"{fmt(s['psnr'], 2)} | {fmt(s['ssim'], 4)} | {s['protocol']} | {s['step']} | {s['params']} | "
                + (f"[grid]({grid})" if grid else "") + " |")
  text = ["# Evaluation report", "",
          "PSNR/SSIM at full resolution; protocols in docs/DESIGN.md (`rgb_uint8_gauss11`: outputs rounded to "
          "uint8, RGB, Gaussian 11x11 SSIM, equal to scikit-image; `realblur_ecc`: RealBlur's ECC-aligned, "
          "masked scores).", "",
          "| dataset | config | split | images | PSNR (dB) | SSIM | protocol | step | params | grid |",
          "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
  path = eval_dir / "report.md"
  path.write_text("\n".join(text))
  return path


def _merge_parts(parts_dir: epath.Path, stem: str, count: int) -> dict:
  merged = None
  for i in range(count):
    part = json.loads((parts_dir / f"{stem}.process_{i}-of-{count}.json").read_text())
    if merged is None:
      merged = part
    else:
      merged["per_image"] += part["per_image"]
      merged["seconds"] = max(merged["seconds"], part["seconds"])
  return merged


def evaluate(workdir: str, config: ml_collections.ConfigDict | None = None, *, use_ema: bool = True,
             step: int | None = None, bf16: bool = False, max_images: int | None = None,
             restored: inference.Restored | None = None) -> dict[str, dict]:
  """Evaluates the latest (or `step`) checkpoint of `workdir`; returns {"<label>_<split>": summary}.

  The model always comes from the workdir's saved config; `config` (default: the saved one) only supplies
  `eval_datasets` and `eval_num_grid_images`, so a run can be evaluated on datasets it was not configured with.
  """
  workdir = epath.Path(workdir)
  restored = restored or inference.load(str(workdir), use_ema=use_ema, step=step, bf16=bf16)
  config = config if config is not None else restored.config
  # A config loaded from DIR/config.json holds the list entries as plain dicts.
  datasets = [ml_collections.ConfigDict(d) if isinstance(d, dict) else d for d in config.get("eval_datasets", [])]
  if not datasets:
    raise config_validation.ConfigError("config.eval_datasets is empty: nothing to evaluate")
  check_dataset_names(datasets)
  eval_dir = workdir / EVAL_DIR
  parts_dir = eval_dir / ".parts"
  eval_dir.mkdir(parents=True, exist_ok=True)
  mesh = sharding_lib.create_mesh((-1, 1), devices=jax.local_devices())
  pi, pc = jax.process_index(), jax.process_count()
  params_kind = "ema" if use_ema and restored.config.optim.get("ema_decay", 0) > 0 else "raw"
  results = {}
  for ds_cfg in datasets:
    summary, grid_rows = evaluate_dataset(restored, ds_cfg, mesh,
                                          num_grid_images=config.get("eval_num_grid_images", 4),
                                          max_images=max_images)
    stem = f"{summary['label']}_{summary['split']}"
    summary.update(step=restored.step, params=params_kind, workdir=str(workdir), bf16=bool(bf16),
                   preset=restored.config.model.get("preset"))
    if pc > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      parts_dir.mkdir(parents=True, exist_ok=True)
      _write_json(parts_dir / f"{stem}.process_{pi}-of-{pc}.json", summary)
      multihost_utils.sync_global_devices(f"eval {stem}")
      summary = _merge_parts(parts_dir, stem, pc)
    summary = _aggregate(summary)
    if pi == 0:
      if grid_rows:
        from PIL import Image  # pylint: disable=g-import-not-at-top
        summary["grid"] = f"{stem}_grid.png"
        Image.fromarray(_grid_image(grid_rows)).save(eval_dir / summary["grid"])
      _write_json(eval_dir / f"{stem}.json", summary)
      psnr = "n/a" if summary["psnr"] is None else f"{summary['psnr']:.3f}"
      ssim = "n/a" if summary["ssim"] is None else f"{summary['ssim']:.4f}"
      logging.info("eval %s at step %d: PSNR %s SSIM %s over %d images (%s), %.1fs", stem, restored.step, psnr,
                   ssim, summary["num_images"], summary["protocol"], summary["seconds"])
    results[stem] = summary
  if pi == 0:
    write_report(eval_dir)
    _write_scalars(str(workdir), restored.step, results)
  return results


def _write_scalars(workdir: str, step: int, results: dict) -> None:
  from bdirnet_jax import writers  # pylint: disable=g-import-not-at-top
  scalars = {}
  for stem, s in results.items():
    if s["psnr"] is not None:
      scalars[f"eval/{stem}/psnr"], scalars[f"eval/{stem}/ssim"] = s["psnr"], s["ssim"]
  if scalars:
    writer = writers.create_writer(workdir, jax.process_index())
    writer.write_scalars(step, scalars)
    writer.close()
