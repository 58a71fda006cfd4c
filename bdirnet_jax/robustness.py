"""Robustness report: the "train on X, test on Y" matrix the paper argues about.

  python -m bdirnet_jax.robustness --workdirs=runs/traj,runs/gauss --output=reports/robustness \\
      [--data_dir=D] [--families=trajectory,linear,gaussian,defocus] [--max_images=N] [--bf16]

Evaluates every checkpoint on the test split of every synthetic blur family (built on first use from the photos
shipped with scikit-image/scikit-learn) and of every real dataset prepared in `--data_dir` (GoPro, HIDE, RealBlur,
Köhler, Lai; the ones not prepared are listed as skipped), each under its own protocol (`protocols.PROTOCOLS`:
Köhler with the official best-frame search). Writes robustness.md and robustness.csv (one row per checkpoint x
test set, the blurred input's scores beside the output's) and robustness_psnr.png (PSNR by test set, one bar per
checkpoint). Each checkpoint's
per-image scores also land in its own DIR/eval/ through `evaluate.evaluate`.
"""

import csv
import io
from typing import Sequence

import ml_collections
from absl import app
from absl import flags
from absl import logging
from etils import epath
from tqdm import tqdm

from bdirnet_jax import blur
from bdirnet_jax import command_line
from bdirnet_jax import data_config
from bdirnet_jax import evaluate
from bdirnet_jax import inference
from bdirnet_jax import protocols

SYNTHETIC = "synthetic_blur"
# Real benchmarks with ground truth, as (name, builder config); Lai's "real" set has none, so it cannot be scored.
REAL_DATASETS = (
  ("gopro", "blur"),
  ("hide", None),
  ("realblur", "j"),
  ("realblur", "r"),
  ("kohler", None),
  ("lai", "synthetic_uniform"),
  ("lai", "synthetic_nonuniform"),
)
CSV_FIELDS = (
  "checkpoint",
  "trained_on",
  "step",
  "test_set",
  "split",
  "protocol",
  "num_images",
  "psnr",
  "ssim",
  "input_psnr",
  "input_ssim",
)


def _test_set(name, config, data_dir, auto_prepare):
  label = name if config is None else f"{name}-{config}"
  return data_config.dataset_config(
    name, config, "test", crop_size=0, data_dir=data_dir, label=label, auto_prepare=auto_prepare
  )


def test_sets(
  data_dir: str | None, families: Sequence[str], real: Sequence[tuple[str, str | None]] = REAL_DATASETS
) -> tuple[list[ml_collections.ConfigDict], list[str]]:
  """(dataset configs to evaluate, labels of real datasets skipped because they are not prepared)."""
  from bdirnet_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  blur.check_families(sorted(set(families)), "--families")
  sets = [_test_set(SYNTHETIC, family, data_dir, True) for family in families]
  skipped = []
  for name, config in real:
    ds_cfg = _test_set(name, config, data_dir, False)
    try:
      input_pipeline.open_source(ds_cfg)
    except FileNotFoundError:
      skipped.append(ds_cfg.label)
      continue
    sets.append(ds_cfg)
  return sets, skipped


def _trained_on(config) -> str:
  ds = config.dataset
  name = f"{ds.name}/{ds.config}" if ds.get("config") else str(ds.name)
  return name + (f" (on-the-fly {ds.blur_family})" if ds.get("on_the_fly_blur") else "")


def run(
  workdirs: Sequence[str],
  output_dir: str,
  *,
  data_dir: str | None = None,
  families: Sequence[str] = blur.FAMILIES,
  real: Sequence[tuple[str, str | None]] = REAL_DATASETS,
  max_images: int | None = None,
  bf16: bool = False,
  use_ema: bool = True,
) -> list[dict]:
  """Evaluates each workdir on each test set; writes the table, CSV and plot; returns the CSV rows."""
  sets, skipped = test_sets(data_dir, families, real)
  rows = []
  for workdir in tqdm(workdirs, desc="robustness", unit="run", disable=None):  # drawn on a terminal only
    restored = inference.load(workdir, use_ema=use_ema, bf16=bf16)
    config = ml_collections.ConfigDict({"eval_datasets": sets, "eval_num_grid_images": 2})
    results = evaluate.evaluate(workdir, config, restored=restored, max_images=max_images, use_ema=use_ema, bf16=bf16)
    for ds_cfg in sets:
      s = results[f"{ds_cfg.label}_test"]
      rows.append(
        dict(
          checkpoint=str(workdir),
          trained_on=_trained_on(restored.config),
          step=restored.step,
          test_set=ds_cfg.label,
          split="test",
          protocol=s["protocol"],
          num_images=s["num_images"],
          psnr=s["psnr"],
          ssim=s["ssim"],
          input_psnr=s["input_psnr"],
          input_ssim=s["input_ssim"],
        )
      )
  out = epath.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  (out / "robustness.csv").write_text(buffer.getvalue())
  (out / "robustness.md").write_text(_markdown(rows, [s.label for s in sets], skipped, max_images))
  _plot(rows, [s.label for s in sets], out / "robustness_psnr.png")
  logging.info("Robustness report in %s", out)
  return rows


