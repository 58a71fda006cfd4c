"""What --mode=evaluate writes beside its JSON files: the preview strip (DIR/eval/<label>_<split>_grid.png) and
DIR/eval/report.md, a table of every JSON summary in the folder (so evaluations of several datasets or steps
accumulate), with each protocol's definition."""

import json

import numpy as np
from etils import epath

from bdirnet_jax import atomic_io
from bdirnet_jax import protocols

GRID_ROW_HEIGHT = 192  # pixels of one row (blurred | output | sharp) of a preview strip


def preview_strip(rows) -> np.ndarray:
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
    f"- `{name}`: {protocols.PROTOCOLS[name].definition}. Source: {protocols.PROTOCOLS[name].source}."
    for name in dict.fromkeys(used)
    if name in protocols.PROTOCOLS
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
  atomic_io.write_text(path, "\n".join(text))
  return path
