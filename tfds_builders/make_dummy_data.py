"""Regenerates the tiny `dummy_data/` trees of every builder in tfds_builders/.

Usage (from the repository root):
    python tfds_builders/make_dummy_data.py          # rewrite all dummy_data/ folders
    python tfds_builders/make_dummy_data.py --check  # exit 1 if files would change

Each tree replicates the layout of the official archive (see each
builder's MANUAL_DOWNLOAD_INSTRUCTIONS)
with a handful of 32x48 (HxW) PNGs.  Images are smooth deterministic patterns (they
compress to well under 1 KiB); the "blurry" image is a box blur of the "sharp" one.
Only numpy and Pillow are used; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import shutil
import sys

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
H, W = 32, 48


def _pattern(seed: int, h: int = H, w: int = W) -> np.ndarray:
  """Smooth colour pattern, uint8 HxWx3, deterministic in `seed`."""
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  r = 127.5 + 110 * np.sin(x / (5.0 + seed % 7) + seed)
  g = 127.5 + 110 * np.cos(y / (4.0 + seed % 5) - seed * 0.7)
  b = ((x + y) * (3 + seed % 4) + 17 * seed) % 256
  img = np.stack([r, g, b], axis=-1)
  # A sharp-edged square, so blur is visible.
  s = 6 + seed % 5
  img[s : s + 10, s + 8 : s + 20] = (250, 250, 250)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray, k: int = 5) -> np.ndarray:
  pad = k // 2
  p = np.pad(img.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
  out = np.zeros(img.shape, np.float64)
  for dy in range(k):
    for dx in range(k):
      out += p[dy : dy + img.shape[0], dx : dx + img.shape[1]]
  return np.rint(out / (k * k)).astype(np.uint8)


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr, mode=mode).save(buf, format="PNG", optimize=True)
  return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format="JPEG", quality=75)
  return buf.getvalue()


class _Tree:
  """Collects {relative path: bytes} for one dummy_data folder."""

  def __init__(self, root: pathlib.Path):
    self.root = root
    self.files: dict[str, bytes] = {}

  def png(self, rel: str, arr: np.ndarray, mode: str | None = None):
    self.files[rel] = _png_bytes(arr, mode)

  def pair(self, blurry_rel: str, sharp_rel: str, seed: int, h: int = H, w: int = W):
    sharp = _pattern(seed, h, w)
    self.png(sharp_rel, sharp)
    self.png(blurry_rel, _blur(sharp))

  def text(self, rel: str, content: str):
    self.files[rel] = content.encode("utf-8")

  def raw(self, rel: str, data: bytes):
    self.files[rel] = data


def gopro() -> list[_Tree]:
  t = _Tree(HERE / "gopro" / "dummy_data")
  seed = 0
  # Frame numbers do not start at 1 (as in the real archive).
  for split, seqs in {
    "train": {"GOPR0372_07_00": (47, 48), "GOPR0374_11_00": (101,)},
    "test": {"GOPR0384_11_00": (1, 2)},
  }.items():
    for seq, frames in seqs.items():
      for f in frames:
        seed += 1
        name = f"{f:06d}.png"
        sharp = _pattern(seed)
        base = f"GOPRO_Large/{split}/{seq}"
        t.png(f"{base}/sharp/{name}", sharp)
        t.png(f"{base}/blur/{name}", _blur(sharp, 5))
        t.png(f"{base}/blur_gamma/{name}", _blur(sharp, 3))
  # Repackaged copy (MPRNet/Restormer style): train/{input,target}, test/GoPro/{input,target}.
  r = _Tree(HERE / "gopro" / "dummy_data_repackaged")
  r.pair("train/input/GOPR0372_07_00-000047.png", "train/target/GOPR0372_07_00-000047.png", 11)
  r.pair("train/input/GOPR0372_07_00-000048.png", "train/target/GOPR0372_07_00-000048.png", 12)
  r.pair("test/GoPro/input/GOPR0384_11_00-000001.png", "test/GoPro/target/GOPR0384_11_00-000001.png", 13)
  return [t, r]


def hide() -> list[_Tree]:
  t = _Tree(HERE / "hide" / "dummy_data")
  b = "HIDE_dataset"
  # (blurry relative path, GT name) -- GT names with and without `.MP4`.
  items = [
    ("train/1fromGOPR0950.png", "1fromGOPR0950.png"),
    ("train/2fromGOPR0950.png", "2fromGOPR0950.png"),
    ("train/3fromGOPR1096.MP4.png", "3fromGOPR1096.png"),  # GT drops .MP4
    ("test/test-close-ups/10fromGOPR0951.png", "10fromGOPR0951.png"),
    ("test/test-close-ups/11fromGOPR1097.MP4.png", "11fromGOPR1097.MP4.png"),  # GT keeps
    ("test/test-long-shot/20fromGOPR0960.MP4.png", "20fromGOPR0960.png"),
  ]
  for i, (blur_rel, gt_name) in enumerate(items):
    t.pair(f"{b}/{blur_rel}", f"{b}/GT/{gt_name}", 30 + i)
  t.text(f"{b}/train.txt", "\n".join(r.split("/")[-1] for r, _ in items[:3]) + "\n")
  t.text(f"{b}/test.txt", "\n".join(r.split("/", 1)[1] for r, _ in items[3:]) + "\n")
  return [t]


def _realblur_list(lines: list[tuple[str, str]]) -> str:
  # `<gt relpath> <blur relpath> ` with a trailing space; last line without newline.
  return "\n".join(f"{gt} {blur} " for gt, blur in lines)


def realblur() -> list[_Tree]:
  t = _Tree(HERE / "realblur" / "dummy_data")
  dirs = {
    "J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",
    "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref",
  }
  # scene -> K indices (with gaps); scene002 has another size (sizes vary).
  scenes = {"train": {"scene001": (1, 3), "scene003": (2,)}, "test": {"scene002": (2, 5)}}
  seed = 40
  for cfg, d in dirs.items():
    for split, sc in scenes.items():
      lines = []
      for scene, ks in sc.items():
        h, w = (36, 40) if scene == "scene002" else (H, W)
        for k in ks:
          seed += 1
          gt = f"{d}/{scene}/gt/gt_{k}.png"
          blur = f"{d}/{scene}/blur/blur_{k}.png"
          t.pair(blur, gt, seed, h, w)
          lines.append((gt, blur))
      t.text(f"RealBlur_{cfg}_{split}_list.txt", _realblur_list(lines))
  # Tele test list: only for J here (R has none -> no test_tele split for config r).
  tele_dir = "RealBlur-J_Tele"  # Whatever the list says; the builder follows the list.
  lines = []
  for k in (1,):
    seed += 1
    gt, blur = f"{tele_dir}/scene201/gt/gt_{k}.png", f"{tele_dir}/scene201/blur/blur_{k}.png"
    t.pair(blur, gt, seed)
    lines.append((gt, blur))
  t.text("RealBlur_J_Tele_test_list.txt", _realblur_list(lines))
  return [t]


def kohler() -> list[_Tree]:
  t = _Tree(HERE / "kohler" / "dummy_data")
  # 3 of the 48 shots; sharp frame counts 5, 4 and 3 (real: ~199).
  shots = {(1, 1): 5, (1, 2): 4, (2, 1): 3}
  for (p, k), nframes in shots.items():
    base = 60 + 10 * p + k
    for f in range(1, nframes + 1):
      t.png(f"Image{p}/Kernel{k}/GroundTruth{p}_{k}_{f}.png", _pattern(base + f))
    # Blurry shot = blur of the middle frame (roughly, like a real shake).
    t.png(f"BlurryImages/Blurry{p}_{k}.png", _blur(_pattern(base + (nframes + 1) // 2)))
  return [t]


def lai() -> list[_Tree]:
  t = _Tree(HERE / "lai" / "dummy_data")
  gts = ["manmade_01", "natural_01"]
  uni = ["manmade_01_kernel_01", "manmade_01_kernel_02", "natural_01_kernel_01"]
  nonuni = ["manmade_01_gyro_01", "natural_01_gyro_02"]
  real = ["boat", "street_02"]
  t.text("ground_truth.txt", "\n".join(gts) + "\n")
  t.text("synthetic_uniform.txt", "\n".join(uni) + "\n")
  t.text("synthetic_nonuniform.txt", "\n".join(nonuni) + "\n")
  t.text("real.txt", "\n".join(real) + "\n")
  for i, g in enumerate(gts):
    t.png(f"synthetic_dataset/ground_truth/{g}.png", _pattern(80 + i))
  for j, n in enumerate(uni):
    g = n.rsplit("_kernel_", 1)[0]
    t.png(f"synthetic_dataset/uniform/{n}.png", _blur(_pattern(80 + gts.index(g)), 3 + 2 * (j % 2)))
  for j, n in enumerate(nonuni):
    g = n.rsplit("_gyro_", 1)[0]
    t.png(f"synthetic_dataset/nonuniform/{n}.png", _blur(_pattern(80 + gts.index(g)), 5))
  # Real blurred JPEGs; the second is grayscale (converted to RGB by the builder).
  t.raw(f"real_dataset/{real[0]}.jpg", _jpeg_bytes(_blur(_pattern(90))))
  t.raw(f"real_dataset/{real[1]}.jpg", _jpeg_bytes(_blur(_pattern(91))[..., 1]))
  return [t]


def synthetic_blur() -> list[_Tree]:
  # 64x96: a little larger than the others, so that blur kernels fit.
  t = _Tree(HERE / "synthetic_blur" / "dummy_data")
  h, w = 64, 96
  t.png("photos/alpine_lake.png", _pattern(100, h, w))
  t.png("photos/city/street.png", _pattern(101, h, w))
  t.png("photos/city/tower.png", _pattern(102, h, w))
  # Grayscale, RGBA and 16-bit sources: converted to 8-bit RGB by the builder.
  t.png("photos/gray_portrait.png", _pattern(103, h, w)[..., 0])
  rgba = np.concatenate([_pattern(104, h, w), np.full((h, w, 1), 200, np.uint8)], axis=-1)
  t.png("photos/rgba_leaves.png", rgba, mode="RGBA")
  t.png("photos/deep_16bit.png", _pattern(105, h, w)[..., 2].astype(np.uint16) * 257)
  t.raw("photos/harbour.jpg", _jpeg_bytes(_pattern(106, h, w)))
  t.text("photos/README.txt", "Not an image: skipped (extension filter).\n")
  return [t]


ALL = {
  "gopro": gopro,
  "hide": hide,
  "realblur": realblur,
  "kohler": kohler,
  "lai": lai,
  "synthetic_blur": synthetic_blur,
}


def trees() -> list[_Tree]:
  return [t for fn in ALL.values() for t in fn()]


def _existing(root: pathlib.Path) -> dict[str, bytes]:
  if not root.exists():
    return {}
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true", help="only check, write nothing")
  args = parser.parse_args(argv)
  stale = []
  for tree in trees():
    if _existing(tree.root) != tree.files:
      stale.append(tree.root)
      if not args.check:
        if tree.root.exists():
          shutil.rmtree(tree.root)
        for rel, data in tree.files.items():
          path = tree.root / rel
          path.parent.mkdir(parents=True, exist_ok=True)
          path.write_bytes(data)
  total = sum(len(d) for t in trees() for d in t.files.values())
  for root in stale:
    print(("stale: " if args.check else "wrote: ") + str(root.relative_to(HERE.parent)))
  print(f"{sum(len(t.files) for t in trees())} files, {total / 1024:.1f} KiB in total")
  return 1 if (args.check and stale) else 0


if __name__ == "__main__":
  sys.exit(main())
