"""Full-resolution evaluation of a trained workdir on every `config.eval_datasets` entry.

Writes DIR/eval/<label>_<split>.json (summary + per-image scores of the output and of the blurred input, under the
same protocol), DIR/eval/<label>_<split>_grid.png (blurred | output | sharp rows) and DIR/eval/report.md (both
eval_report's). `label` is `dataset.label` when set, else the dataset name.

Every number belongs to a protocol of `protocols.PROTOCOLS`; `dataset.protocol` picks one, else
`protocols.DATASET_PROTOCOLS` by dataset name. Images are reflect-padded to the network's multiple and cropped
back before scoring. Images of one size are batched across the local devices (`batching.Batcher` without
buckets); each process scores its own strided share and `eval_shares` merges them.
"""

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from tqdm import tqdm

from bdirnet_jax import atomic_io
from bdirnet_jax import batching
from bdirnet_jax import config_validation
from bdirnet_jax import eval_report
from bdirnet_jax import eval_shares
from bdirnet_jax import inference
from bdirnet_jax import metrics as metrics_lib
from bdirnet_jax import protocols
from bdirnet_jax import sharding as sharding_lib
from bdirnet_jax import train_state
from bdirnet_jax import train_step

EVAL_DIR = "eval"


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
      protocols.protocol_for(ds_cfg)
    except config_validation.ConfigError as e:
      raise config_validation.ConfigError(f"config.eval_datasets[{i}]: {e}") from None
    key = (label_of(ds_cfg), ds_cfg.get("split", "test"))
    if key in labels:
      raise config_validation.ConfigError(
        f"config.eval_datasets[{i}] writes {key[0]}_{key[1]}.json like an earlier entry; give the entries "
        "distinct `label` fields"
      )
    labels.add(key)


class _Scorer:
  """Collects the per-image scores (and preview rows) of the batches `batching.Batcher` runs."""

  def __init__(self, protocol: protocols.Protocol):
    self.protocol = protocol
    self.results: list[dict] = []
    self.preview: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    self.shapes: set[tuple[int, int]] = set()

  def __call__(self, examples: list[dict], out, sizes: list[tuple[int, int]]) -> None:
    hw = sizes[0]  # one exact size per batch
    self.shapes.add(hw)
    out = inference.crop(out, hw)[: len(examples)]
    scores = input_scores = None
    if all("sharp" in e for e in examples):
      scores = self.protocol.score(out, examples)
      # The blurred input under the same protocol: what the network has to beat.
      blurry = np.stack([e["blurry"] for e in examples])
      input_scores = self.protocol.score(train_step.to_float(jnp.asarray(blurry)), examples)
    out_host = np.asarray(jax.device_get(out)) if any(e["in_preview"] for e in examples) else None
    for i, e in enumerate(examples):
      entry: dict[str, Any] = {
        "image_id": e["image_id"],
        "index": e["index"],
        "height": int(hw[0]),
        "width": int(hw[1]),
      }
      if scores is not None:
        entry.update(scores[i])
        entry["input_psnr"], entry["input_ssim"] = input_scores[i]["psnr"], input_scores[i]["ssim"]
      self.results.append(entry)
      if e["in_preview"]:
        self.preview.append((e["blurry"], np.asarray(metrics_lib.to_uint8(out_host[i])), e.get("sharp")))


def _share_size(ds_cfg, max_images: int | None) -> int | None:
  """How many images this process scores, for the progress bar's ETA; None (a bar without ETA) if unknown."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  try:
    n = len(range(jax.process_index(), len(input_pipeline.open_source(ds_cfg)), jax.process_count()))
  except Exception:  # pylint: disable=broad-except  (a source without a length: the bar only loses its ETA)
    return max_images
  return n if max_images is None else min(n, max_images)


def evaluate_dataset(
  restored: inference.Restored, ds_cfg, mesh, *, num_grid_images: int = 4, max_images: int | None = None
) -> tuple[dict, list]:
  """(summary with per-image scores, preview rows) of this process's share of one dataset."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  protocol = protocols.PROTOCOLS[protocols.protocol_for(ds_cfg)]
  scorer = _Scorer(protocol)
  devices = mesh.shape[sharding_lib.DATA_AXIS]
  batcher = batching.Batcher(
    functools.partial(inference.jit_deblur(restored.model, mesh), restored.params),
    scorer,
    multiple=restored.model.downsample_factor,
    batch_multiple=devices,
    batch_size=devices,
    buckets=False,
    log_name="eval",
  )
  iterator = input_pipeline.create_eval_iterator(
    ds_cfg, process_index=None, process_count=None, extra_keys=protocol.extra_keys
  )
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
    # `index`: the position in the split (this process's i-th of its strided share): batches finish by image size,
    # and the per-image list is put back in source order, whatever the device and process counts.
    example = dict(example, in_preview=i < num_grid_images, index=i * jax.process_count() + jax.process_index())
    batcher.add(example["blurry"], example)
  batcher.finish()
  scorer.results.sort(key=lambda r: r["index"])
  summary = {
    "dataset": str(ds_cfg.name),
    "config": ds_cfg.get("config", None),
    "split": ds_cfg.get("split", "test"),
    "label": label_of(ds_cfg),
    "protocol": protocol.name,
    "protocol_definition": protocol.definition,
    "protocol_source": protocol.source,
    "num_images": len(scorer.results),
    "seconds": round(time.time() - t0, 3),
    "num_image_sizes": len(scorer.shapes),
    "per_image": scorer.results,
  }
  return summary, scorer.preview


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
  of --mode=evaluate are written too; without it nothing is written. With several processes every summary covers
  the whole dataset (the processes' shares merged). `mesh` is used in single-process runs (else the local
  devices').
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
    summary, preview_rows = evaluate_dataset(
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
    summary = eval_shares.combine(summary, eval_dir, stem)
    strip = eval_report.preview_strip(preview_rows) if preview_rows and pi == 0 else None
    if pi == 0 and eval_dir is not None:
      if strip is not None:
        from PIL import Image  # pylint: disable=g-import-not-at-top

        summary["grid"] = f"{stem}_grid.png"
        Image.fromarray(strip).save(eval_dir / summary["grid"])
      atomic_io.write_json(eval_dir / f"{stem}.json", summary, indent=1)
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
    eval_report.write_report(eval_dir)
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
