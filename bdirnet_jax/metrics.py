"""PSNR / SSIM in JAX: scikit-image's 2-D SSIM and MATLAB's 3-D SSIM, both jitted.

Published deblurring numbers move by up to ~0.6 dB (and SSIM by up to ~0.2) between protocols, so every number
belongs to a named protocol (the table is `bdirnet_jax.protocols.PROTOCOLS`):
  * `gopro_matlab` (GoPro / HIDE tables of Restormer, MPRNet, NAFNet): output rounded to uint8, `psnr` and
    `ssim_3d`, MATLAB's `ssim` on an HxWx3 volume.
  * `rgb_uint8_gauss11` (`DEFAULT_PROTOCOL`, any other dataset): output rounded to uint8, `psnr` and
    `ssim`, scikit-image's per-channel 2-D SSIM.
The RealBlur and Köhler protocols live in `realblur_protocol` and `kohler_protocol`.

All metrics accept `HxWxC` (returns a scalar) or `NxHxWxC` (returns shape `[N]`), uint8 or float, and run
under `jax.jit`. They compute in float32 (JAX's default) yet agree with float64 references to ~1e-5: SSIM
variances are taken about a per-image mean shift (which the statistics are invariant to) so
`E[x^2] - E[x]^2` does not cancel catastrophically, and every image-wide mean uses pairwise summation instead of
a running float32 sum.
"""

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_PROTOCOL = "rgb_uint8_gauss11"
MATLAB_PROTOCOL = "gopro_matlab"

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's choice: gives the 11-tap window of Wang et al. 2004.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WIN_SIZE = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11, as ndimage rounds the radius


def _gaussian_taps(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
  # Same taps as scipy.ndimage.gaussian_filter (normalised in float64, then cast once).
  radius = int(truncate * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  phi = np.exp(-0.5 / (sigma * sigma) * x**2)
  return phi / phi.sum()


_TAPS = _gaussian_taps()


def _compute_dtype(dtype) -> jnp.dtype:
  # Integers and half floats go to float32; float64 stays float64 only when x64 is enabled.
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.dtype(jnp.float32)


def _as_batched(x, y):
  """Returns float [N,H,W,C] arrays and whether the input was unbatched."""
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  if x.shape != y.shape:
    raise ValueError(f"Input images must have the same shape, got {x.shape} and {y.shape}.")
  if x.ndim not in (3, 4):
    raise ValueError(f"Expected HxWxC or NxHxWxC images, got shape {x.shape}.")
  dtype = jnp.promote_types(_compute_dtype(x.dtype), _compute_dtype(y.dtype))
  unbatched = x.ndim == 3
  if unbatched:
    x, y = x[None], y[None]
  return x.astype(dtype), y.astype(dtype), unbatched


def _pairwise_sum(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """Tree summation over `axes`: error grows like log(n) rather than n in float32.

  XLA's reduction order is unspecified; a sequential float32 sum over a 720x1280x3 image may drift
  by up to ~n*eps, while the tree keeps the error near log2(n)*eps, well inside the 1e-4 budget.
  """
  keep = [a for a in range(x.ndim) if a not in axes]
  x = jnp.transpose(x, keep + list(axes))
  x = x.reshape(x.shape[: len(keep)] + (-1,))
  n = x.shape[-1]
  size = 1 << max(n - 1, 0).bit_length()  # next power of two: one pad, then exact halvings
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - n)])
  while size > 1:
    size //= 2
    x = x[..., :size] + x[..., size:]
  return x[..., 0]


