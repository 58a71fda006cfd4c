"""The study's statistics and report: report.csv, report.md and report_psnr.png from per-image score rows.

Rows are dicts with `config, train_blur, seed, test_set, image_id, psnr, ssim, step`; baselines (`config` in
`classical.BASELINES`) have an empty train_blur, seed and step. Statistical rules (also in docs/DESIGN.md):

* cell = (config, train blur, test set). A seed's cell score is the mean over the cell's images; the table shows
  the mean and the sample standard deviation (ddof=1) of these per-seed scores. The mean equals the mean of the
  cell's CSV rows because every seed sees the same images.
* in-distribution: a synthetic test family equal to the training family; a run trained on `mixed` (which draws all
  four families) counts every synthetic family as in-distribution. Real datasets are always out-of-distribution.
  In/out-of-distribution means are over all (seed, test set, image) rows in scope.
* "learned?": a run's in-distribution PSNR gain over the blurred input on the same images; "yes" when it reaches
  `min_gain_db`.
* paired differences: variant minus reference, paired on (seed, test set, image) of runs with the same training
  family and seed. 95% interval: percentile bootstrap of the mean difference, resampling seeds and images
  independently with replacement (two-way crossed bootstrap: both the seed and the image are random factors,
  every resampled seed is scored on every resampled image), numpy rng seeded by the comparison's name and the
  study's bootstrap seed. Verdict: "better" when the interval is above 0, "worse" when below, otherwise
  "not distinguishable at this budget".
"""

import csv
import io
import json
from typing import Sequence

import numpy as np
from etils import epath

from bdirnet_jax import blur
from bdirnet_jax import classical
from bdirnet_jax.study import testsets

CSV_FIELDS = ("config", "train_blur", "seed", "test_set", "image_id", "psnr", "ssim", "step")
REFERENCES = ("unet_baseline", "bdirnet")
METRICS = (("psnr", "PSNR", "dB", 3), ("ssim", "SSIM", "", 4))
UNDECIDED = "not distinguishable at this budget"


def in_distribution(train_blur: str, test_set: str) -> bool:
  if test_set not in blur.FAMILIES:
    return False
  return train_blur == blur.MIXED or train_blur == test_set


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def bootstrap_mean_ci(
  diff: np.ndarray, *, samples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float, float]:
  """(mean, low, high) of a [seeds, images] matrix of paired differences (two-way crossed bootstrap, module doc).

  Resamples are mean + weighted means of the centred matrix, so a constant matrix gives an exact zero-width
  interval at its mean.
  """
  d = np.asarray(diff, np.float64)
  if d.ndim != 2 or d.size == 0:
    raise ValueError(f"expected a non-empty [seeds, images] matrix, got shape {d.shape}")
  n_s, n_i = d.shape
  mean = float(d.mean())
  centred = d - mean
  rng = np.random.default_rng(seed)
  ws = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=samples).astype(np.float64)
  wi = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=samples).astype(np.float64)
  stats = mean + np.einsum("bs,si,bi->b", ws, centred, wi) / (n_s * n_i)
  alpha = (1.0 - confidence) / 2.0
  lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
  return mean, float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
  if lo > 0:
    return "better"
  if hi < 0:
    return "worse"
  return UNDECIDED


def _index(rows):
  """{(config, train_blur, seed, test_set, image_id): row}."""
  return {(r["config"], r["train_blur"], r["seed"], r["test_set"], r["image_id"]): r for r in rows}


def _networks(rows):
  return [r for r in rows if r["config"] not in classical.BASELINES]


def cell_stats(rows, metric: str, config: str, train_blur: str, test_sets: Sequence[str]):
  """(mean over rows, std over seeds of per-seed means, n seeds) for the rows of one config/train blur in the given
  test sets; None when there are none."""
  sel = [r for r in rows if r["config"] == config and r["train_blur"] == train_blur and r["test_set"] in test_sets]
  if not sel:
    return None
  seeds = sorted({r["seed"] for r in sel})
  per_seed = [np.mean([r[metric] for r in sel if r["seed"] == s]) for s in seeds]
  std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
  return float(np.mean([r[metric] for r in sel])), std, len(seeds)


