"""The two-view train step moves no activations between devices: both views of an image live on the same device.

`BDIRNet.__call__` interleaves the views on the batch axis ([b0, s0, b1, s1, ...]), so with the batch sharded over
`data` each device's shard holds both views of its own images and splitting them apart is a local reshape. The
earlier concatenation ([b0, b1, ..., s0, s1, ...]) made XLA re-shard: 72 collective-permutes and 3 all-to-alls in
the tiny step on 4 fake devices (BENCHMARKS.md, "Two views per device").
"""

import jax
import numpy as np

from bdirnet_jax import losses
from bdirnet_jax.models.bdirnet import deinterleave
from bdirnet_jax.models.bdirnet import interleave
from bdirnet_jax.models.bdirnet import split_views
from benchmarks import train_step as bench


def test_two_view_tiny_step_has_no_permute_or_all_to_all():
  from configs import tiny  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 4  # tests/conftest.py
  assert losses.needs_sharp_view(tiny.get_config().loss)  # the two-view path is the one compiled
  out = bench.main(["--config=configs/tiny.py", "--collectives"])
  counts = out["collectives"]
  assert set(counts) == set(bench.COLLECTIVES)
  assert counts["collective-permute"] == 0 and counts["all-to-all"] == 0, counts
  # What is left: the gradient/metric all-reduce and InfoNCE's global-batch reductions and one gather of its
  # embeddings. The FFT loss gathers nothing (a matmul DFT; XLA replicates an rfft of a batch-sharded array).
  assert tiny.get_config().loss.fft_weight > 0  # the FFT loss is in the compiled step
  assert 1 <= counts["all-reduce"] <= 6 and counts["all-gather"] <= 1 and counts["reduce-scatter"] == 0, counts


def test_interleave_keeps_both_views_of_an_image_in_one_shard():
  a, b = np.arange(8).reshape(4, 2) * 1.0, -np.arange(8).reshape(4, 2) * 1.0
  both = np.asarray(interleave(a, b))
  np.testing.assert_array_equal(both[0::2], a)
  np.testing.assert_array_equal(both[1::2], b)
  # 4 devices, 2 images each: device i holds rows 2i, 2i+1 = image i's two views
  for i, shard in enumerate(np.split(both, 4)):
    np.testing.assert_array_equal(shard, np.stack([a[i], b[i]]))
  x, y = deinterleave(both)
  np.testing.assert_array_equal(x, a)
  np.testing.assert_array_equal(y, b)
  (ta, tb) = split_views({"k": both, "t": (both, both)})
  np.testing.assert_array_equal(ta["t"][1], a)
  np.testing.assert_array_equal(tb["k"], b)


def test_count_collectives_reads_opcodes_not_names():
  hlo = """
  %all-reduce.3 = f32[] all-reduce(f32[] %x), replica_groups={}, to_apply=%add
  %ars = (f32[4]{0}, f32[]) all-reduce-start(f32[4]{0} %a, f32[] %b), to_apply=%add
  %ard = (f32[4]{0}, f32[]) all-reduce-done(%ars)
  %collective-permute.1 = f32[2] collective-permute(f32[2] %y), source_target_pairs={{0,1}}
  %cps = (f32[2], f32[2]) collective-permute-start(f32[2] %y), source_target_pairs={{1,0}}
  %all-gather = f32[8] all-gather(f32[2] %z), dimensions={0}
  %a2a = f32[8] all-to-all(f32[8] %w), dimensions={0}
  %fusion = f32[] fusion(%all-reduce.3), kind=kLoop, calls=%fused_all-gather_computation
  """
  assert bench.count_collectives(hlo) == {
    "all-reduce": 2,
    "all-gather": 1,
    "collective-permute": 2,
    "all-to-all": 1,
    "reduce-scatter": 0,
  }
