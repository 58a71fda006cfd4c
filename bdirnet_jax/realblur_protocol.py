"""RealBlur evaluation protocol (`REALBLUR_PROTOCOL = "realblur_ecc"`), host side (numpy + OpenCV).

A port of rimchang/RealBlur `evaluation_RealBlur_ecc.py`. RealBlur's ground truth comes from a second
camera, so outputs are only comparable after undoing the residual intensity and geometric mismatch:
the output is scaled by least squares to the ground truth, aligned to it with ECC (homography), and
scored only over the pixels the warp could fill. Numbers from this protocol are not comparable with
`metrics.DEFAULT_PROTOCOL` numbers.

Kept from the original, deliberately:
  * ECC runs on grayscale float32 with `termination_eps = 0` (so always 100 iterations unless it
    raises), gaussFiltSize 5, identity initial warp; template = ground truth, input = scaled output.
  * The output is warped with INTER_CUBIC + WARP_INVERSE_MAP and BORDER_REFLECT; the validity mask is
    the warp of ones with INTER_NEAREST and a zero border; both images are multiplied by the mask.
  * PSNR divides the masked squared error by the mask sum (data range 1).
  * SSIM is scikit-image's full SSIM map (Gaussian weights, population covariance, data range 1) of
    the masked images, multiplied by the mask, with a 5-pixel border cropped, normalised per channel
    by the cropped mask sum, then averaged over channels.

Deviations, documented:
  * The original pins scikit-image 0.17.2 / OpenCV 4.2.0; we run whatever is installed. The SSIM map
    is computed from float64 copies because 0.17.2 always filtered in float64 (newer versions keep
    float32). ECC in another OpenCV version may stop at a slightly different warp.
  * When ECC raises `cv2.error` (diverged / ill-conditioned) or returns a non-finite warp, the
    original script crashes; we fall back to the identity warp and report `ecc_failed=True` so a
    whole test-set run survives and the affected images can be listed.
  * The original reads the restored image from a saved 8-bit PNG. `realblur_metrics` quantises
    the float output the same way by default (`quantize=True`, the original's `im2uint8`
    rounding), so scores match what the reference script would report for the saved file.
"""

import dataclasses

import cv2
import numpy as np
from skimage.metrics import structural_similarity

REALBLUR_PROTOCOL = "realblur_ecc"

ECC_ITERATIONS = 100
ECC_TERMINATION_EPS = 0
ECC_GAUSS_FILT_SIZE = 5
SSIM_CROP = 5  # (win_size - 1) // 2 for the 11-tap Gaussian window.


@dataclasses.dataclass
class Alignment:
  aligned: np.ndarray  # scaled, warped output, times mask (float32 HxWx3)
  target: np.ndarray  # ground truth times mask
  mask: np.ndarray  # 1 where the warp had source pixels, else 0 (float32 HxWx3)
  warp: np.ndarray  # 3x3 float32, maps ground-truth pixel coords to output pixel coords
  scale: float  # least-squares intensity gain applied to the output
  ecc_cc: float  # final ECC correlation coefficient (nan on failure)
  ecc_failed: bool


def im2uint8_float01(image: np.ndarray) -> np.ndarray:
  """The original's `im2uint8` (clip, +0.5, truncate), returned as float32 / 255: what reading the
  saved PNG back gives the reference script."""
  u8 = (np.clip(np.asarray(image, np.float32) * 255, 0, 255) + 0.5).astype(np.uint8)
  return u8.astype(np.float32) / 255