def baseline_mean(rows, metric: str, method: str, test_sets: Sequence[str]):
  sel = [r[metric] for r in rows if r["config"] == method and r["test_set"] in test_sets]
  return float(np.mean(sel)) if sel else None


def run_summaries(rows, min_gain_db: float) -> list[dict]:
  """Per run: in-distribution PSNR, the input's PSNR on the same images, the gain and whether it learned."""
  inputs = {(r["test_set"], r["image_id"]): r["psnr"] for r in rows if r["config"] == "input"}
  runs = list(dict.fromkeys((r["config"], r["train_blur"], r["seed"], r["step"]) for r in _networks(rows)))
  out = []
  for config, train_blur, seed, step in runs:
    sel = [
      r
      for r in rows
      if (r["config"], r["train_blur"], r["seed"]) == (config, train_blur, seed)
      and in_distribution(train_blur, r["test_set"])
      and (r["test_set"], r["image_id"]) in inputs
    ]
    entry = dict(config=config, train_blur=train_blur, seed=seed, step=step, n=len(sel))
    if sel:
      psnr = float(np.mean([r["psnr"] for r in sel]))
      base = float(np.mean([inputs[(r["test_set"], r["image_id"])] for r in sel]))
      entry.update(psnr=psnr, input_psnr=base, gain=psnr - base, learned=psnr - base >= min_gain_db)
    out.append(entry)
  return out


def comparisons(rows, *, samples: int, seed: int, confidence: float = 0.95) -> list[dict]:
  """Every variant against each reference present, per training family, scope and metric (module doc)."""
  nets = _networks(rows)
  configs = list(dict.fromkeys(r["config"] for r in nets))
  train_blurs = list(dict.fromkeys(r["train_blur"] for r in nets))
  index = _index(nets)
  out = []
  for ref in REFERENCES:
    if ref not in configs:
      continue
    variants = [c for c in configs if c != ref and not (ref == "bdirnet" and c == "unet_baseline")]
    for var in variants:
      for tb in train_blurs:
        ref_keys = {k[2:] for k in index if k[0] == ref and k[1] == tb}
        var_keys = {k[2:] for k in index if k[0] == var and k[1] == tb}
        common = ref_keys & var_keys
        for scope, inside in (("in-distribution", True), ("out-of-distribution", False)):
          keys = sorted(k for k in common if in_distribution(tb, k[1]) == inside)
          seeds = sorted({k[0] for k in keys})
          images = sorted({k[1:] for k in keys})
          if not keys or len(keys) != len(seeds) * len(images):
            continue  # nothing in scope (or an incomplete grid, which only a partial run could leave)
          for metric, name, unit, digits in METRICS:
            d = np.array(
              [[index[(var, tb, s) + im][metric] - index[(ref, tb, s) + im][metric] for im in images] for s in seeds]
            )
            rng_seed = testsets.stable_seed("bootstrap", seed, var, ref, tb, scope, metric)
            mean, lo, hi = bootstrap_mean_ci(d, samples=samples, seed=rng_seed, confidence=confidence)
            out.append(
              dict(
                variant=var,
                reference=ref,
                train_blur=tb,
                scope=scope,
                metric=metric,
                name=name,
                unit=unit,
                digits=digits,
                mean=mean,
                lo=lo,
                hi=hi,
                seeds=len(seeds),
                images=len(images),
                verdict=verdict(lo, hi),
              )
            )
  return out


