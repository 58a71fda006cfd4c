"""Full-resolution evaluation of a trained workdir on every `config.eval_datasets` entry.

Writes DIR/eval/<label>_<split>.json (summary + per-image scores of the output and of the blurred input, under the
same protocol), DIR/eval/<label>_<split>_grid.png (blurred | output | sharp rows) and DIR/eval/report.md (a table
of every JSON in DIR/eval, so evaluations of different datasets or steps accumulate). `label` is `dataset.label`
when set, else the dataset name.

Every number belongs to a protocol from `PROTOCOLS` (name -> definition, source, scorer); `dataset.protocol`
picks one, else `DATASET_PROTOCOLS` by dataset name. Images are reflect-padded to the network's multiple and
cropped back before scoring. Images of one size are batched across the local devices; each process scores its
own strided share and process 0 merges the parts, so no collective ever waits on another process's image sizes.
"""

import dataclasses
import json
import os
import time
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from tqdm import tqdm

from bdirnet_jax import config_validation
from bdirnet_jax import inference
from bdirnet_jax import metrics as metrics_lib
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train_state
from bdirnet_jax import train_step

EVAL_DIR = "eval"
GRID_ROW_HEIGHT = 192


# ----------------------------------------------------------------------------------------------------------------
# Protocols: name -> how a batch of outputs is scored against its examples
# ----------------------------------------------------------------------------------------------------------------
# A scorer takes float outputs in [0, 1] [B, H, W, 3] (device or host) and the B examples (with `sharp` and the
# protocol's `extra_keys`) and returns one dict per image holding at least `psnr` and `ssim`.
Scorer = Callable[[Any, list], list]


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  definition: str
  source: str
  score: Scorer
  extra_keys: tuple[str, ...] = ()  # record fields the scorer needs beyond blurry/sharp
  flag: tuple[str, str] | None = None  # (per-image bool key, summary count key), e.g. ECC failures


def _uint8_scorer(ssim_fn) -> Scorer:
  """Device scorer: outputs rounded to uint8 (NAFNet's tensor2img), PSNR (peak 255) and `ssim_fn` on RGB."""

  @jax.jit
  def scores(restored, sharp):
    out = metrics_lib.to_uint8(restored)
    return metrics_lib.psnr(out, sharp, 255.0), ssim_fn(out, sharp, 255.0)

  def score(restored, examples):
    p, s = jax.device_get(scores(restored, jnp.asarray(np.stack([e["sharp"] for e in examples]))))
    return [{"psnr": float(p[i]), "ssim": float(s[i])} for i in range(len(examples))]

  return score


def _realblur_score(restored, examples):
  from bdirnet_jax import realblur_protocol  # pylint: disable=g-import-not-at-top

  host = np.asarray(jax.device_get(restored))
  results = []
  for out, e in zip(host, examples):
    r = realblur_protocol.realblur_metrics(out, e["sharp"].astype(np.float32) / 255.0)
    results.append({"psnr": float(r["psnr"]), "ssim": float(r["ssim"]), "ecc_failed": bool(r["ecc_failed"])})
  return results


def _kohler_score(restored, examples):
  from bdirnet_jax import kohler_protocol  # pylint: disable=g-import-not-at-top

  host = np.asarray(jax.device_get(metrics_lib.to_uint8(restored)))
  results = []
  for out, e in zip(host, examples):
    numbers = np.asarray(e["sharp_frame_numbers"])
    mask = kohler_protocol.frame_mask(int(e["image_index"]), int(e["kernel_index"]), numbers)
    r = kohler_protocol.score(out, np.stack(list(e["sharp_frames"])), mask=mask)
    results.append(
      {
        "psnr": r["psnr"],
        "ssim": r["ssim"],
        "frame": int(numbers[r["frame"]]),
        "shift": r["shift"],
        "gain": r["gain"],
        "degenerate": r["degenerate"],
      }
    )
  return results