def image_align(deblurred: np.ndarray, gt: np.ndarray) -> Alignment:
  """Intensity-matches and ECC-aligns `deblurred` to `gt` (both float32 HxWx3 in [0, 1])."""
  z = np.asarray(deblurred, np.float32)
  x = np.asarray(gt, np.float32)
  # Least-squares gain: the two cameras' exposures differ, which should not count as error. A black output
  # would make it 0/0 (NaN scores, NaN dataset mean): keep it black (gain 1) instead.
  zz = np.sum(z * z)
  scale = np.sum(x * z) / zz if zz > 0 else np.float32(1.0)
  zs = scale * z
  if not np.ptp(z) > 0:
    # A constant output has no structure to align (ECC's correlation is 0/0): identity warp, flagged.
    return _aligned(zs, x, np.eye(3, 3, dtype=np.float32), scale, float("nan"), True)

  criteria = (
    cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
    ECC_ITERATIONS,
    ECC_TERMINATION_EPS,
  )
  warp = np.eye(3, 3, dtype=np.float32)
  try:
    cc, warp = cv2.findTransformECC(
      cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
      cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
      warp,
      cv2.MOTION_HOMOGRAPHY,
      criteria,
      None,
      ECC_GAUSS_FILT_SIZE,
    )
    failed = not np.all(np.isfinite(warp))
  except cv2.error:
    cc, failed = float("nan"), True
  if failed:
    warp, cc = np.eye(3, 3, dtype=np.float32), float("nan")
  return _aligned(zs, x, warp, scale, cc, failed)


def _aligned(zs, x, warp, scale, cc, failed) -> Alignment:
  """Warps the scaled output and a mask of ones onto the ground truth's grid (the original's warpPerspective)."""
  size = (x.shape[1], x.shape[0])
  zr = cv2.warpPerspective(zs, warp, size, flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
  cr = cv2.warpPerspective(
    np.ones_like(zs, dtype=np.float32),
    warp,
    size,
    flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
    borderMode=cv2.BORDER_CONSTANT,
    borderValue=0,
  )
  return Alignment(
    aligned=zr * cr,
    target=x * cr,
    mask=cr,
    warp=np.asarray(warp, np.float32),
    scale=float(scale),
    ecc_cc=float(cc),
    ecc_failed=bool(failed),
  )


def masked_psnr(image_true, image_test, mask, data_range=1.0) -> float:
  """MSE over valid pixels only: pixels the warp invented must not reward or punish the method."""
  err = np.sum((image_true - image_test) ** 2, dtype=np.float64) / np.sum(mask)
  return float(10 * np.log10((data_range**2) / err))


def masked_ssim(image_true, image_test, mask) -> float:
  """Mask-weighted mean of the SSIM map, border of `SSIM_CROP` px cropped, mean over channels."""
  _, ssim_map = structural_similarity(
    np.asarray(image_true, np.float64),
    np.asarray(image_test, np.float64),
    channel_axis=-1,
    gaussian_weights=True,
    use_sample_covariance=False,
    data_range=1.0,
    full=True,
  )
  ssim_map = ssim_map * mask
  p = SSIM_CROP
  per_channel = ssim_map[p:-p, p:-p].sum(axis=(0, 1)) / mask[p:-p, p:-p].sum(axis=(0, 1))
  return float(np.mean(per_channel))


def realblur_metrics(restored_float01, sharp_float01, *, quantize: bool = True) -> dict:
  """Scores one RealBlur image pair (HxWx3, RGB, [0, 1]) under `REALBLUR_PROTOCOL`.

  Returns `dict(psnr, ssim, ecc_failed, ecc_cc, warp, scale, protocol)`; average `psnr` and
  `ssim` over the test set, and report how many images had `ecc_failed`.
  """
  restored = np.asarray(restored_float01, np.float32)
  sharp = np.asarray(sharp_float01, np.float32)
  if restored.shape != sharp.shape or restored.ndim != 3 or restored.shape[-1] != 3:
    raise ValueError(f"Expected two HxWx3 RGB images of equal shape, got {restored.shape} and {sharp.shape}.")
  if quantize:
    restored = im2uint8_float01(restored)
  al = image_align(restored, sharp)
  return {
    "psnr": masked_psnr(al.target, al.aligned, al.mask, data_range=1.0),
    "ssim": masked_ssim(al.target, al.aligned, al.mask),
    "ecc_failed": al.ecc_failed,
    "ecc_cc": al.ecc_cc,
    "warp": al.warp,
    "scale": al.scale,
    "protocol": REALBLUR_PROTOCOL,
  }