def sentence(c: dict) -> str:
  d, u = c["digits"], (" " + c["unit"] if c["unit"] else "")
  numbers = (
    f"{c['mean']:+.{d}f}{u}, {c['confidence_pct']}% CI [{c['lo']:+.{d}f}, {c['hi']:+.{d}f}], "
    f"{c['seeds']} seeds x {c['images']} images"
  )
  where = f"trained on {c['train_blur']}, {c['scope']} {c['name']}"
  if c["verdict"] == UNDECIDED:
    return f"{c['variant']} vs {c['reference']} ({where}): {UNDECIDED} ({numbers})."
  return f"{c['variant']} vs {c['reference']} ({where}): {c['variant']} is {c['verdict']} ({numbers})."


# ---------------------------------------------------------------------------------------------------------------
# Writing


def write_csv(rows, path) -> None:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
  epath.Path(path).write_text(buffer.getvalue())


def _fmt(v, digits):
  return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _cell(stats, digits):
  if stats is None:
    return "–"
  mean, std, _ = stats
  return _fmt(mean, digits) + ("" if np.isnan(std) else f" ± {_fmt(std, digits)}")


def _exposures_note(study: dict) -> str:
  exposures = study.get("trajectory_exposures")
  return "" if exposures is None else ", trajectory exposures " + ", ".join(f"{e:g}" for e in exposures)


