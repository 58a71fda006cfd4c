"""Overlapping tiles of a large image, blended without seams, processed one horizontal stripe at a time.

Neighbouring tiles overlap by at least `overlap` pixels. Inside each overlap the outer quarter on either side gets
zero weight (those are the pixels a tile computes with the least context) and the middle half blends linearly, so
the weights are continuous and, where two tiles meet, sum to one. A network whose receptive field reaches at most
`overlap // 4` pixels therefore gives exactly its untiled output; one with global statistics (BDIRNet's channel
attention and SAID) computes them per tile, which changes the result slightly.

Tiles are laid over the image padded to a multiple of `align` (the network's downsampling factor), so each starts
at an aligned offset and sees the stride phase the whole image would. They run in raster order and finished rows
are handed out as soon as no later tile touches them: the host keeps one stripe (tile height x image width) of
float32, never a float32 copy of the whole image.
"""

import collections
import dataclasses
import math
from typing import Any
from typing import Callable

import numpy as np

from bdirnet_jax import inference


def tile_fits(tile: int, overlap: int, align: int = 1) -> bool:
  """Whether tiles of `tile` pixels overlapping by `overlap` advance by at least one aligned step (the rule
  predict's --tile/--tile_overlap flags are checked against)."""
  return overlap >= 0 and tile - overlap >= align


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
  """Start offsets of tiles of size min(tile, length) covering [0, length), neighbours overlapping >= overlap.

  Starts are spread evenly and rounded to multiples of `align` (the network's downsampling factor, so each tile
  sees the same stride phase as the whole image), except the last, which ends at `length`.
  """
  if tile < 1 or not 0 <= overlap < tile:
    raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
  if length <= tile:
    return [0]
  if not tile_fits(tile, overlap, align):
    raise ValueError(f"tile={tile} minus overlap={overlap} must be at least the alignment {align}")
  last = length - tile
  n = math.ceil(last / (tile - overlap)) + 1
  while True:  # rounding down to the alignment can widen a gap by up to align - 1: add tiles until none is too wide
    starts = sorted({align * (i * last // ((n - 1) * align)) for i in range(n - 1)} | {last})
    if max(b - a for a, b in zip(starts, starts[1:])) <= tile - overlap:
      return starts
    n += 1


def ramp(size: int, before: int, after: int, margin: int) -> np.ndarray:
  """1-D weights of a tile of `size` overlapping its neighbours by `before` and `after` pixels (0: image border)."""
  d = np.arange(size, dtype=np.float32)
  w = np.ones(size, np.float32)
  if before > 0:
    w = np.minimum(w, np.clip((d - margin + 1) / (before - 2 * margin + 1), 0.0, 1.0))
  if after > 0:
    e = size - 1 - d
    w = np.minimum(w, np.clip((e - margin + 1) / (after - 2 * margin + 1), 0.0, 1.0))
  return w


@dataclasses.dataclass(frozen=True)
class TileLayout:
  """Tile layout of an image: tiles of tile_height x tile_width at every (y, x) in row_starts x col_starts, over the
  image padded at the bottom/right
  to a multiple of the alignment (as the untiled pass pads it), so every tile, the last included, is aligned."""

  height: int  # the image
  width: int
  padded_height: int  # the image padded to the alignment: the extent of the tiles
  padded_width: int
  tile_height: int
  tile_width: int
  row_starts: tuple
  col_starts: tuple
  row_weights: tuple  # weights of the tiles starting at row_starts[i], length tile_height
  col_weights: tuple
  norm_y: np.ndarray  # sum of the weights over all tiles, per row / column (the 2-D sum is their outer product)
  norm_x: np.ndarray

  @property
  def num_tiles(self) -> int:
    return len(self.row_starts) * len(self.col_starts)


def _axis(length, tile, overlap, align, margin):
  size = min(tile, length)
  starts = tile_starts(length, tile, overlap, align)
  weights = []
  for i, s in enumerate(starts):
    before = starts[i - 1] + size - s if i > 0 else 0
    after = s + size - starts[i + 1] if i + 1 < len(starts) else 0
    weights.append(ramp(size, before, after, margin))
  norm = np.zeros(length, np.float32)
  for s, w in zip(starts, weights):
    norm[s : s + size] += w
  return size, tuple(starts), tuple(weights), norm


def make_layout(height: int, width: int, tile: int, overlap: int, align: int = 1) -> TileLayout:
  if tile % align:
    raise ValueError(f"tile={tile} must be a multiple of the alignment {align}")
  ph, pw = -(-height // align) * align, -(-width // align) * align
  margin = overlap // 4
  th, ys, wy, ny = _axis(ph, tile, overlap, align, margin)
  tw, xs, wx, nx = _axis(pw, tile, overlap, align, margin)
  if ny.min() <= 0 or nx.min() <= 0:  # cannot happen for valid starts; a bug guard, not an input check
    raise AssertionError(f"tile weights leave pixels uncovered: {height}x{width}, tile {tile}, overlap {overlap}")
  return TileLayout(height, width, ph, pw, th, tw, ys, xs, wy, wx, ny, nx)


def run_tiled(
  layout: TileLayout,
  read_tile: Callable[[int, int, int, int], np.ndarray],
  apply_batch: Callable[[np.ndarray], Any],
  write_rows: Callable[[int, np.ndarray], None],
  *,
  batch_size: int,
  channels: int = 3,
) -> None:
  """Applies `apply_batch` to every tile and hands the blended image to `write_rows` stripe by stripe.

  read_tile(y, x, h, w) -> float32 [h, w, C], a region inside the image; tiles reaching into the alignment padding
  are padded here as inference.pad_to_multiple pads the whole image.
  apply_batch(float32 [N <= batch_size, th, tw, C]) -> anything np.asarray turns into the [N, th, tw, C] result (a
  jax.Array: the next batch is dispatched before this one is waited for). write_rows(y0, rows) receives the final
  float32 rows [n, width, C], top to bottom, each row once.
  """
  coords = [(i, j) for i in range(len(layout.row_starts)) for j in range(len(layout.col_starts))]
  acc = np.zeros((layout.tile_height, layout.padded_width, channels), np.float32)
  mode = inference.pad_mode(layout.height, layout.width)  # as the untiled pass pads the whole image
  state = {"stripe": 0}

  def read(y, x):
    h, w = min(layout.tile_height, layout.height - y), min(layout.tile_width, layout.width - x)
    region = read_tile(y, x, h, w)
    return inference.pad_bottom_right(region, layout.tile_height, layout.tile_width, mode)

  def finish_rows(stop_row):
    """Writes the accumulated rows [row_starts[stripe], stop_row) and shifts the accumulator up to stop_row."""
    y0 = layout.row_starts[state["stripe"]]
    n = stop_row - y0
    if y0 < layout.height:
      keep = min(stop_row, layout.height) - y0
      rows = acc[:keep, : layout.width] / (
        layout.norm_y[y0 : y0 + keep, None, None] * layout.norm_x[None, : layout.width, None]
      )
      write_rows(y0, rows)
    acc[: layout.tile_height - n] = acc[n:].copy()
    acc[layout.tile_height - n :] = 0.0

  def consume(batch_coords, result):
    out = np.asarray(result)
    for (i, j), tile_out in zip(batch_coords, out):
      while i > state["stripe"]:
        finish_rows(layout.row_starts[state["stripe"] + 1])
        state["stripe"] += 1
      x = layout.col_starts[j]
      weight = layout.row_weights[i][:, None, None] * layout.col_weights[j][None, :, None]
      acc[:, x : x + layout.tile_width] += tile_out.astype(np.float32) * weight

  pending = collections.deque()
  for start in range(0, len(coords), batch_size):
    batch_coords = coords[start : start + batch_size]
    tiles = np.stack([read(layout.row_starts[i], layout.col_starts[j]) for i, j in batch_coords])
    pending.append((batch_coords, apply_batch(tiles)))
    if len(pending) > 1:
      consume(*pending.popleft())
  while pending:
    consume(*pending.popleft())
  finish_rows(layout.padded_height)