def _markdown(rows, labels, skipped, max_images) -> str:
  checkpoints = list(dict.fromkeys((r["checkpoint"], r["trained_on"], r["step"]) for r in rows))
  cell = {(r["checkpoint"], r["test_set"]): r for r in rows}
  fmt = lambda r: (
    "n/a"
    if r["psnr"] is None
    else f"{r['psnr']:.2f} / {r['ssim']:.3f} (input {r['input_psnr']:.2f} / {r['input_ssim']:.3f})"
  )
  used = dict.fromkeys(r["protocol"] for r in rows)
  lines = [
    "# Robustness: train on X, test on Y",
    "",
    "PSNR (dB) / SSIM of the output on each test split at full resolution, and in brackets the blurred "
    "input's under the same protocol. Synthetic columns: `synthetic_blur` rebuilt with one kernel family "
    "each. Protocols:",
    "",
  ]
  lines += [f"- `{p}`: {protocols.PROTOCOLS[p].definition}." for p in used if p in protocols.PROTOCOLS]
  lines += [""]
  if max_images:
    lines += [f"At most {max_images} images per test set (a quick look, not a benchmark number).", ""]
  lines += ["| checkpoint | trained on | step | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
  for ckpt, trained_on, step in checkpoints:
    lines.append(
      f"| {ckpt} | {trained_on} | {step} | " + " | ".join(fmt(cell[(ckpt, label)]) for label in labels) + " |"
    )
  if skipped:
    lines += [
      "",
      "Not prepared in the data_dir, so skipped: "
      + ", ".join(skipped)
      + " (build with `python -m tfds_builders.cli build ...`).",
    ]
  return "\n".join(lines) + "\n"


def _plot(rows, labels, path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
  cell = {(r["checkpoint"], r["test_set"]): r["psnr"] for r in rows}
  width = 0.8 / max(len(checkpoints), 1)
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 2), 4))
  x = np.arange(len(labels))
  for i, ckpt in enumerate(checkpoints):
    values = [cell.get((ckpt, label)) or 0.0 for label in labels]
    ax.bar(x + (i - (len(checkpoints) - 1) / 2) * width, values, width, label=epath.Path(ckpt).name)
  ax.set_xticks(x, [label.replace("synthetic_blur-", "") for label in labels], rotation=30, ha="right")
  ax.set_ylabel("PSNR (dB)")
  ax.set_title("PSNR by blur family / test set")
  ax.legend(title="checkpoint", fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_list("workdirs", None, "Comma-separated trained workdirs (each with config.json and checkpoints).")
  flags.DEFINE_string("output", None, "Folder for robustness.md, robustness.csv and robustness_psnr.png.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir holding prepared datasets (synthetic ones are built there).")
  flags.DEFINE_list("families", list(blur.FAMILIES), "Synthetic blur families to test on.")
  flags.DEFINE_integer("max_images", None, "At most this many images per test set.")
  flags.DEFINE_bool("bf16", False, "bfloat16 activations.")


def main(argv):
  del argv
  command_line.setup_logging()
  command_line.no_bars_when_redirected()
  if not FLAGS.workdirs or not FLAGS.output:
    raise app.UsageError("--workdirs=DIR[,DIR...] and --output=DIR are required")
  run(
    FLAGS.workdirs,
    FLAGS.output,
    data_dir=FLAGS.data_dir,
    families=FLAGS.families,
    max_images=FLAGS.max_images,
    bf16=FLAGS.bf16,
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