PROTOCOLS: dict[str, Protocol] = {
  p.name: p
  for p in (
    Protocol(
      metrics_lib.MATLAB_PROTOCOL,
      "output rounded to uint8; PSNR (peak 255, MSE over HxWx3) and MATLAB's 3-D SSIM of the HxWx3 volume "
      "(11x11x11 Gaussian window, sigma 1.5, replicate padding, no crop): metrics.psnr + metrics.ssim_3d",
      "MATLAB psnr/ssim as in Restormer evaluate_gopro_hide.m, MPRNet evaluate_GOPRO_HIDE.m, NAFNet "
      "basicsr/metrics/psnr_ssim.py (ssim3d=True): the protocol of published GoPro/HIDE tables",
      _uint8_scorer(metrics_lib.ssim_3d),
    ),
    Protocol(
      metrics_lib.DEFAULT_PROTOCOL,
      "output rounded to uint8; PSNR (peak 255) and scikit-image's per-channel 2-D SSIM (Gaussian 11x11, "
      "sigma 1.5, population covariance, border crop 5, mean over channels): metrics.psnr + metrics.ssim",
      "skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, "
      "data_range=255, channel_axis=-1), the usual Python number; not comparable with MATLAB SSIM tables",
      _uint8_scorer(metrics_lib.ssim),
    ),
    Protocol(
      "realblur_ecc",
      "output rounded to uint8; least-squares gain onto the ground truth, ECC homography alignment, PSNR and "
      "scikit-image SSIM over the warp's valid pixels (data range 1, 5-pixel crop); a constant output is "
      "not aligned and is flagged ecc_failed: realblur_protocol.realblur_metrics",
      "rimchang/RealBlur evaluation_RealBlur_ecc.py (also in MPRNet and Restormer)",
      _realblur_score,
      flag=("ecc_failed", "ecc_failures"),
    ),
    Protocol(
      "kohler_eccv12",
      "output rounded to uint8; for every ground-truth frame of the shake (shake (1, 3): frames 1-29, "
      "31-198): least-squares gain, integer DFT registration of the channel means, zero-fill shift with a "
      "mask, PSNR on luminance Y (peak 255); the maximum over frames. SSIM: Gaussian SSIM on Y of the best "
      "frame's registered pair (not the official MSSIM): kohler_protocol.score",
      "Köhler et al. ECCV 2012 benchmark eval_image.m + get_best_metric_value2.m (copy in codeslake/PVDNet "
      "evaluation/evaluation_code/)",
      _kohler_score,
      extra_keys=("sharp_frames", "sharp_frame_numbers", "image_index", "kernel_index"),
      flag=("degenerate", "degenerate_outputs"),
    ),
  )
}

# Default protocol by dataset name: each benchmark is scored the way its published numbers were.
DATASET_PROTOCOLS = {
  "gopro": metrics_lib.MATLAB_PROTOCOL,
  "hide": metrics_lib.MATLAB_PROTOCOL,
  "realblur": "realblur_ecc",
  "kohler": "kohler_eccv12",
}


def protocol_for(ds_cfg) -> str:
  """`dataset.protocol` when set, else the dataset's own protocol (`DATASET_PROTOCOLS`), else rgb_uint8_gauss11."""
  name = ds_cfg.get("protocol", None) or DATASET_PROTOCOLS.get(str(ds_cfg.name), metrics_lib.DEFAULT_PROTOCOL)
  if name not in PROTOCOLS:
    raise config_validation.ConfigError(
      f"dataset.protocol={name!r} is not a known protocol; expected one of {sorted(PROTOCOLS)}"
    )
  return name


def score_images(protocol: str, restored, examples: list) -> list[dict]:
  """Per-image scores of float [0, 1] outputs [B, H, W, 3] under `protocol` (for callers outside evaluate)."""
  return PROTOCOLS[protocol].score(restored, examples)