def markdown(
  rows,
  *,
  study: dict,
  test_sets: Sequence[testsets.TestSet],
  skipped: Sequence[str],
  summaries: list[dict],
  comps: list[dict],
  min_gain_db: float,
) -> str:
  nets = _networks(rows)
  cells = list(dict.fromkeys((r["config"], r["train_blur"]) for r in nets))
  labels = [ts.label for ts in test_sets]
  baselines = [b for b in classical.BASELINES if any(r["config"] == b for r in rows)]
  lines = [
    f"# Study: {study['name']}",
    "",
    f"Configs {', '.join(study['configs'])}; seeds {', '.join(map(str, study['seeds']))}; trained on "
    f"{', '.join(study['train_blurs'])} (on-the-fly blur, kernel size {study['kernel_size']}, noise sigma "
    f"{study['noise_sigma']}{_exposures_note(study)}) for {study['num_train_steps']} steps each; tested on "
    + ", ".join(f"{ts.label} ({len(ts)} images)" for ts in test_sets)
    + ".",
    "",
    "Overrides applied to every run: `" + json.dumps(study["overrides"], sort_keys=True) + "`.",
    "",
    "Scores: EMA parameters of each run's last checkpoint; outputs rounded to uint8, RGB PSNR (dB) and "
    "Gaussian 11x11 SSIM (`rgb_uint8_gauss11`; RealBlur: `realblur_ecc`). Synthetic test sets: the "
    "`synthetic_blur` test photos, square crops of at most "
    f"{study['max_side']} px, {study['variants']} fixed seeded kernels per photo and family "
    "(`bdirnet_jax/study/testsets.py`). Baselines (`bdirnet_jax/classical.py`): `input` is the blurred "
    "image; `wiener_oracle`, `rl_oracle`, `unsupervised_wiener` deconvolve with the true kernel (an "
    "oracle no blind method has), so they exist only for synthetic sets.",
    "",
  ]
  if study.get("not_run"):
    lines += [
      f"**Interim report**: {len(study['not_run'])} of the study's runs are not finished yet and are not "
      "in any number below: " + ", ".join(study["not_run"]) + ".",
      "",
    ]
  if study.get("drifted"):
    lines += [
      "**Warning**: these runs were trained under a config that differs from this study's (their "
      "checkpoints are used as they are; use a new --output to retrain): "
      + "; ".join(f"{run} ({', '.join(keys)})" for run, keys in sorted(study["drifted"].items()))
      + ".",
      "",
    ]
  if skipped:
    lines += ["Real datasets not prepared in the data_dir, so not tested: " + ", ".join(skipped) + ".", ""]

  lines += [
    "## Did every run learn?",
    "",
    f'In-distribution PSNR of each run against the blurred input on the same images; "yes" when the gain '
    f"is at least {min_gain_db} dB.",
    "",
    "| config | train blur | seed | step | in-dist PSNR | input PSNR | gain (dB) | learned? |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for s in summaries:
    if "gain" in s:
      lines.append(
        f"| {s['config']} | {s['train_blur']} | {s['seed']} | {s['step']} | {s['psnr']:.3f} | "
        f"{s['input_psnr']:.3f} | {s['gain']:+.3f} | {'yes' if s['learned'] else 'no'} |"
      )
    else:
      lines.append(
        f"| {s['config']} | {s['train_blur']} | {s['seed']} | {s['step']} | – | – | – | no in-distribution test set |"
      )
  learned = [s for s in summaries if s.get("learned")]
  lines += ["", f"{len(learned)} of {len(summaries)} runs learned.", ""]

  for metric, name, unit, digits in METRICS:
    lines += [
      f"## {name}" + (f" ({unit})" if unit else ""),
      "",
      "Mean ± standard deviation over seeds; in-dist / out-of-dist: mean over the rows in scope "
      "(rule below). Baseline rows: mean over the images.",
      "",
      "| config | train blur | " + " | ".join(labels) + " | in-dist | out-of-dist |",
      "|---|---|" + "---|" * (len(labels) + 2),
    ]
    for config, tb in cells:
      ind = [l for l in labels if in_distribution(tb, l)]
      ood = [l for l in labels if not in_distribution(tb, l)]
      lines.append(
        f"| {config} | {tb} | "
        + " | ".join(_cell(cell_stats(nets, metric, config, tb, [l]), digits) for l in labels)
        + f" | {_cell(cell_stats(nets, metric, config, tb, ind), digits)}"
        + f" | {_cell(cell_stats(nets, metric, config, tb, ood), digits)} |"
      )
    for b in baselines:
      lines.append(
        f"| {b} | – | " + " | ".join(_fmt(baseline_mean(rows, metric, b, [l]), digits) for l in labels) + " | – | – |"
      )
    lines.append("")

  lines += [
    "## Paired differences",
    "",
    "Variant minus reference, paired on (seed, test set, image); 95% percentile bootstrap interval "
    "resampling seeds and images (two-way crossed). Verdict from the interval: above 0 better, below 0 "
    'worse, containing 0 "not distinguishable at this budget".',
    "",
  ]
  if comps:
    lines += [
      "| variant | reference | train blur | scope | metric | mean diff | 95% CI | seeds x images | verdict |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comps:
      d = c["digits"]
      lines.append(
        f"| {c['variant']} | {c['reference']} | {c['train_blur']} | {c['scope']} | {c['name']} | "
        f"{c['mean']:+.{d}f} | [{c['lo']:+.{d}f}, {c['hi']:+.{d}f}] | {c['seeds']} x {c['images']} | "
        f"{c['verdict']} |"
      )
    lines.append("")
    lines += [f"- {sentence(c)}" for c in comps]
  else:
    lines.append("No comparison: the study holds neither `unet_baseline` nor `bdirnet` beside another config.")
  lines += [
    "",
    "## Rules",
    "",
    "- In-distribution: a synthetic test family equal to the training family; training on `mixed` draws "
    "all four families, so for it every synthetic family is in-distribution. Real datasets are always "
    "out-of-distribution.",
    "- Standard deviation: sample standard deviation (ddof=1) over seeds of each seed's mean; `–` with one seed.",
    f"- Bootstrap: {study['bootstrap_samples']} resamples, seeded (study bootstrap seed "
    f"{study['bootstrap_seed']}); seeds were fixed in the study config before any run, none dropped.",
    "",
  ]
  return "\n".join(lines)


def plot_bars(rows, labels: Sequence[str]) -> tuple[bool, dict]:
  """The values report_psnr.png draws: (relative, {train_blur: [(name, means, stds, is_baseline)]}).

  relative: PSNR gain over the blurred input on each test set, because absolute bars all sit near the input's PSNR
  and hide the differences a study is about; absolute PSNR when the rows have no `input` baseline.
  """
  nets = _networks(rows)
  train_blurs = list(dict.fromkeys(r["train_blur"] for r in nets)) or ["–"]
  configs = list(dict.fromkeys(r["config"] for r in nets))
  inputs = [baseline_mean(rows, "psnr", "input", [l]) for l in labels]
  relative = all(v is not None for v in inputs)
  offsets = inputs if relative else [0.0] * len(labels)
  baselines = [
    b for b in classical.BASELINES if any(r["config"] == b for r in rows) and not (relative and b == "input")
  ]
  bars = {}
  for tb in train_blurs:
    series = []
    for config in configs:
      stats = [cell_stats(nets, "psnr", config, tb, [l]) for l in labels]
      series.append(
        (
          config,
          [s[0] - o if s else 0.0 for s, o in zip(stats, offsets)],
          [0.0 if not s or np.isnan(s[1]) else s[1] for s in stats],
          False,
        )
      )
    for b in baselines:
      means = [baseline_mean(rows, "psnr", b, [l]) for l in labels]
      series.append((b, [m - o if m is not None else 0.0 for m, o in zip(means, offsets)], [0.0] * len(labels), True))
    bars[tb] = series
  return relative, bars


def plot(rows, labels: Sequence[str], path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  relative, bars = plot_bars(rows, labels)
  n = max((len(series) for series in bars.values()), default=1)
  width = 0.8 / max(n, 1)
  fig, axes = plt.subplots(
    1, len(bars), figsize=(max(6, (1.0 + 0.25 * n) * len(labels)) * len(bars) ** 0.5, 4), squeeze=False, sharey=True
  )
  x = np.arange(len(labels))
  for ax, (tb, series) in zip(axes[0], bars.items()):
    for i, (name, means, stds, is_baseline) in enumerate(series):
      offset = x + (i - (n - 1) / 2) * width
      if is_baseline:
        ax.bar(offset, means, width, label=name, hatch="//", alpha=0.5)
      else:
        ax.bar(offset, means, width, yerr=stds, capsize=2, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_title(f"trained on {tb}")
    if relative:
      ax.axhline(0.0, color="black", linewidth=0.8)
  axes[0][0].set_ylabel("PSNR gain over the blurred input (dB)" if relative else "PSNR (dB)")
  if not relative:
    lo = min((r["psnr"] for r in rows), default=0.0)
    axes[0][0].set_ylim(bottom=max(0.0, np.floor(lo) - 3.0))
  axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
  what = "PSNR gain over the blurred input" if relative else "PSNR"
  fig.suptitle(f"{what} by test set (mean ± std over seeds; hatched: baselines)")
  fig.tight_layout()
  fig.savefig(path, dpi=100, metadata={"Software": None})
  plt.close(fig)


def write(
  rows,
  out_dir,
  *,
  study: dict,
  test_sets,
  skipped,
  min_gain_db: float,
  samples: int,
  seed: int,
  confidence: float = 0.95,
) -> dict:
  """Writes report.csv, report.md and report_psnr.png; returns {"summaries", "comparisons"}."""
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  summaries = run_summaries(rows, min_gain_db)
  comps = comparisons(rows, samples=samples, seed=seed, confidence=confidence)
  for c in comps:
    c["confidence_pct"] = f"{100 * confidence:g}"
  write_csv(rows, out / "report.csv")
  (out / "report.md").write_text(
    markdown(
      rows, study=study, test_sets=test_sets, skipped=skipped, summaries=summaries, comps=comps, min_gain_db=min_gain_db
    )
  )
  plot(rows, [ts.label for ts in test_sets], out / "report_psnr.png")
  return {"summaries": summaries, "comparisons": comps}
