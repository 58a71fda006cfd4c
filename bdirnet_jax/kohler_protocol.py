"""Köhler et al. (ECCV 2012) evaluation protocol (`KOHLER_PROTOCOL = "kohler_eccv12"`), on the device.

A port of the benchmark's `eval_image.m` (PSNR) and `get_best_metric_value2.m`. The blurred shot integrates
~199 sharp frames recorded along the camera shake, so no single frame is "the" ground truth: the official score
is the best match over all frames, each after undoing exposure and position differences. For every frame x:
  1. least-squares gain of the output z onto the frame, `zs = (sum(x*z) / sum(z*z)) * z` (uint8 values, no
     clipping or rounding of zs);
  2. integer translation by DFT registration (`dftregistration(fft2(mean(x, 3)), fft2(mean(zs, 3)), 1)`):
     the peak of the circular cross-correlation of the channel means, first maximum in MATLAB's column-major
     order, peaks past the half size wrapped to negative shifts;
  3. `imshift(zs, shift, 'same')` with zero fill, and the frame multiplied by the same shifted mask of ones;
  4. PSNR (peak 255) on luminance Y = 0.299 R + 0.587 G + 0.114 B, MSE over the whole HxW (masked-out pixels
     are zero in both images).
The image's score is the maximum over frames. Shake (1, 3) uses frames 1-29 and 31-198 (`eval_image.m`: "ground
truth image of (1,3) is missing"), see `frame_mask`.

Deviations, documented:
  * float32 on the device instead of MATLAB's float64; the correlation is computed on mean-centred channel means
    (a constant offset of the correlation, so the same peak) to keep float32 accurate. Within 0.05 dB of a float64
    port in tests.
  * A black output (`sum(z*z) == 0`) makes MATLAB's gain 0/0 = NaN; here the gain is 0, the shift (0, 0), so
    the score is the PSNR of a black image against the frame: finite, and the image is flagged `degenerate`.
  * `ssim` is not part of the official PSNR protocol (Köhler's tables use multi-scale SSIM): it is Gaussian
    11x11 SSIM (`metrics.ssim`, data range 255) on Y of the registered pair of the best-PSNR frame.
"""

import jax
import jax.numpy as jnp
import numpy as np

from bdirnet_jax import metrics

KOHLER_PROTOCOL = "kohler_eccv12"
Y_WEIGHTS = (0.299, 0.587, 0.114)
# Frame numbers the official code uses where it does not use all: {(image, kernel): allowed frame numbers}.
FRAMES_USED = {(1, 3): frozenset(range(1, 30)) | frozenset(range(31, 199))}
DEFAULT_BATCH = 16


def frame_mask(image_index: int, kernel_index: int, frame_numbers) -> np.ndarray:
  """Which of a shake's frames (1-based frame numbers f of GroundTruth{p}_{t}_{f}.png) the protocol scores."""
  frame_numbers = np.asarray(frame_numbers)
  allowed = FRAMES_USED.get((int(image_index), int(kernel_index)))
  if allowed is None:
    return np.ones(frame_numbers.shape, bool)
  return np.isin(frame_numbers, sorted(allowed))


def _luma(img: jax.Array) -> jax.Array:
  w = jnp.asarray(Y_WEIGHTS, img.dtype)
  return img[..., 0] * w[0] + img[..., 1] * w[1] + img[..., 2] * w[2]


