"""Köhler protocol: equal to an independent float64 port of the official eval_image.m on frames with known
shifts and gains."""

import time

import numpy as np
import pytest
from skimage import data

from bdirnet_jax import kohler_protocol


# --------------------------------------------------------------------------------------------------------------
# Reference: a literal float64 port of eval_image.m (PSNR), dftregistration.m (usfac 1), imshift.m ('same'),
# metrix_mux's luminance preprocessing and get_best_metric_value2.m, written from their published text.
# --------------------------------------------------------------------------------------------------------------
def _dftregistration_usfac1(buf1ft, buf2ft):
  m, n = buf1ft.shape
  cc = np.fft.ifft2(buf1ft * np.conj(buf2ft)).real  # conjugate-symmetric product: MATLAB returns it real
  max1, loc1 = cc.max(axis=0), cc.argmax(axis=0)  # [max1, loc1] = max(CC): per column, first maximum
  loc2 = int(max1.argmax())  # [max2, loc2] = max(max1)
  rloc, cloc = int(loc1[loc2]) + 1, loc2 + 1  # 1-based, as in MATLAB
  md2, nd2 = m // 2, n // 2  # fix(m/2)
  row_shift = rloc - m - 1 if rloc > md2 else rloc - 1
  col_shift = cloc - n - 1 if cloc > nd2 else cloc - 1
  return row_shift, col_shift


def _imshift_same(x, t):
  """imshift(x, t, 'same') for integer t: shiftmatrix keeps n - |t| samples, 'same' puts them back at offset t."""
  out = np.zeros_like(x)
  h, w = x.shape[:2]
  (ty, tx) = t
  src = x[max(0, -ty) : h - max(0, ty), max(0, -tx) : w - max(0, tx)]
  out[max(0, ty) : h - max(0, -ty), max(0, tx) : w - max(0, -tx)] = src
  return out


def _metrix_psnr(ref, query):
  y = lambda img: 0.29900 * img[..., 0] + 0.58700 * img[..., 1] + 0.11400 * img[..., 2]
  mse = np.mean((y(ref) - y(query)) ** 2)
  return 10 * np.log10(255 * 255 / mse)


def eval_image_port(deblurred, ground_truth, image=0, kernel=0):
  """Returns (max PSNR over frames, 0-based index of the best frame)."""
  z = deblurred.astype(np.float64)
  c = np.ones_like(z)
  n = ground_truth.shape[0]
  id_gt = list(range(1, n + 1))
  if image == 1 and kernel == 3:
    id_gt = [j for j in list(range(1, 30)) + list(range(31, 199)) if j <= n]  # a short test shake
  scores = np.full(n, -np.inf)
  for j in id_gt:
    x = ground_truth[j - 1].astype(np.float64)
    xf = np.fft.fft2(x.mean(axis=2))
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    zf = np.fft.fft2(zs.mean(axis=2))
    shift = _dftregistration_usfac1(xf, zf)
    cr = _imshift_same(c, shift)
    zr = _imshift_same(zs, shift)
    scores[j - 1] = _metrix_psnr(x * cr, zr)
  return float(scores.max()), int(scores.argmax())


# --------------------------------------------------------------------------------------------------------------
def _shake(n_frames=9, h=48, w=64, seed=0):
  """Frames of one recorded shake: crops of a photo along a random integer trajectory (known shifts), each with
  its own sensor noise (pure translations would let registration match a neighbouring frame equally well)."""
  rng = np.random.default_rng(seed)
  photo = data.astronaut()[100 : 100 + h + 24, 150 : 150 + w + 24]
  steps = np.array([(1, 0), (0, 1), (1, 1), (1, -1), (2, 1)])  # never (0, 0): every frame differs
  path = np.cumsum(steps[rng.integers(0, len(steps), n_frames)], axis=0)
  path = np.clip(path - path.min(axis=0), 0, 20)
  frames = np.stack([photo[y : y + h, x : x + w] for y, x in path]).astype(np.float64)
  frames += rng.normal(0, 6.0, frames.shape)
  return np.clip(np.round(frames), 0, 255).astype(np.uint8), path


