"""One evaluation summary from the processes' shares of a dataset.

Process i of n scores images i, i+n, ... of a split (so no collective waits on another process's image sizes);
the shares meet either through files (`--mode=evaluate`, which writes DIR/eval anyway) or through an all-gather
of their JSON (the training loop's evaluations that write nothing).
"""

import json

import jax
import numpy as np
from etils import epath

from bdirnet_jax import atomic_io
from bdirnet_jax import protocols


def aggregate(summary: dict) -> dict:
  """Adds the means over the scored images (None without ground truth) and the protocol's flag count."""
  scored = [r for r in summary["per_image"] if "psnr" in r]
  summary["num_images"] = len(summary["per_image"])
  summary["num_scored"] = len(scored)
  for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
    summary[key] = float(np.mean([r[key] for r in scored])) if scored else None
  flag = protocols.PROTOCOLS[summary["protocol"]].flag
  if flag:
    summary[flag[1]] = sum(bool(r.get(flag[0])) for r in summary["per_image"])
  return summary


def merge(parts: list[dict]) -> dict:
  """Per-image entries in source order, the slowest process's seconds."""
  merged = dict(parts[0])
  merged["per_image"] = sorted((r for p in parts for r in p["per_image"]), key=lambda r: r["index"])
  merged["seconds"] = max(p["seconds"] for p in parts)
  merged["num_image_sizes"] = len({(r["height"], r["width"]) for r in merged["per_image"]})
  return merged


def _through_files(summary: dict, eval_dir: epath.Path, stem: str) -> dict:
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  pi, pc = jax.process_index(), jax.process_count()
  parts_dir = eval_dir / ".parts"
  parts_dir.mkdir(parents=True, exist_ok=True)
  atomic_io.write_json(parts_dir / f"{stem}.process_{pi}-of-{pc}.json", summary, indent=1)
  multihost_utils.sync_global_devices(f"eval {stem}")
  return merge([json.loads((parts_dir / f"{stem}.process_{i}-of-{pc}.json").read_text()) for i in range(pc)])


def _through_allgather(summary: dict) -> dict:
  """JSON bytes padded to the longest and all-gathered: every process gets every share."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  data = np.frombuffer(json.dumps(summary).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[: data.size] = data
  everything = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
  return merge([json.loads(bytes(everything[i, : sizes[i]]).decode()) for i in range(len(sizes))])


def combine(summary: dict, eval_dir: epath.Path | None, stem: str) -> dict:
  """The whole dataset's aggregated summary, on every process (files under `eval_dir/.parts` when given)."""
  if jax.process_count() > 1:
    summary = _through_files(summary, eval_dir, stem) if eval_dir is not None else _through_allgather(summary)
  return aggregate(summary)