def headline(summary: dict) -> str:
  """'PSNR 28.10 dB (input 25.31), SSIM 0.8712 (input 0.7901) [gopro_matlab]' for logs of callers."""
  if summary.get("psnr") is None:
    return f"no ground truth [{summary['protocol']}]"
  return (
    f"PSNR {summary['psnr']:.2f} dB (input {summary['input_psnr']:.2f}), SSIM {summary['ssim']:.4f} "
    f"(input {summary['input_ssim']:.4f}) [{summary['protocol']}]"
  )


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
        f"{list(tfds_builders.BUILDER_NAMES)} or another registered TFDS name"
      ) from None
    try:
      protocol_for(ds_cfg)
    except config_validation.ConfigError as e:
      raise config_validation.ConfigError(f"config.eval_datasets[{i}]: {e}") from None
    key = (label_of(ds_cfg), ds_cfg.get("split", "test"))
    if key in labels:
      raise config_validation.ConfigError(
        f"config.eval_datasets[{i}] writes {key[0]}_{key[1]}.json like an earlier entry; give the entries "
        "distinct `label` fields"
      )
    labels.add(key)


class _Batcher:
  """Groups examples by size and runs them through the jitted, device-sharded deblur."""

  def __init__(self, restored: inference.Restored, mesh, protocol: Protocol):
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
    blurry_host = np.stack([e["blurry"] for e in examples])
    blurry, hw = inference.pad_to_multiple(blurry_host, self.factor)
    blurry, n = inference.pad_batch(blurry, self.devices)
    out = inference.crop(self.deblur(self.restored.params, blurry), hw)[:n]
    scores = input_scores = None
    if all("sharp" in e for e in examples):
      scores = self.protocol.score(out, examples)
      # The blurred input under the same protocol: what the network has to beat.
      input_scores = self.protocol.score(train_step.to_float(jnp.asarray(blurry_host)), examples)
    out_host = np.asarray(jax.device_get(out)) if any(e["want_grid"] for e in examples) else None
    for i, e in enumerate(examples):
      entry: dict[str, Any] = {"image_id": e["image_id"], "height": int(hw[0]), "width": int(hw[1])}
      if scores is not None:
        entry.update(scores[i])
        entry["input_psnr"], entry["input_ssim"] = input_scores[i]["psnr"], input_scores[i]["ssim"]
      self.results.append(entry)
      if e["want_grid"]:
        self.grid.append((e["blurry"], np.asarray(jax.device_get(metrics_lib.to_uint8(out_host[i]))), e.get("sharp")))


class _WithExtras:
  """The eval transform plus the record fields a protocol needs (Köhler's frames); picklable for grain."""

  def __init__(self, keys: tuple[str, ...]):
    self.keys = keys

  def __call__(self, record):
    from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

    out = input_pipeline.EvalTransform()(record)
    for key in self.keys:
      if record.get(key) is None:
        raise ValueError(
          f"eval record {out['image_id']!r} has no {key!r}, which its protocol needs (rebuild the "
          "dataset with the current builder)"
        )
      out[key] = record[key]
    return out


def _eval_iterator(ds_cfg, extra_keys: tuple[str, ...]):
  """input_pipeline's eval iterator; with `extra_keys`, the same strided share keeping those record fields."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  if not extra_keys:
    return input_pipeline.create_eval_iterator(ds_cfg, process_index=None, process_count=None)
  import grain  # pylint: disable=g-import-not-at-top

  source = input_pipeline.open_source(ds_cfg)
  pi, pc = jax.process_index(), jax.process_count()
  ds = grain.MapDataset.source(source)[pi::pc].map(_WithExtras(extra_keys))
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def _share_size(ds_cfg, max_images: int | None) -> int | None:
  """How many images this process scores, for the progress bar's ETA; None (a bar without ETA) if unknown."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  try:
    n = len(range(jax.process_index(), len(input_pipeline.open_source(ds_cfg)), jax.process_count()))
  except Exception:  # pylint: disable=broad-except  (a source without a length: the bar only loses its ETA)
    return max_images
  return n if max_images is None else min(n, max_images)


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


