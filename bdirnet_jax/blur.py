"""Blur synthesis: kernels and noise on the host (numpy) and on the device (JAX).

Conventions shared by every function here, so that host and device blurs agree:

* Kernels are float32 `[k, k]` arrays that sum to 1 (blurring must not change brightness).
* A kernel's centre is pixel `(k // 2, k // 2)`; a kernel whose mass is centred there does not
  shift the image, so blurry/sharp pairs stay aligned.
* Blurring is a true convolution `out[i, j] = sum_ab K[a, b] * x[i + c - a, j + c - b]` with
  `c = k // 2` and half-sample symmetric padding (numpy `"symmetric"` = scipy.ndimage
  `"reflect"`), so there are no wrap-around seams and a constant image stays constant.
"""

import cmath
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

FAMILIES = ("trajectory", "linear", "gaussian", "defocus")
MIXED = "mixed"

# Defaults of Boracchi & Foi, "Modeling the performance of image restoration from motion blur", IEEE TIP 21(8),
# 2012, as DeblurGAN uses them.
TRAJECTORY_SAMPLES = 2000
TRAJECTORY_EXPOSURES = (1 / 1000, 1 / 10, 1 / 2, 1.0)
_PAD_MODE = "symmetric"


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


def _delta(size: int) -> np.ndarray:
  k = np.zeros((size, size), np.float32)
  k[size // 2, size // 2] = 1.0
  return k


def _normalise(k: np.ndarray) -> np.ndarray:
  """Divide by the sum (never min-max: that would change the image's brightness)."""
  total = float(k.sum())
  if not np.isfinite(total) or total <= 0:
    raise ValueError("kernel has no positive mass")
  return (k / total).astype(np.float32)


def _splat(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
  """Bilinearly splat weighted sub-pixel points; mass falling outside the canvas is dropped."""
  r0 = np.floor(rows)
  c0 = np.floor(cols)
  fr = rows - r0
  fc = cols - c0
  r0 = r0.astype(np.int64)
  c0 = c0.astype(np.int64)
  acc = np.zeros(size * size, np.float64)
  for dr, wr in ((0, 1 - fr), (1, fr)):
    for dc, wc in ((0, 1 - fc), (1, fc)):
      r = r0 + dr
      c = c0 + dc
      w = weights * wr * wc
      ok = (r >= 0) & (r < size) & (c >= 0) & (c < size) & (w > 0)
      acc += np.bincount(r[ok] * size + c[ok], weights=w[ok], minlength=size * size)
  return acc.reshape(size, size)


def _random_trajectory(
  rng: np.random.Generator, n: int, max_len: float, anxiety: float, steps_needed: int
) -> np.ndarray:
  """Boracchi & Foi's camera-shake particle path (complex positions, unit: pixels)."""
  centripetal = 0.7 * rng.uniform()
  gaussian = 10.0 * rng.uniform()
  freq = 0.2 * rng.uniform()
  theta = 2.0 * math.pi * rng.uniform()
  # Draw every step's randomness up front: the draw order (hence the kernel for a seed) then does
  # not depend on how many steps the chosen exposure actually needs.
  shake_u = rng.uniform(size=n - 1).tolist()
  shake_angle = rng.uniform(size=n - 1).tolist()
  noise = rng.standard_normal(size=(n - 1, 2)).tolist()

  step = max_len / (n - 1)
  v = cmath.exp(1j * theta) * (anxiety if anxiety > 0 else step)
  x = [0j] * n
  xt = 0j
  p_shake = freq * anxiety
  for t in range(min(n - 1, steps_needed)):
    dv = anxiety * (gaussian * complex(noise[t][0], noise[t][1]) - centripetal * xt) * step
    if shake_u[t] < p_shake:
      dv += 2.0 * v * cmath.exp(1j * (math.pi + shake_angle[t] - 0.5))
    v += dv
    mag = abs(v)
    v = v / mag * step if mag > 0 else cmath.exp(1j * theta) * step
    xt += v
    x[t + 1] = xt
  return np.asarray(x[: min(n, steps_needed + 1)], np.complex128)


def check_exposures(exposures, name: str = "trajectory exposures") -> tuple[float, ...]:
  """The exposure fractions a trajectory kernel is drawn from, as a tuple; ValueError naming `name` otherwise."""
  try:
    values = tuple(float(e) for e in exposures)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a sequence of fractions in (0, 1], got {exposures!r}") from None
  if not values or not all(0.0 < e <= 1.0 for e in values):
    raise ValueError(f"{name} must be a non-empty sequence of fractions in (0, 1], got {exposures!r}")
  return values


def trajectory_kernel(
  rng: np.random.Generator,
  size: int = 64,
  *,
  exposure: float | None = None,
  exposures: Sequence[float] | None = None,
  anxiety: float | None = None,
  center: str = "centroid",
) -> np.ndarray:
  """Random camera-shake PSF (Boracchi & Foi 2012, as in DeblurGAN), float32 [size, size], sum 1.

  N = 2000 samples, path length L = 60 * size / 64, anxiety 0.1*U(0,1) unless given. `exposure`
  is a fraction of the path; when None it is drawn by `rng` from `exposures` (default DeblurGAN's T in
  [1/1000, 1/10, 1/2, 1]: at small sizes the first two barely move, e.g. 9 of 16 study test kernels at 15x15);
  sample t weighs its overlap of [t, t+1] with [0, T*N]. The PSF is normalised to sum 1.

  `center="centroid"` (default) puts the PSF's centre of mass at the kernel centre (clamped so the
  support stays on the canvas): otherwise the blurry image is translated relative to the sharp
  one by up to ~L/2 pixels, an offset the network cannot infer. `center="bbox"` centres the
  exposed path's bounding box, closer to DeblurGAN's placement.
  """
  n = TRAJECTORY_SAMPLES
  max_len = 60.0 * size / 64.0
  a = 0.1 * rng.uniform() if anxiety is None else float(anxiety)
  if exposure is None:
    choices = TRAJECTORY_EXPOSURES if exposures is None else check_exposures(exposures)
    exposure = choices[int(rng.integers(len(choices)))]
  if not 0 < exposure <= 1:
    raise ValueError(f"exposure must be in (0, 1], got {exposure}")
  span = exposure * n
  steps_needed = int(math.ceil(span))
  x = _random_trajectory(rng, n, max_len, a, steps_needed)
  t = np.arange(x.shape[0], dtype=np.float64)
  w = np.clip(span - t, 0.0, 1.0)
  keep = w > 0
  x, w = x[keep], w[keep]

  c = float(size // 2)
  offset = []
  for pos in (x.imag, x.real):  # rows, cols
    lo, hi = -pos.min(), (size - 1) - pos.max()
    if center == "centroid":
      want = c - float(np.sum(w * pos) / np.sum(w))
    elif center == "bbox":
      want = c - 0.5 * (pos.min() + pos.max())
    else:
      raise ValueError(f"center must be 'centroid' or 'bbox', got {center!r}")
    offset.append(float(np.clip(want, lo, hi)) if lo <= hi else 0.5 * (lo + hi))
  psf = _splat(x.imag + offset[0], x.real + offset[1], w, size)
  return _normalise(psf)


def linear_kernel(length: float, angle_deg: float, size: int) -> np.ndarray:
  """Uniform linear motion of `length` pixels at `angle_deg` (counter-clockwise from +x),
  centred, anti-aliased by densely sampling the segment and splatting bilinearly."""
  if length <= 0:
    return _delta(size)
  m = max(2, int(math.ceil(length * 8)) + 1)
  s = np.linspace(-length / 2, length / 2, m)
  ang = math.radians(angle_deg)
  c = size // 2
  rows = c - s * math.sin(ang)
  cols = c + s * math.cos(ang)
  return _normalise(_splat(rows, cols, np.ones(m), size))


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
  """Isotropic Gaussian (out-of-focus / atmospheric blur) truncated to the canvas."""
  if sigma <= 0:
    return _delta(size)
  r = np.arange(size, dtype=np.float64) - size // 2
  g = np.exp(-(r**2) / (2.0 * sigma**2))
  return _normalise(np.outer(g, g))


def defocus_kernel(radius: float, size: int, *, supersample: int = 8) -> np.ndarray:
  """Uniform disk (thin-lens defocus); edge pixels get their covered area fraction so the
  kernel varies smoothly with the radius (no aliasing staircase)."""
  if radius <= 0:
    return _delta(size)
  ss = supersample
  sub = (np.arange(size * ss, dtype=np.float64) + 0.5) / ss - 0.5 - size // 2
  inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
  area = inside.reshape(size, ss, size, ss).mean(axis=(1, 3))
  if area.sum() == 0:  # radius well below a pixel
    return _delta(size)
  return _normalise(area)


def rms_radius(kernel: np.ndarray) -> float:
  """RMS distance (px) of a kernel's mass from its centroid: how far it moves energy (0 for a delta)."""
  k = np.asarray(kernel, np.float64)
  k = k / k.sum()
  rows, cols = np.indices(k.shape)
  r0, c0 = (k * rows).sum(), (k * cols).sum()
  return float(np.sqrt((k * ((rows - r0) ** 2 + (cols - c0) ** 2)).sum()))


def _family_ranges(size: int) -> dict[str, tuple[float, float]]:
  half = (size - 1) // 2
  return {
    "linear": (1.0, max(1.0, 2.0 * half - 1.0)),
    "gaussian": (0.5, max(0.5, half / 3.0)),
    "defocus": (1.0, max(1.0, half - 1.0)),
  }


def check_families(families: Sequence[str], name: str = "blur family", allow_mixed: bool = True) -> None:
  """Raises ValueError naming `name` and the allowed families if any of `families` is unknown: the one check
  behind sample_kernel, config validation and the study's and robustness's family lists."""
  allowed = FAMILIES + ((MIXED,) if allow_mixed else ())
  unknown = [f for f in families if f not in allowed]
  if unknown:
    raise ValueError(f"{name}: unknown blur families {unknown}; expected some of {list(allowed)}")


def sample_kernel(
  rng: np.random.Generator, family: str, size: int = 31, *, trajectory_exposures: Sequence[float] | None = None
) -> np.ndarray:
  """Draw one kernel of `family` (or `"mixed"`: a family uniformly at random).

  Parameter ranges (half = (size - 1) // 2, so the support always fits the canvas; size 31 in
  brackets):
    * trajectory: `trajectory_kernel(rng, size)` (L = 60*size/64 [29 px], exposure drawn from
      `trajectory_exposures`, None = TRAJECTORY_EXPOSURES);
    * linear: length ~ U(1, 2*half - 1) [1-29 px], angle ~ U(0, 180) degrees;
    * gaussian: sigma ~ U(0.5, half / 3) [0.5-5 px] (3 sigma fits in the canvas);
    * defocus: radius ~ U(1, half - 1) [1-14 px].
  """
  check_families([family])
  if family == MIXED:
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
  if family == "trajectory":
    return trajectory_kernel(rng, size, exposures=trajectory_exposures)
  lo, hi = _family_ranges(size)[family]
  p = float(rng.uniform(lo, hi))
  if family == "linear":
    return linear_kernel(p, float(rng.uniform(0.0, 180.0)), size)
  if family == "gaussian":
    return gaussian_kernel(p, size)
  return defocus_kernel(p, size)


# ----------------------------------------------------------------------------------------------
# Host-side blur and noise (numpy)
# ----------------------------------------------------------------------------------------------


def _pads(k: int) -> tuple[int, int]:
  """(before, after) padding so that the convolution's centre is index k // 2."""
  c = k // 2
  return k - 1 - c, c


def _fft_shape(h: int, w: int) -> tuple[int, int]:
  # A circular convolution of size >= padded size has no wrap-around in the region we keep.
  return scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True)


def blur_image(image: np.ndarray, kernel: np.ndarray, *, gamma: float | None = None) -> np.ndarray:
  """Convolve every channel of an HxWxC float image in [0, 1] with `kernel` (FFT, symmetric
  padding, cropped back to HxWxC). With `gamma` the blur happens in linear light (x**gamma),
  as a real exposure integrates photons, not sRGB values."""
  x = np.asarray(image, np.float32)
  squeeze = x.ndim == 2
  if squeeze:
    x = x[..., None]
  k = np.asarray(kernel, np.float32)
  if x.ndim != 3 or k.ndim != 2:
    raise ValueError(f"expected HxWxC image and 2-D kernel, got {x.shape} and {k.shape}")
  if gamma is not None:
    x = np.power(np.clip(x, 0.0, 1.0), np.float32(gamma))
  h, w, _ = x.shape
  kh, kw = k.shape
  (t, b), (l, r) = _pads(kh), _pads(kw)
  xp = np.pad(x, ((t, b), (l, r), (0, 0)), mode=_PAD_MODE)
  fh, fw = _fft_shape(xp.shape[0], xp.shape[1])
  fx = scipy.fft.rfft2(xp, s=(fh, fw), axes=(0, 1))
  fk = scipy.fft.rfft2(k, s=(fh, fw))
  y = scipy.fft.irfft2(fx * fk[..., None], s=(fh, fw), axes=(0, 1))
  y = y[kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w].astype(np.float32)
  y = np.clip(y, 0.0, 1.0)
  if gamma is not None:
    y = np.power(y, np.float32(1.0 / gamma))
  return y[..., 0] if squeeze else y


def add_noise(
  rng: np.random.Generator,
  image: np.ndarray,
  *,
  gaussian_sigma: float = 0.0,
  poisson_peak: float | None = None,
) -> np.ndarray:
  """Shot noise (Poisson with `poisson_peak` photons at white) then read noise (Gaussian),
  clipped to [0, 1]."""
  x = np.asarray(image, np.float32)
  if poisson_peak is not None:
    x = (rng.poisson(np.clip(x, 0.0, None) * poisson_peak) / poisson_peak).astype(np.float32)
  if gaussian_sigma > 0:
    x = x + rng.normal(0.0, gaussian_sigma, size=x.shape).astype(np.float32)
  return np.clip(x, 0.0, 1.0).astype(np.float32)


def synthesize_blurry(
  sharp_uint8: np.ndarray,
  rng: np.random.Generator,
  *,
  family: str = MIXED,
  kernel_size: int = 31,
  gaussian_sigma: float = 0.01,
  poisson_peak: float | None = None,
  gamma: float | None = None,
) -> np.ndarray:
  """Host-side recipe: draw a kernel, blur, add noise, quantise. Deterministic given `rng`."""
  sharp = np.asarray(sharp_uint8)
  if sharp.dtype != np.uint8:
    raise ValueError(f"expected uint8 image, got {sharp.dtype}")
  kernel = sample_kernel(rng, family, kernel_size)
  y = blur_image(sharp.astype(np.float32) / 255.0, kernel, gamma=gamma)
  y = add_noise(rng, y, gaussian_sigma=gaussian_sigma, poisson_peak=poisson_peak)
  return np.round(y * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Device-side blur and noise (JAX, jit-able)
# ----------------------------------------------------------------------------------------------


def blur_batch(images: jax.Array, kernels: jax.Array) -> jax.Array:
  """Blur each image of a [B, H, W, C] batch with its own [B, k, k] kernel; same maths as
  `blur_image` (symmetric pad, rfft2, multiply, irfft2, crop). Output in [0, 1], float32."""
  images = jnp.asarray(images, jnp.float32)
  kernels = jnp.asarray(kernels, jnp.float32)
  if images.ndim != 4 or kernels.ndim != 3 or kernels.shape[0] != images.shape[0]:
    raise ValueError(f"expected images [B,H,W,C] and kernels [B,k,k], got {images.shape}, {kernels.shape}")
  _, h, w, _ = images.shape
  _, kh, kw = kernels.shape
  (t, b), (l, r) = _pads(kh), _pads(kw)
  xp = jnp.pad(images, ((0, 0), (t, b), (l, r), (0, 0)), mode=_PAD_MODE)
  fh, fw = _fft_shape(xp.shape[1], xp.shape[2])
  fx = jnp.fft.rfft2(xp, s=(fh, fw), axes=(1, 2))
  fk = jnp.fft.rfft2(kernels, s=(fh, fw), axes=(1, 2))
  y = jnp.fft.irfft2(fx * fk[..., None], s=(fh, fw), axes=(1, 2))
  y = y[:, kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w, :]
  return jnp.clip(y, 0.0, 1.0).astype(jnp.float32)


def add_noise_jax(
  rng: jax.Array,
  images: jax.Array,
  gaussian_sigma: float | jax.Array,
  poisson_peak: float | None = None,
) -> jax.Array:
  """Device twin of `add_noise`. `gaussian_sigma` may be an array broadcastable to the batch
  (e.g. [B, 1, 1, 1] for per-sample noise levels); `poisson_peak` is static (None = off)."""
  x = jnp.asarray(images, jnp.float32)
  k_poisson, k_gauss = jax.random.split(rng)
  if poisson_peak is not None:
    lam = jnp.clip(x, 0.0, None) * poisson_peak
    x = jax.random.poisson(k_poisson, lam, dtype=jnp.int32).astype(jnp.float32) / poisson_peak
  x = x + jnp.asarray(gaussian_sigma, jnp.float32) * jax.random.normal(k_gauss, x.shape, jnp.float32)
  return jnp.clip(x, 0.0, 1.0)
