"""Classical (non-learned) deblurring baselines for the study, all given the TRUE kernel except `input`.

They anchor what "deblurs" means at the study's scale: a network that does not beat the blurred input has learned
nothing, and one that beats the Wiener oracle does better than a linear filter that knows the kernel.

* `input`: the blurred image itself.
* `wiener_oracle`: `skimage.restoration.wiener` with the true kernel. Its balance is not tuned on test images; it
  follows from the known noise level under a natural-image prior (rule below).
* `rl_oracle`: `skimage.restoration.richardson_lucy` with the true kernel, `RL_ITERATIONS` iterations (fixed).
* `unsupervised_wiener`: `skimage.restoration.unsupervised_wiener` with the true kernel; it estimates the noise and
  prior precisions itself (Gibbs sampler, seeded).

Each channel is deconvolved separately on the image padded with `PAD_MODE` ("symmetric", as `blur.blur_image`
pads) by the kernel size on every side, which keeps the FFT's wrap-around away from the kept region; the output is
cropped back, clipped to [0, 1] and scored like the networks' outputs (rounded to uint8, `bdirnet_jax.metrics`).

Wiener balance rule. Model the image gradients as white with variance `g2` per pixel and component
(`PRIOR_GRADIENT_VARIANCE`), so the image power spectrum is S(w) = 2 g2 / L(w), where L(w) = |Dx(w)|^2 + |Dy(w)|^2
is the 5-point Laplacian's transfer function. The MMSE (Wiener) filter is then
    conj(H) / (|H|^2 + s2 / S) = conj(H) / (|H|^2 + s2 / (2 g2) * L),
i.e. skimage's `wiener` with `reg` = sqrt(L) and `balance = s2 / (2 g2)`, where s2 = noise_sigma^2 + 1/(12*255^2)
(the added Gaussian noise plus the uint8 rounding of the blurred image).
"""

import numpy as np

BASELINES = ("input", "wiener_oracle", "rl_oracle", "unsupervised_wiener")
NEEDS_KERNEL = ("wiener_oracle", "rl_oracle", "unsupervised_wiener")

# Mean squared horizontal/vertical forward difference of [0, 1] RGB pixels: the geometric mean over the six
# synthetic_blur *train* photos at full resolution (0.0012 chelsea ... 0.0118 china), measured once; never the
# test photos.
PRIOR_GRADIENT_VARIANCE = 3e-3
QUANTISATION_VARIANCE = 1.0 / (12.0 * 255.0**2)
RL_ITERATIONS = 30
PAD_MODE = "symmetric"


def wiener_balance(noise_sigma: float, gradient_variance: float = PRIOR_GRADIENT_VARIANCE) -> float:
  """The Wiener balance for the gradient prior (module doc): (sigma^2 + uint8 rounding variance) / (2 g2)."""
  return (float(noise_sigma) ** 2 + QUANTISATION_VARIANCE) / (2.0 * gradient_variance)


def _gradient_reg(shape: tuple[int, int]) -> np.ndarray:
  """sqrt of the 5-point Laplacian's transfer function (= |Dx|^2 + |Dy|^2), as skimage's real-FFT layout."""
  from skimage.restoration import uft  # pylint: disable=g-import-not-at-top

  lap, _ = uft.laplacian(2, shape, is_real=True)
  return np.sqrt(np.abs(lap)).astype(np.complex128)


def _per_channel(blurry: np.ndarray, kernel: np.ndarray, fn) -> np.ndarray:
  """Applies fn(padded 2-D channel, kernel) to each channel of HxWxC float [0, 1]; crops and clips."""
  k = int(max(kernel.shape))
  h, w, c = blurry.shape
  out = np.empty((h, w, c), np.float64)
  for ch in range(c):
    padded = np.pad(blurry[..., ch].astype(np.float64), k, mode=PAD_MODE)
    out[..., ch] = fn(padded, kernel.astype(np.float64))[k : k + h, k : k + w]
  return np.clip(out, 0.0, 1.0)


def restore(
  method: str, blurry_uint8: np.ndarray, kernel: np.ndarray | None, *, noise_sigma: float, seed: int = 0
) -> np.ndarray:
  """The baseline `method`'s estimate of the sharp image: float64 HxWxC in [0, 1].

  `kernel` is the true blur kernel (ignored by `input`); `noise_sigma` the Gaussian noise added after blurring
  (used by `wiener_oracle` only); `seed` seeds `unsupervised_wiener`'s sampler.
  """
  from skimage import restoration  # pylint: disable=g-import-not-at-top

  x = np.asarray(blurry_uint8, np.float64) / 255.0
  if method == "input":
    return x
  if method not in BASELINES:
    raise ValueError(f"unknown baseline {method!r}; expected one of {BASELINES}")
  if kernel is None:
    raise ValueError(f"{method} needs the true kernel")
  kernel = np.asarray(kernel, np.float64)
  if method == "wiener_oracle":
    balance = wiener_balance(noise_sigma)
    return _per_channel(
      x, kernel, lambda img, psf: restoration.wiener(img, psf, balance, reg=_gradient_reg(img.shape), clip=False)
    )
  if method == "rl_oracle":
    return _per_channel(
      x, kernel, lambda img, psf: restoration.richardson_lucy(img, psf, num_iter=RL_ITERATIONS, clip=False)
    )
  rng = np.random.default_rng(seed)
  return _per_channel(x, kernel, lambda img, psf: restoration.unsupervised_wiener(img, psf, clip=False, rng=rng)[0])


def score(
  method: str,
  blurry_uint8: np.ndarray,
  sharp_uint8: np.ndarray,
  kernel: np.ndarray | None,
  *,
  noise_sigma: float,
  seed: int = 0,
) -> tuple[float, float]:
  """(PSNR, SSIM) of the baseline's output under the networks' protocol (rounded to uint8, RGB)."""
  from bdirnet_jax import metrics  # pylint: disable=g-import-not-at-top

  out = metrics.to_uint8(restore(method, blurry_uint8, kernel, noise_sigma=noise_sigma, seed=seed))
  sharp = np.asarray(sharp_uint8)
  return float(metrics.psnr(out, sharp)), float(metrics.ssim(out, sharp))
