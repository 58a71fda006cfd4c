"""RealBlur protocol: alignment must undo small camera misregistration and exposure differences."""

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from bdirnet_jax import realblur_protocol as rb
from bdirnet_jax.realblur_protocol import REALBLUR_PROTOCOL
from bdirnet_jax.realblur_protocol import image_align
from bdirnet_jax.realblur_protocol import realblur_metrics

SIZE = 192


@pytest.fixture(scope="module")
def gt():
  # On the uint8 grid, like the PNG ground truth the original reads.
  img = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
  return img.astype(np.float32) / 255


def _homography(tx=1.5, ty=-1.0, deg=0.4):
  t = np.deg2rad(deg)
  return np.array([[np.cos(t), -np.sin(t), tx], [np.sin(t), np.cos(t), ty], [2e-6, -3e-6, 1.0]], np.float32)


def _warp(img, h):
  # out(h @ p) = img(p): the ECC warp mapping ground-truth coords to output coords is h itself.
  return cv2.warpPerspective(img, h, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _max_displacement(w_est, w_true, n=SIZE):
  g = np.stack(np.meshgrid(np.arange(0, n, 4), np.arange(0, n, 4)), -1).reshape(-1, 2)
  p = np.c_[g, np.ones(len(g))]

  def apply(w):
    q = p @ np.asarray(w, np.float64).T
    return q[:, :2] / q[:, 2:]

  return np.abs(apply(w_est) - apply(w_true)).max()


def test_recovers_known_homography(gt):
  h = _homography()
  out = _warp(gt, h)
  res = realblur_metrics(out, gt)
  assert res["protocol"] == REALBLUR_PROTOCOL == "realblur_ecc"
  assert not res["ecc_failed"]
  assert res["warp"].shape == (3, 3)
  assert _max_displacement(res["warp"], h) < 0.15  # pixels, over the whole frame
  unaligned = peak_signal_noise_ratio(gt, np.clip(out, 0, 1), data_range=1)
  assert res["psnr"] > unaligned + 8.0
  assert res["ssim"] > 0.97


def test_mask_covers_only_warped_pixels(gt):
  h = _homography(tx=3.0, ty=0.0, deg=0.0)
  al = image_align(_warp(gt, h), gt)
  assert al.mask.shape == gt.shape
  assert set(np.unique(al.mask)) <= {0.0, 1.0}
  # Ground-truth column x samples the output at x + 3: the last three columns fall outside.
  assert np.all(al.mask[:, -2:] == 0)
  assert np.all(al.mask[5:-5, 5 : -5 - 4] == 1)
  np.testing.assert_array_equal(al.target, gt * al.mask)


def test_intensity_scale_invariant(gt):
  out = _warp(gt, _homography())
  a = realblur_metrics(out, gt, quantize=False)
  b = realblur_metrics(out * 0.7, gt, quantize=False)
  assert b["scale"] == pytest.approx(a["scale"] / 0.7, rel=1e-4)
  assert abs(a["psnr"] - b["psnr"]) < 1e-3
  assert abs(a["ssim"] - b["ssim"]) < 1e-5


def test_masked_scores_reduce_to_skimage_with_full_mask(gt):
  rng = np.random.default_rng(0)
  out = np.clip(gt + rng.normal(0, 0.03, gt.shape), 0, 1).astype(np.float32)
  mask = np.ones_like(gt)
  ref_psnr = peak_signal_noise_ratio(gt.astype(np.float64), out.astype(np.float64), data_range=1)
  ref_ssim = structural_similarity(
    gt.astype(np.float64),
    out.astype(np.float64),
    gaussian_weights=True,
    use_sample_covariance=False,
    data_range=1.0,
    channel_axis=-1,
  )
  assert rb.masked_psnr(gt, out, mask) == pytest.approx(ref_psnr, abs=1e-4)
  assert rb.masked_ssim(gt, out, mask) == pytest.approx(ref_ssim, abs=1e-6)


def test_quantize_matches_saved_png_path(gt):
  out = np.clip(_warp(gt, _homography()) + 0.002, 0, 1)
  png = (np.clip(out * 255, 0, 255) + 0.5).astype(np.uint8).astype(np.float32) / 255
  a = realblur_metrics(out, gt)
  b = realblur_metrics(png, gt, quantize=False)
  assert a["psnr"] == b["psnr"] and a["ssim"] == b["ssim"]


def test_ecc_failure_falls_back_to_identity(gt):
  # A flat output has no gradients: OpenCV's ECC raises, the original script would crash.
  flat = np.full_like(gt, 0.5)
  res = realblur_metrics(flat, gt)
  assert res["ecc_failed"]
  np.testing.assert_array_equal(res["warp"], np.eye(3, dtype=np.float32))
  assert np.isnan(res["ecc_cc"])
  assert np.isfinite(res["psnr"]) and np.isfinite(res["ssim"])


def test_ecc_exception_is_caught(gt, monkeypatch):
  def boom(*args, **kwargs):
    raise cv2.error("simulated divergence")

  monkeypatch.setattr(rb.cv2, "findTransformECC", boom)
  out = np.clip(gt * 0.9, 0, 1)
  res = realblur_metrics(out, gt, quantize=False)
  assert res["ecc_failed"]
  # Identity warp: the score is the plain scaled comparison over the full frame.
  scaled = np.float32(np.sum(gt * out) / np.sum(out * out)) * out
  assert res["psnr"] == pytest.approx(
    peak_signal_noise_ratio(gt.astype(np.float64), scaled.astype(np.float64), data_range=1),
    abs=1e-3,
  )


def test_rejects_bad_shapes(gt):
  with pytest.raises(ValueError):
    realblur_metrics(gt[..., 0], gt[..., 0])
  with pytest.raises(ValueError):
    realblur_metrics(gt[:-1], gt)


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_black_or_constant_output_is_finite_and_flagged(gt, value):
  # The original's gain is 0/0 on a black output: NaN scores would make the dataset mean NaN.
  out = np.full_like(gt, value)
  res = realblur_metrics(out, gt)
  assert np.isfinite(res["psnr"]) and np.isfinite(res["ssim"]), res
  assert res["ecc_failed"] and res["psnr"] < 15
  np.testing.assert_array_equal(res["warp"], np.eye(3, dtype=np.float32))
