"""Tile layout, blend weights and the stripe-by-stripe tiled pass, exact for networks whose receptive field is small."""

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from bdirnet_jax import tiling
from tests.fakes import space_to_depth_net

SETTINGS = hypothesis.settings(max_examples=25, deadline=None)


@SETTINGS
@hypothesis.given(
  length=st.integers(1, 700), tile=st.integers(8, 200), overlap=st.integers(0, 40), align=st.sampled_from([1, 2, 4, 8])
)
def test_tile_starts_cover_overlap_and_align(length, tile, overlap, align):
  hypothesis.assume(tile - overlap >= align)
  starts = tiling.tile_starts(length, tile, overlap, align)
  size = min(tile, length)
  assert starts[0] == 0 and starts[-1] + size == length
  assert starts == sorted(set(starts))
  for a, b in zip(starts, starts[1:]):
    assert a + size - b >= overlap  # neighbours overlap by at least `overlap`
  assert all(s % align == 0 for s in starts[:-1])


def apply_tiled(
  image: np.ndarray,
  apply_batch,
  *,
  tile: int,
  overlap: int,
  batch_size: int = 1,
  align: int = 1,
) -> np.ndarray:
  """The whole image through `tiling.run_tiled`: float [H, W, C] image -> blended float32 [H, W, C] result."""
  h, w, c = image.shape
  layout = tiling.make_layout(h, w, tile, overlap, align)
  out = np.empty((h, w, c), np.float32)

  def write_rows(y0, rows):
    out[y0 : y0 + rows.shape[0]] = rows

  tiling.run_tiled(
    layout,
    lambda y, x, th, tw: np.asarray(image[y : y + th, x : x + tw], np.float32),
    apply_batch,
    write_rows,
    batch_size=batch_size,
    channels=c,
  )
  return out


def test_tile_starts_rejects_bad_geometry():
  with pytest.raises(ValueError, match="overlap < tile"):
    tiling.tile_starts(100, 32, 32)
  with pytest.raises(ValueError, match="alignment"):
    tiling.tile_starts(100, 32, 28, align=8)


def test_ramp_weights_are_zero_at_the_margin_and_sum_to_one_where_two_tiles_meet():
  size, ov, margin = 40, 16, 4
  left, right = tiling.ramp(size, 0, ov, margin), tiling.ramp(size, ov, 0, margin)
  assert left[: size - ov].min() == 1.0 and np.all(left[-margin:] == 0.0)
  assert np.all(right[:margin] == 0.0) and right[ov:].min() == 1.0
  np.testing.assert_allclose(left[size - ov :] + right[:ov], 1.0, atol=1e-6)
  assert np.all(np.diff(left[size - ov :]) <= 0) and np.all(np.diff(right[:ov]) >= 0)  # monotone ramps


@SETTINGS
@hypothesis.given(
  h=st.integers(1, 90),
  w=st.integers(1, 90),
  tile=st.integers(4, 40),
  overlap=st.integers(0, 12),
  batch=st.integers(1, 5),
  align=st.sampled_from([1, 2, 4]),
  seed=st.integers(0, 2**16),
)
def test_merge_of_split_is_identity(h, w, tile, overlap, batch, align, seed):
  tile -= tile % align
  hypothesis.assume(tile - overlap >= align)
  image = np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)
  out = apply_tiled(image, lambda t: t, tile=tile, overlap=overlap, batch_size=batch, align=align)
  np.testing.assert_allclose(out, image, rtol=0, atol=2e-6)


def test_rows_are_written_once_in_order_one_stripe_at_a_time():
  h, w, tile = 150, 70, 32
  layout = tiling.make_layout(h, w, tile, overlap=8)
  written, reads = [], []

  def read_tile(y, x, th, tw):
    reads.append((y, x, th, tw))
    return np.ones((th, tw, 3), np.float32)

  tiling.run_tiled(
    layout, read_tile, lambda t: t * 2.0, lambda y0, rows: written.append((y0, rows.copy())), batch_size=3
  )
  assert len(reads) == layout.num_tiles == len(layout.row_starts) * len(layout.col_starts)
  ys = [y0 for y0, _ in written]
  assert ys == sorted(ys) and ys[0] == 0
  assert sum(r.shape[0] for _, r in written) == h and all(r.shape[0] <= tile for _, r in written)
  for (y0, rows), (y1, _) in zip(written, written[1:]):
    assert y0 + rows.shape[0] == y1
  np.testing.assert_allclose(np.concatenate([r for _, r in written]), 2.0, atol=1e-6)


def _conv_stack(seed=0, layers=3, channels=6):
  """A random 3x3 conv stack (receptive field radius `layers`), no global statistics, jitted."""
  keys = jax.random.split(jax.random.key(seed), layers)
  shapes = [(3, 3, 3 if i == 0 else channels, 3 if i == layers - 1 else channels) for i in range(layers)]
  kernels = [jax.random.normal(k, s) * 0.3 for k, s in zip(keys, shapes)]

  @jax.jit
  def apply(x):
    for i, k in enumerate(kernels):
      x = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      x = jnp.tanh(x) if i < layers - 1 else x
    return x

  return apply


def test_tiled_equals_untiled_for_a_local_network():
  image = np.random.default_rng(0).random((75, 101, 3), dtype=np.float32)
  apply = _conv_stack()
  whole = np.asarray(apply(image[None]))[0]
  tiled = apply_tiled(image, apply, tile=32, overlap=12, batch_size=4)  # margin 3 = receptive radius
  assert tiling.make_layout(75, 101, 32, 12).num_tiles >= 9
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
  # An overlap whose quarter is below the receptive radius is exact only away from the tile borders.
  tiled = apply_tiled(image, apply, tile=32, overlap=4, batch_size=4)
  assert np.abs(tiled - whole).max() > 1e-3
  layout = tiling.make_layout(75, 101, 32, 4)
  far = np.ones((75, 101), bool)
  for starts, size, axis in ((layout.row_starts, layout.tile_height, 0), (layout.col_starts, layout.tile_width, 1)):
    for s in starts:
      for edge in (s, s + size):
        if 0 < edge < far.shape[axis]:
          band = slice(max(0, edge - 3), edge + 3)
          far[(band, slice(None)) if axis == 0 else (slice(None), band)] = False
  np.testing.assert_allclose(tiled[far], whole[far], rtol=0, atol=1e-5)


def test_aligned_tiles_keep_a_strided_network_exact():
  image = np.random.default_rng(1).random((64, 90, 3), dtype=np.float32)
  apply = space_to_depth_net()
  whole = np.asarray(apply(image[None]))[0]
  aligned = apply_tiled(image, apply, tile=32, overlap=16, batch_size=2, align=2)
  np.testing.assert_allclose(aligned, whole, rtol=0, atol=1e-5)
  assert any(s % 2 for s in tiling.tile_starts(90, 32, 16, align=1))  # so unaligned tiles see the other phase
  unaligned = apply_tiled(image, apply, tile=32, overlap=16, batch_size=2, align=1)
  assert np.abs(unaligned - whole).max() > 1e-3
  # Odd sides: tiles cover the image reflect-padded to the alignment, exactly like padding the whole image.
  odd = image[:63, :89]
  whole = np.asarray(apply(np.pad(odd, [(0, 1), (0, 1), (0, 0)], mode="reflect")[None]))[0, :63, :89]
  tiled = apply_tiled(odd, apply, tile=32, overlap=16, batch_size=3, align=2)
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
