"""The merge of processes' evaluation shares: order, means and flags as if one process had scored everything."""

import numpy as np

from bdirnet_jax import eval_shares


def _share(indices, seconds, psnr_of=lambda i: 20.0 + i, flag=None):
  rows = []
  for i in indices:
    row = {
      "image_id": f"im{i}",
      "index": i,
      "height": 8 + i % 2,
      "width": 8,
      "psnr": psnr_of(i),
      "ssim": 0.5,
      "input_psnr": 10.0,
      "input_ssim": 0.25,
    }
    if flag:
      row[flag] = i == 3
    rows.append(row)
  return {"protocol": "realblur_ecc" if flag else "rgb_uint8_gauss11", "seconds": seconds, "per_image": rows}


def test_merge_puts_shares_back_in_source_order_and_keeps_the_slowest_time():
  # Process 0 of 2 scored images 0, 2, 4; process 1 scored 1, 3 (each in its own finishing order).
  merged = eval_shares.merge([_share([4, 0, 2], 3.0), _share([3, 1], 5.0)])
  assert [r["index"] for r in merged["per_image"]] == [0, 1, 2, 3, 4]
  assert merged["seconds"] == 5.0
  assert merged["num_image_sizes"] == 2


def test_aggregate_means_over_scored_images_and_counts_the_protocols_flag():
  merged = eval_shares.aggregate(
    eval_shares.merge([_share([0, 2], 1.0, flag="ecc_failed"), _share([1, 3], 1.0, flag="ecc_failed")])
  )
  assert merged["num_images"] == merged["num_scored"] == 4
  np.testing.assert_allclose(merged["psnr"], np.mean([20.0, 21.0, 22.0, 23.0]))
  assert merged["input_psnr"] == 10.0 and merged["ssim"] == 0.5
  assert merged["ecc_failures"] == 1


def test_aggregate_without_ground_truth_gives_none_not_a_mean_of_nothing():
  summary = {
    "protocol": "rgb_uint8_gauss11",
    "seconds": 1.0,
    "per_image": [{"image_id": "a", "index": 0, "height": 8, "width": 8}],
  }
  out = eval_shares.combine(summary, None, "x_test")  # one process: no files, no collective
  assert out["num_images"] == 1 and out["num_scored"] == 0 and out["psnr"] is None and out["input_ssim"] is None