def _wrap(peak: jax.Array, n: int) -> jax.Array:
  # dftregistration: a 1-based peak past fix(n/2) is a negative shift.
  return jnp.where(peak >= n // 2, peak - n, peak)


def _shift_zero_fill(img: jax.Array, dy: jax.Array, dx: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(img shifted so out[n] = img[n - d], zero fill; the mask of valid pixels), for [H, W] and traced shifts."""
  h, w = img.shape
  rows = jnp.arange(h) - dy
  cols = jnp.arange(w) - dx
  mask = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
  shifted = jnp.roll(img, (dy, dx), axis=(0, 1))
  return jnp.where(mask, shifted, 0.0), mask


@jax.jit
def _score_frames(z: jax.Array, frames: jax.Array, valid: jax.Array):
  """Per-frame (PSNR on Y, row shift, column shift, gain) of output z [H,W,3] against frames [B,H,W,3]."""
  z = z.astype(jnp.float32)
  x = frames.astype(jnp.float32)
  h, w = z.shape[:2]
  zz = jnp.sum(z * z)
  xz = jnp.sum(x * z[None], axis=(1, 2, 3))
  gain = jnp.where(zz > 0, xz / jnp.where(zz > 0, zz, 1.0), 0.0)

  # Cross-correlation of the channel means; the gain scales it, so the peak does not depend on it.
  xm = jnp.mean(x, axis=-1)
  zm = jnp.mean(z, axis=-1)
  xm = xm - jnp.mean(xm, axis=(1, 2), keepdims=True)
  zm = zm - jnp.mean(zm)
  cc = jnp.fft.ifft2(jnp.fft.fft2(xm) * jnp.conj(jnp.fft.fft2(zm))[None]).real
  # MATLAB's max(max(CC)) returns the first maximum in column-major order.
  flat = jnp.argmax(jnp.swapaxes(cc, 1, 2).reshape(cc.shape[0], -1), axis=1)
  dy = _wrap(flat % h, h)
  dx = _wrap(flat // h, w)

  yz = _luma(z)

  def one(yx, g, sy, sx):
    zr, mask = _shift_zero_fill(yz, sy, sx)
    err = jnp.where(mask, yx - g * zr, 0.0)
    return jnp.sum(err * err) / (h * w)

  mse = jax.vmap(one)(_luma(x), gain, dy, dx)
  psnr = 10.0 * jnp.log10(255.0 * 255.0 / mse)
  return jnp.where(valid, psnr, -jnp.inf), dy, dx, gain


@jax.jit
def _registered_ssim(z, frame, dy, dx, gain):
  yz, mask = _shift_zero_fill(_luma(z.astype(jnp.float32)), dy, dx)
  yx = jnp.where(mask, _luma(frame.astype(jnp.float32)), 0.0)
  return metrics.ssim(yx[..., None], gain * yz[..., None], 255.0)


def score(restored, frames, *, mask=None, batch_size: int = DEFAULT_BATCH) -> dict:
  """Official Köhler score of one output against its shake's ground-truth frames.

  Args:
    restored: uint8 [H, W, 3], the deblurred image (quantised, as the official code requires).
    frames: uint8 [N, H, W, 3], the shake's ground-truth frames in order.
    mask: optional bool [N], frames to consider (`frame_mask`); the others never win.
    batch_size: frames per device call (one compilation per image size).

  Returns:
    `psnr` (max over frames), `frame` (0-based index of the best frame), `shift` ((row, col) applied to
    the output), `gain`, `ssim` (see module docstring), `degenerate` (black output).
  """
  restored = np.asarray(restored)
  frames = np.asarray(frames)
  if restored.dtype != np.uint8 or frames.dtype != np.uint8:
    raise TypeError(f"Köhler's protocol scores uint8 images, got {restored.dtype} and {frames.dtype}")
  if frames.ndim != 4 or frames.shape[1:] != restored.shape or restored.shape[-1] != 3:
    raise ValueError(f"expected restored [H,W,3] and frames [N,H,W,3], got {restored.shape} and {frames.shape}")
  n = frames.shape[0]
  mask = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
  if not mask.any():
    raise ValueError("no frame to score against (mask is all False)")
  b = max(1, min(batch_size, n))
  z = jnp.asarray(restored)
  psnr, dy, dx, gain = [], [], [], []
  for start in range(0, n, b):
    chunk, valid = frames[start : start + b], mask[start : start + b]
    pad = b - chunk.shape[0]
    if pad:  # one shape per image size: pad the last batch with masked-out frames
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.uint8)])
      valid = np.concatenate([valid, np.zeros(pad, bool)])
    out = jax.device_get(_score_frames(z, jnp.asarray(chunk), jnp.asarray(valid)))
    for acc, v in zip((psnr, dy, dx, gain), out):
      acc.append(np.asarray(v)[: b - pad])
  psnr, dy, dx, gain = (np.concatenate(a) for a in (psnr, dy, dx, gain))
  best = int(np.argmax(psnr))  # first maximum, as MATLAB's max
  ssim = _registered_ssim(z, jnp.asarray(frames[best]), int(dy[best]), int(dx[best]), float(gain[best]))
  return {
    "psnr": float(psnr[best]),
    "frame": best,
    "shift": (int(dy[best]), int(dx[best])),
    "gain": float(gain[best]),
    "ssim": float(ssim),
    "degenerate": not restored.any(),
    "protocol": KOHLER_PROTOCOL,
  }