def _pairwise_mean(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  count = int(np.prod([x.shape[a] for a in axes]))
  return _pairwise_sum(x, axes) / count


def _filter_valid(img: jax.Array, taps: jax.Array) -> jax.Array:
  """Separable correlation over H and W of [N,H,W,C], keeping only the fully-covered outputs.

  scikit-image filters with mode='reflect' and then crops `(win_size - 1) // 2` pixels from every
  side before averaging; the surviving pixels are exactly those whose window never touches the
  border, so the padding never matters and a 'valid' correlation gives bit-for-bit the same region.
  Done with shifted slices rather than a conv so GPUs cannot silently drop to TF32.
  """
  k = taps.shape[0]
  h, w = img.shape[1], img.shape[2]
  out = sum(taps[i] * img[:, i : h - k + 1 + i] for i in range(k))
  out = sum(taps[i] * out[:, :, i : w - k + 1 + i] for i in range(k))
  return out


@jax.jit
def psnr(x, y, data_range=255.0):
  """Peak signal-to-noise ratio in dB, as `skimage.metrics.peak_signal_noise_ratio`.

  Identical images give `inf` (MSE 0), as scikit-image does; averaging over a test set then
  yields inf, which is the honest answer rather than an arbitrary cap.
  """
  x, y, unbatched = _as_batched(x, y)
  mse = _pairwise_mean(jnp.square(x - y), (1, 2, 3))
  data_range = jnp.asarray(data_range, x.dtype)
  out = 10.0 * jnp.log10(data_range * data_range / mse)
  return out[0] if unbatched else out


@jax.jit
def ssim(x, y, data_range=255.0):
  """Mean SSIM, as `skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=-1)`.

  Per-channel mean SSIM over the valid (border-cropped) region, then the mean over channels.
  Like scikit-image, images smaller than the 11x11 window raise `ValueError`.
  """
  x, y, unbatched = _as_batched(x, y)
  h, w = x.shape[1], x.shape[2]
  if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
    raise ValueError(
      f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} (Gaussian window), "
      f"got {h}x{w}; scikit-image raises for these sizes too."
    )
  dtype = x.dtype
  taps = jnp.asarray(_TAPS, dtype)

  # Shift by the per-channel mean: SSIM's (co)variances are shift invariant, and centred data keeps
  # E[d^2] - E[d]^2 from cancelling away float32 precision on bright, flat regions.
  mx = _pairwise_mean(x, (1, 2))[:, None, None, :]
  my = _pairwise_mean(y, (1, 2))[:, None, None, :]
  dx, dy = x - mx, y - my
  s_map = _ssim_map(dx, dy, mx, my, lambda img: _filter_valid(img, taps), data_range)
  # Equal pixel counts per channel, so the mean of per-channel means is the mean over all.
  out = _pairwise_mean(s_map, (1, 2, 3))
  return out[0] if unbatched else out


def _ssim_map(dx, dy, mx, my, filt, data_range):
  """SSIM map of centred images dx = x - mx, dy = y - my under the local-mean filter `filt` (which sets the window
  and the padding: the only difference between `ssim` and `ssim_3d`)."""
  fx, fy = filt(dx), filt(dy)
  vx = filt(dx * dx) - fx * fx
  vy = filt(dy * dy) - fy * fy
  vxy = filt(dx * dy) - fx * fy
  ux, uy = fx + mx, fy + my
  data_range = jnp.asarray(data_range, dx.dtype)
  c1 = (SSIM_K1 * data_range) ** 2
  c2 = (SSIM_K2 * data_range) ** 2
  return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _filter_same_replicate(img: jax.Array, taps: jax.Array) -> jax.Array:
  """Separable correlation over H, W and C of [N,H,W,C] with replicate padding and 'same' output size.

  MATLAB's `imgaussfilt3(..., 'Padding', 'replicate')` (and NAFNet's replicate-padded Conv3d): the window also
  runs across the channel axis, where a 3-channel image is padded to 3 + 10 with copies of its first/last channel.
  """
  k = taps.shape[0]
  r = k // 2
  for axis in (1, 2, 3):
    n = img.shape[axis]
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    padded = jnp.pad(img, pad, mode="edge")
    img = sum(taps[i] * jax.lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(k))
  return img


@jax.jit
def ssim_3d(x, y, data_range=255.0):
  """MATLAB's `ssim(x, y)` on HxWx3 images: the SSIM of a 3-D volume, as GoPro/HIDE tables report it.

  One 11x11x11 Gaussian window (sigma 1.5) that also runs across the channels, replicate padding, K1 0.01,
  K2 0.03, the mean over the whole map with no border crop (NAFNet's `_ssim_3d`, MATLAB's default 'SSS').
  Scikit-image's per-channel `ssim` is a different number (0.01 to 0.2 lower on blurred pairs), so numbers
  compared with published GoPro/HIDE tables must come from this one. Batched like `ssim`.
  """
  x, y, unbatched = _as_batched(x, y)
  dtype = x.dtype
  taps = jnp.asarray(_TAPS, dtype)
  # The filter is normalised and padding replicates, so a per-image constant shift leaves every (co)variance
  # unchanged; centring keeps E[d^2] - E[d]^2 accurate in float32.
  mx = _pairwise_mean(x, (1, 2, 3))[:, None, None, None]
  my = _pairwise_mean(y, (1, 2, 3))[:, None, None, None]
  dx, dy = x - mx, y - my
  s_map = _ssim_map(dx, dy, mx, my, lambda img: _filter_same_replicate(img, taps), data_range)
  out = _pairwise_mean(s_map, (1, 2, 3))
  return out[0] if unbatched else out


@jax.jit
def to_uint8(image_float01):
  """Quantises a [0, 1] float image the way NAFNet's `tensor2img` does (clip, x255, round half
  to even, cast), so our scores are on the same footing as the saved PNGs published methods
  evaluated."""
  x = jnp.clip(jnp.asarray(image_float01, jnp.float32), 0.0, 1.0)
  return jnp.round(x * 255.0).astype(jnp.uint8)