def _output_like(frame, gain, shift, noise, seed=0):
  rng = np.random.default_rng(seed)
  out = np.roll(frame.astype(np.float64) * gain, shift, axis=(0, 1))
  out = out + rng.normal(0, noise, out.shape)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
  "best, gain, shift, noise",
  [
    (4, 1.0, (0, 0), 1.0),
    (2, 0.8, (3, -2), 2.0),
    (7, 1.15, (-4, 5), 4.0),
    (0, 0.6, (1, 1), 8.0),
  ],
)
def test_score_equals_eval_image_port(best, gain, shift, noise):
  frames, _ = _shake(seed=best)
  out = _output_like(frames[best], gain, shift, noise, seed=best)
  ref_psnr, ref_frame = eval_image_port(out, frames)
  got = kohler_protocol.score(out, frames, batch_size=4)  # 9 frames: three batches, the last one padded
  assert got["frame"] == ref_frame == best
  assert abs(got["psnr"] - ref_psnr) < 0.05, (got["psnr"], ref_psnr)
  assert got["shift"] == tuple(-np.asarray(shift))  # undoes the output's displacement
  assert 0 < got["ssim"] <= 1 and not got["degenerate"]


def test_search_gain_and_shift_matter():
  """An output equal to one frame scores far higher than against the middle frame without gain or shift."""
  frames, _ = _shake(n_frames=11, seed=5)
  out = _output_like(frames[1], 0.7, (2, 3), 0.5)
  got = kohler_protocol.score(out, frames)
  middle = frames[len(frames) // 2].astype(np.float64)
  naive = 10 * np.log10(255**2 / np.mean((middle - out) ** 2))
  assert got["frame"] == 1 and got["psnr"] > naive + 10


def test_excluded_frames_of_shake_1_3_never_win():
  frames, _ = _shake(n_frames=32, h=24, w=32, seed=2)
  out = frames[29].copy()  # frame number 30: missing from the official ground truth of shake (1, 3)
  numbers = np.arange(1, 33)
  mask = kohler_protocol.frame_mask(1, 3, numbers)
  assert not mask[29] and mask[28] and mask[30] and mask.sum() == 31
  assert kohler_protocol.frame_mask(2, 3, numbers).all()
  got = kohler_protocol.score(out, frames, mask=mask)
  ref_psnr, ref_frame = eval_image_port(out, frames, image=1, kernel=3)
  assert got["frame"] == ref_frame != 29
  assert abs(got["psnr"] - ref_psnr) < 0.05
  unmasked = kohler_protocol.score(out, frames)
  assert unmasked["frame"] == 29 and unmasked["psnr"] > 80  # the identical frame wins (float32 gain ~1 - 1e-7)


def test_black_output_is_finite_and_flagged():
  frames, _ = _shake(n_frames=3, h=24, w=32)
  got = kohler_protocol.score(np.zeros_like(frames[0]), frames)
  assert np.isfinite(got["psnr"]) and np.isfinite(got["ssim"]) and got["degenerate"]
  assert got["gain"] == 0 and got["shift"] == (0, 0)


def test_bad_inputs():
  frames, _ = _shake(n_frames=2, h=24, w=32)
  with pytest.raises(TypeError):
    kohler_protocol.score(frames[0].astype(np.float32), frames)
  with pytest.raises(ValueError):
    kohler_protocol.score(frames[0][:10], frames)


def test_many_frames_take_seconds_not_minutes():
  """199 frames of one shake in batches on the device: well under a second per shot after compilation."""
  frames = np.repeat(_shake(n_frames=1, h=96, w=128)[0], 199, axis=0)
  out = frames[0]
  kohler_protocol.score(out, frames[:16])  # compile
  t0 = time.perf_counter()
  got = kohler_protocol.score(out, frames)
  assert got["frame"] == 0 and time.perf_counter() - t0 < 10
