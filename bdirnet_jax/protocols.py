"""Evaluation protocols: name -> definition, source and scorer, and which protocol a dataset is scored under.

Published deblurring numbers move by up to ~0.6 dB between protocols, so every number of evaluate and the study
belongs to one of `PROTOCOLS`; `dataset.protocol` picks one, else `DATASET_PROTOCOLS` by dataset name.
"""

import dataclasses
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bdirnet_jax import config_validation
from bdirnet_jax import metrics as metrics_lib

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
  """Per-image scores (dicts with at least `psnr` and `ssim`) of float [0, 1] outputs [B, H, W, 3] (device or
  host) against the B examples (`sharp` and the protocol's `extra_keys`) under `protocol`."""
  return PROTOCOLS[protocol].score(restored, examples)