def evaluate_dataset(
  restored: inference.Restored, ds_cfg, mesh, *, num_grid_images: int = 4, max_images: int | None = None
) -> tuple[dict, list]:
  """(summary with per-image scores, grid rows) of this process's share of one dataset."""
  protocol = PROTOCOLS[protocol_for(ds_cfg)]
  batcher = _Batcher(restored, mesh, protocol)
  iterator = _eval_iterator(ds_cfg, protocol.extra_keys)
  t0 = time.time()
  bar = tqdm(
    iterator,
    total=_share_size(ds_cfg, max_images),
    desc=f"eval {label_of(ds_cfg)}",
    unit="image",
    leave=False,
    disable=None,
  )
  for i, example in enumerate(bar):
    if max_images is not None and i >= max_images:
      break
    batcher.add(dict(example), want_grid=i < num_grid_images)
  batcher.flush()
  summary = {
    "dataset": str(ds_cfg.name),
    "config": ds_cfg.get("config", None),
    "split": ds_cfg.get("split", "test"),
    "label": label_of(ds_cfg),
    "protocol": protocol.name,
    "protocol_definition": protocol.definition,
    "protocol_source": protocol.source,
    "num_images": len(batcher.results),
    "seconds": round(time.time() - t0, 3),
    "num_image_sizes": len(batcher.shapes),
    "per_image": batcher.results,
  }
  return summary, batcher.grid


def _aggregate(summary: dict) -> dict:
  scored = [r for r in summary["per_image"] if "psnr" in r]
  summary["num_images"] = len(summary["per_image"])
  summary["num_scored"] = len(scored)
  for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
    summary[key] = float(np.mean([r[key] for r in scored])) if scored else None
  flag = PROTOCOLS[summary["protocol"]].flag
  if flag:
    summary[flag[1]] = sum(bool(r.get(flag[0])) for r in summary["per_image"])
  return summary


def write_report(eval_dir: epath.Path) -> epath.Path:
  """report.md: one row per JSON in the eval folder, the input's scores beside the output's."""
  rows, used = [], []
  fmt = lambda v, p: "n/a (no ground truth)" if v is None else f"{v:.{p}f}"
  for path in sorted(eval_dir.glob("*.json")):
    s = json.loads(path.read_text())
    if "protocol" not in s:
      continue
    used.append(s["protocol"])
    grid = s.get("grid")
    rows.append(
      f"| {s['label']} | {s.get('config') or ''} | {s['split']} | {s['num_images']} | "
      f"{fmt(s['psnr'], 2)} | {fmt(s['ssim'], 4)} | {fmt(s.get('input_psnr'), 2)} | "
      f"{fmt(s.get('input_ssim'), 4)} | {s['protocol']} | {s['step']} | {s['params']} | "
      + (f"[grid]({grid})" if grid else "")
      + " |"
    )
  legend = [
    f"- `{name}`: {PROTOCOLS[name].definition}. Source: {PROTOCOLS[name].source}."
    for name in dict.fromkeys(used)
    if name in PROTOCOLS
  ]
  text = [
    "# Evaluation report",
    "",
    "PSNR/SSIM at full resolution of the output and of the blurred input (same protocol); protocols "
    "(also in docs/DESIGN.md):",
    "",
    *legend,
    "",
    "| dataset | config | split | images | PSNR (dB) | SSIM | input PSNR | input SSIM | protocol | step | params "
    "| grid |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
  ]
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


def evaluate(
  workdir: str,
  config: ml_collections.ConfigDict | None = None,
  *,
  use_ema: bool = True,
  step: int | None = None,
  bf16: bool = False,
  max_images: int | None = None,
  restored: inference.Restored | None = None,
) -> dict[str, dict]:
  """Evaluates the latest (or `step`) checkpoint of `workdir`; returns {"<label>_<split>": summary}.

  Each summary holds `psnr`/`ssim` of the outputs and `input_psnr`/`input_ssim` of the blurred inputs under the
  same protocol (None without ground truth); `headline(summary)` formats them for a log line.

  The model always comes from the workdir's saved config; `config` (default: the saved one) only supplies
  `eval_datasets` and `eval_num_grid_images`, so a run can be evaluated on datasets it was not configured with.
  """
  workdir = epath.Path(workdir)
  restored = restored or inference.load(str(workdir), use_ema=use_ema, step=step, bf16=bf16)
  config = config if config is not None else restored.config
  results = _evaluate_restored(
    restored,
    config,
    workdir,
    params_kind=train_state.params_kind(restored.config, use_ema),
    bf16=bf16,
    max_images=max_images,
  )
  if jax.process_index() == 0:
    _write_scalars(str(workdir), restored.step, results)
  return results


