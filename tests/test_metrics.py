"""PSNR / SSIM must reproduce scikit-image (the reference every published Python number uses)."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from skimage import data
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from bdirnet_jax import metrics
from bdirnet_jax.metrics import psnr
from bdirnet_jax.metrics import ssim
from bdirnet_jax.metrics import ssim_3d
from bdirnet_jax.metrics import to_uint8

TOL = 1e-4


def sk_ssim(x, y, data_range=255):
  return structural_similarity(
    x,
    y,
    gaussian_weights=True,
    sigma=1.5,
    use_sample_covariance=False,
    data_range=data_range,
    channel_axis=-1,
  )


def sk_psnr(x, y, data_range=255):
  return peak_signal_noise_ratio(x, y, data_range=data_range)


def _photo(name):
  if name == "camera":
    return np.repeat(data.camera()[..., None], 3, axis=-1)
  return getattr(data, name)()


def _degrade(img, kind, seed=0):
  if kind == "blur":
    return cv2.GaussianBlur(img, (0, 0), 2.0)
  rng = np.random.default_rng(seed)
  blurred = cv2.GaussianBlur(img, (0, 0), 1.0).astype(np.float64)
  return np.clip(np.round(blurred + rng.normal(0, 8, img.shape)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
@pytest.mark.parametrize("kind", ["blur", "blur_noise"])
def test_real_photos_match_skimage_uint8(name, kind):
  gt = _photo(name)
  out = _degrade(gt, kind)
  assert abs(float(psnr(out, gt)) - sk_psnr(gt, out)) < TOL
  assert abs(float(ssim(out, gt)) - sk_ssim(gt, out)) < TOL


def test_float_inputs_match_skimage_float64():
  # Off-grid float values: skimage computes these in float64, we in float32.
  rng = np.random.default_rng(1)
  gt = data.coffee().astype(np.float64)
  out = _degrade(data.coffee(), "blur_noise").astype(np.float64) + rng.uniform(-0.5, 0.5, gt.shape)
  assert abs(float(psnr(out, gt)) - sk_psnr(gt, out)) < TOL
  assert abs(float(ssim(out, gt)) - sk_ssim(gt, out)) < TOL


def test_data_range_one():
  gt = data.astronaut()[:96, :128].astype(np.float64) / 255
  out = _degrade(data.astronaut()[:96, :128], "blur_noise").astype(np.float64) / 255
  assert abs(float(psnr(out, gt, 1.0)) - sk_psnr(gt, out, 1.0)) < TOL
  assert abs(float(ssim(out, gt, 1.0)) - sk_ssim(gt, out, 1.0)) < TOL


def test_float32_cancellation_hard_case():
  # Bright and dark flat regions with faint texture: the worst case for E[x^2] - E[x]^2 in float32.
  rng = np.random.default_rng(2)
  base = np.where(np.arange(128)[None, :, None] < 64, 252.0, 3.0) * np.ones((96, 128, 3))
  gt = base + rng.normal(0, 0.7, base.shape)
  out = base + rng.normal(0, 0.7, base.shape)
  assert abs(float(ssim(out, gt)) - sk_ssim(gt, out)) < TOL
  assert abs(float(psnr(out, gt)) - sk_psnr(gt, out)) < TOL


def test_identical_images():
  img = data.astronaut()[:64, :80]
  with np.errstate(divide="ignore"):
    assert sk_psnr(img, img) == np.inf
  assert float(psnr(img, img)) == np.inf
  assert float(ssim(img, img)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("a,b", [(100, 100), (0, 0), (255, 255), (40, 200), (0, 255)], ids=lambda v: str(v))
def test_constant_images(a, b):
  x = np.full((20, 24, 3), a, np.uint8)
  y = np.full((20, 24, 3), b, np.uint8)
  assert abs(float(ssim(x, y)) - sk_ssim(x, y)) < TOL
  if a != b:
    assert abs(float(psnr(x, y)) - sk_psnr(x, y)) < TOL


def test_constant_vs_photo():
  photo = data.coffee()[:40, :50]
  const = np.full_like(photo, 128)
  assert abs(float(ssim(const, photo)) - sk_ssim(const, photo)) < TOL
  assert abs(float(psnr(const, photo)) - sk_psnr(const, photo)) < TOL


@pytest.mark.parametrize("shape", [(13, 17, 3), (11, 11, 3), (11, 40, 1), (31, 12, 2)])
def test_odd_and_minimum_sizes(shape):
  rng = np.random.default_rng(3)
  x = rng.integers(0, 256, shape, dtype=np.uint8)
  y = np.clip(x.astype(int) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
  assert abs(float(ssim(x, y)) - sk_ssim(x, y)) < TOL
  assert abs(float(psnr(x, y)) - sk_psnr(x, y)) < TOL


@pytest.mark.parametrize("shape", [(10, 20, 3), (20, 7, 3)])
def test_below_window_raises_like_skimage(shape):
  x = np.zeros(shape, np.uint8)
  with pytest.raises(ValueError):
    sk_ssim(x, x)
  with pytest.raises(ValueError, match="11x11"):
    ssim(x, x)


def test_bad_shapes_raise():
  with pytest.raises(ValueError):
    psnr(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))
  with pytest.raises(ValueError):
    ssim(np.zeros((16, 16)), np.zeros((16, 16)))


def test_uint8_and_float_inputs_agree():
  gt = data.astronaut()[100:164, 200:290]
  out = _degrade(gt, "blur_noise")
  assert float(psnr(out, gt)) == pytest.approx(float(psnr(out.astype(np.float32), gt)), abs=1e-6)
  assert float(ssim(out, gt)) == pytest.approx(float(ssim(out.astype(np.float32), gt.astype(np.float64))), abs=1e-6)


def test_batched_equals_loop():
  gts = np.stack([data.astronaut()[:48, :56], data.coffee()[:48, :56], _photo("camera")[:48, :56]])
  outs = np.stack([_degrade(g, "blur_noise", seed=i) for i, g in enumerate(gts)])
  p, s = psnr(outs, gts), ssim(outs, gts)
  assert p.shape == s.shape == (3,)
  for i in range(3):
    assert float(p[i]) == pytest.approx(float(psnr(outs[i], gts[i])), abs=1e-5)
    assert float(s[i]) == pytest.approx(float(ssim(outs[i], gts[i])), abs=1e-6)
    assert abs(float(s[i]) - sk_ssim(gts[i], outs[i])) < TOL


def test_jit_with_traced_data_range():
  x = data.coffee()[:32, :32].astype(np.float32) / 255
  y = np.clip(x + 0.05, 0, 1)
  f = jax.jit(lambda a, b, r: (psnr(a, b, r), ssim(a, b, r)))
  p, s = f(jnp.asarray(x), jnp.asarray(y), 1.0)
  assert abs(float(p) - sk_psnr(y.astype(np.float64), x.astype(np.float64), 1.0)) < TOL
  assert abs(float(s) - sk_ssim(y.astype(np.float64), x.astype(np.float64), 1.0)) < TOL


def test_gaussian_taps_match_scipy():
  from scipy.ndimage import gaussian_filter1d

  impulse = np.zeros(21)
  impulse[10] = 1.0
  ref = gaussian_filter1d(impulse, 1.5, truncate=3.5)[5:16]
  assert metrics.SSIM_WIN_SIZE == 11
  np.testing.assert_allclose(metrics._TAPS, ref, rtol=0, atol=1e-15)


@settings(max_examples=8, deadline=None)
@given(
  h=st.integers(11, 20),
  w=st.integers(11, 20),
  c=st.integers(1, 3),
  seed=st.integers(0, 2**16),
)
def test_random_uint8_images_match_skimage(h, w, c, seed):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  y = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
  assert abs(float(ssim(x, y)) - sk_ssim(x, y)) < TOL
  assert abs(float(psnr(x, y)) - sk_psnr(x, y)) < TOL


def test_to_uint8_rounds_like_tensor2img():
  x = np.array([-0.3, 0.0, 0.5 / 255, 1.5 / 255, 0.2, 0.999, 1.0, 1.7], np.float32)
  ref = np.round(np.clip(x, 0, 1) * np.float32(255)).astype(np.uint8)
  got = np.asarray(to_uint8(x))
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, ref)
  np.testing.assert_array_equal(got[[0, 1, 6, 7]], [0, 0, 255, 255])
  rng = np.random.default_rng(4)
  r = rng.uniform(-0.1, 1.1, (64, 64, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(to_uint8(r)), np.round(np.clip(r, 0, 1) * np.float32(255)).astype(np.uint8))


def matlab_ssim_3d(x, y, data_range=255.0):
  """Independent float64 port of MATLAB ``ssim`` on an HxWx3 array (its 'SSS' 3-D volume default).

  From MATLAB's documentation and NAFNet's ``_ssim_3d``: an explicit 11x11x11 Gaussian kernel (sigma 1.5,
  normalised outer product), correlated as a full 3-D stencil with replicate ('nearest') padding on every axis,
  K1 0.01, K2 0.03, and the mean of the whole map (no crop).
  """
  t = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
  kernel = t[:, None, None] * t[None, :, None] * t[None, None, :]
  kernel /= kernel.sum()
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  f = lambda img: scipy.ndimage.correlate(img, kernel, mode="nearest")
  mx, my = f(x), f(y)
  sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  s_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
  return float(s_map.mean())


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("kind", ["blur", "blur_noise"])
def test_ssim_3d_matches_matlab_port_on_photos(name, kind):
  gt = getattr(data, name)()[40:136, 60:188]  # 96x128: the 11-tap window's borders matter at this size
  out = _degrade(gt, kind)
  ref = matlab_ssim_3d(out, gt)
  assert abs(float(ssim_3d(out, gt)) - ref) < TOL
  # A different number from the per-channel 2-D SSIM: why gopro/hide tables need this one.
  assert abs(float(ssim(out, gt)) - ref) > 1e-3


def test_ssim_3d_batch_float_identity_and_symmetry():
  rng = np.random.default_rng(3)
  gt = data.astronaut()[:48, :40]
  outs = np.stack([_degrade(gt, "blur"), _degrade(gt, "blur_noise", seed=1)])
  batch = np.asarray(ssim_3d(outs, np.stack([gt, gt])))
  assert batch.shape == (2,)
  for i in range(2):
    assert abs(batch[i] - matlab_ssim_3d(outs[i], gt)) < TOL
  assert float(ssim_3d(gt, gt)) == pytest.approx(1.0, abs=1e-6)
  assert float(ssim_3d(outs[0], gt)) == pytest.approx(float(ssim_3d(gt, outs[0])), abs=1e-6)
  # Off-grid floats in [0, 1] with data_range 1 (shift invariance keeps float32 accurate).
  xf = rng.uniform(0, 1, (33, 21, 3))
  yf = np.clip(xf + rng.normal(0, 0.05, xf.shape), 0, 1)
  assert abs(float(ssim_3d(xf, yf, 1.0)) - matlab_ssim_3d(xf, yf, 1.0)) < TOL