def evaluate_params(
  model,
  params,
  step: int,
  config: ml_collections.ConfigDict,
  mesh=None,
  workdir: str | None = None,
  *,
  params_kind: str = "ema",
  max_images: int | None = None,
) -> dict[str, dict]:
  """The training loop's evaluation of in-memory params on `config.eval_datasets`: {"<label>_<split>": summary}.

  Summaries are those of `evaluate` (output and input scores) plus `strip`, the blurred | output | sharp grid as
  a uint8 array (process 0, when `eval_num_grid_images` > 0). With `workdir`, the JSON files, grids and report.md
  of --mode=evaluate are written too; without it nothing is written, and with several processes each summary
  covers this process's share only (`partial`). `mesh` is used in single-process runs (else the local devices').
  """
  restored = inference.Restored(model, params, int(step), config)
  return _evaluate_restored(
    restored,
    config,
    epath.Path(workdir) if workdir else None,
    params_kind=params_kind,
    max_images=max_images,
    mesh=mesh,
    keep_strip=True,
  )


def _evaluate_restored(
  restored: inference.Restored,
  config,
  workdir: epath.Path | None,
  *,
  params_kind: str,
  bf16: bool = False,
  max_images: int | None = None,
  mesh=None,
  keep_strip: bool = False,
) -> dict[str, dict]:
  # A config loaded from DIR/config.json holds the list entries as plain dicts.
  datasets = [ml_collections.ConfigDict(d) if isinstance(d, dict) else d for d in config.get("eval_datasets", [])]
  if not datasets:
    raise config_validation.ConfigError("config.eval_datasets is empty: nothing to evaluate")
  check_dataset_names(datasets)
  pi, pc = jax.process_index(), jax.process_count()
  eval_dir = workdir / EVAL_DIR if workdir is not None else None
  if eval_dir is not None:
    eval_dir.mkdir(parents=True, exist_ok=True)
  if mesh is None or pc > 1:
    mesh = sharding_lib.create_mesh((-1, 1), devices=jax.local_devices())
  results = {}
  for ds_cfg in datasets:
    summary, grid_rows = evaluate_dataset(
      restored, ds_cfg, mesh, num_grid_images=config.get("eval_num_grid_images", 4), max_images=max_images
    )
    stem = f"{summary['label']}_{summary['split']}"
    summary.update(
      step=restored.step,
      params=params_kind,
      workdir=str(workdir) if workdir else None,
      bf16=bool(bf16),
      preset=restored.config.model.get("preset"),
    )
    if pc > 1 and eval_dir is not None:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      parts_dir = eval_dir / ".parts"
      parts_dir.mkdir(parents=True, exist_ok=True)
      _write_json(parts_dir / f"{stem}.process_{pi}-of-{pc}.json", summary)
      multihost_utils.sync_global_devices(f"eval {stem}")
      summary = _merge_parts(parts_dir, stem, pc)
    elif pc > 1:
      summary["partial"] = True
    summary = _aggregate(summary)
    strip = _grid_image(grid_rows) if grid_rows and pi == 0 else None
    if pi == 0 and eval_dir is not None:
      if strip is not None:
        from PIL import Image  # pylint: disable=g-import-not-at-top

        summary["grid"] = f"{stem}_grid.png"
        Image.fromarray(strip).save(eval_dir / summary["grid"])
      _write_json(eval_dir / f"{stem}.json", summary)
      logging.info(
        "eval %s at step %d: %s over %d images, %.1fs",
        stem,
        restored.step,
        headline(summary),
        summary["num_images"],
        summary["seconds"],
      )
    if keep_strip:
      summary["strip"] = strip
    results[stem] = summary
  if pi == 0 and eval_dir is not None:
    write_report(eval_dir)
  return results


def _write_scalars(workdir: str, step: int, results: dict) -> None:
  from bdirnet_jax import writers  # pylint: disable=g-import-not-at-top

  scalars = {}
  for stem, s in results.items():
    if s["psnr"] is not None:
      for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
        scalars[f"eval/{stem}/{key}"] = s[key]
  if scalars:
    writer = writers.create_writer(workdir, jax.process_index())
    writer.write_scalars(step, scalars)
    writer.close()
