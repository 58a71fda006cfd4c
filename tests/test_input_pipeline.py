import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P

from bdirnet_jax import input_pipeline as ip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class ListSource:
  """Minimal random-access source (what grain needs from tfds.data_source)."""

  def __init__(self, records):
    self._records = records

  def __len__(self):
    return len(self._records)

  def __getitem__(self, i):
    return self._records[i]


def make_source(n=12, shape=(40, 48), same=False, sharp_only=False, seed=0, ids_as_bytes=True):
  rng = np.random.default_rng(seed)
  recs = []
  for i in range(n):
    sharp = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    blurry = sharp.copy() if same else rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    iid = f"img{i:03d}"
    rec = {"sharp": sharp, "image_id": iid.encode() if ids_as_bytes else iid}
    if not sharp_only:
      rec["blurry"] = blurry
    recs.append(rec)
  return ListSource(recs)


def constant_source(n):
  """Example i is filled with the value i, so any crop/augmentation still identifies it."""
  return ListSource(
    [
      {"blurry": np.full((20, 20, 3), i, np.uint8), "sharp": np.full((20, 20, 3), i, np.uint8), "image_id": f"c{i}"}
      for i in range(n)
    ]
  )


def make_config(**ds_overrides):
  ds = dict(
    name="synthetic_blur",
    config=None,
    split="train",
    data_dir=None,
    crop_size=16,
    small_image_policy="pad",
    augment=True,
    on_the_fly_blur=False,
    blur_family="mixed",
    kernel_size=9,
    num_workers=0,
    prefetch=2,
  )
  ds.update(ds_overrides)
  return ml_collections.ConfigDict(dict(seed=0, batch_size=4, dataset=ds))


def take(it, n):
  return [next(it) for _ in range(n)]


def batches_equal(a, b):
  return len(a) == len(b) and all(
    x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
  )


def train_iter(cfg, src, pi=0, pc=1):
  return ip.create_train_iterator(cfg, src, process_index=pi, process_count=pc)


# ---------------------------------------------------------------------------------- train


def test_batch_structure_and_dtypes():
  cfg = make_config()
  b = next(train_iter(cfg, make_source()))
  assert set(b) == {"blurry", "sharp"}
  for k in b:
    assert b[k].shape == (4, 16, 16, 3) and b[k].dtype == np.uint8


def test_same_seed_same_batches_other_seed_different():
  src = make_source()
  a = take(train_iter(make_config(), src), 5)
  b = take(train_iter(make_config(), src), 5)
  assert batches_equal(a, b)
  cfg = make_config()
  cfg.seed = 1
  c = take(train_iter(cfg, src), 5)
  assert not batches_equal(a, c)


def test_each_epoch_is_a_new_permutation():
  n = 8
  cfg = make_config(crop_size=8, augment=False)
  cfg.batch_size = 4
  values = np.concatenate([b["sharp"][:, 0, 0, 0] for b in take(train_iter(cfg, constant_source(n)), 6)])
  epochs = values.reshape(3, n)
  for e in epochs:
    assert sorted(e) == list(range(n))  # every example once per epoch
  assert not (np.array_equal(epochs[0], epochs[1]) and np.array_equal(epochs[1], epochs[2]))
  assert not np.array_equal(epochs[0], np.arange(n))  # shuffled


def test_restore_state_mid_epoch():
  src = make_source(n=10)
  cfg = make_config()
  it = train_iter(cfg, src)
  take(it, 3)  # 12 examples: inside the 2nd epoch
  state = it.get_state()
  json.dumps(state)  # must be checkpointable as JSON
  expected = take(it, 4)
  fresh = train_iter(cfg, src)
  fresh.set_state(state)
  assert batches_equal(take(fresh, 4), expected)


def test_crops_and_augmentation_keep_pairs_aligned():
  src = ListSource(
    [
      {"blurry": r, "sharp": r.copy(), "image_id": f"a{i}"}
      for i, r in enumerate(np.random.default_rng(0).integers(0, 256, (6, 37, 53, 3), dtype=np.uint8))
    ]
  )
  cfg = make_config(crop_size=24, augment=True)
  for b in take(train_iter(cfg, src), 6):
    np.testing.assert_array_equal(b["blurry"], b["sharp"])
  # And the crops really vary (random offsets / flips / rotations), so the check above has teeth.
  firsts = {next(train_iter(make_config(crop_size=24), src))["sharp"][0].tobytes()}
  cfg2 = make_config(crop_size=24)
  cfg2.seed = 3
  firsts.add(next(train_iter(cfg2, src))["sharp"][0].tobytes())
  assert len(firsts) == 2


def test_crop_is_a_window_of_the_image():
  img = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
  src = ListSource([{"blurry": img, "sharp": img, "image_id": "x"}])
  cfg = make_config(crop_size=10, augment=False)
  cfg.batch_size = 2
  for b in take(train_iter(cfg, src), 3):
    for crop in b["sharp"]:
      hits = [(y, x) for y in range(21) for x in range(21) if np.array_equal(img[y : y + 10, x : x + 10], crop)]
      assert len(hits) == 1


def test_two_processes_see_disjoint_examples():
  n = 12
  cfg = make_config(crop_size=8)
  cfg.batch_size = 4  # 2 per process
  seen = []
  for pi in range(2):
    it = train_iter(cfg, constant_source(n), pi=pi, pc=2)
    batches = take(it, 9)  # 18 examples = 3 epochs of this process's 6
    assert all(b["sharp"].shape[0] == 2 for b in batches)
    seen.append({int(v) for b in batches for v in b["sharp"][:, 0, 0, 0]})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(n))


def test_batch_size_must_divide_process_count():
  cfg = make_config()
  cfg.batch_size = 6
  with pytest.raises(ValueError, match="divisible"):
    train_iter(cfg, make_source(), pi=0, pc=4)


def test_small_image_policy_pad_and_reject():
  src = ListSource(
    [{"blurry": np.full((10, 13, 3), 7, np.uint8), "sharp": np.full((10, 13, 3), 9, np.uint8), "image_id": b"tiny_one"}]
  )
  b = next(train_iter(make_config(crop_size=16, small_image_policy="pad"), src))
  assert b["blurry"].shape == (4, 16, 16, 3)
  assert np.all(b["blurry"] == 7) and np.all(b["sharp"] == 9)
  with pytest.raises(ValueError, match=r"tiny_one.*10x13.*16"):
    next(train_iter(make_config(crop_size=16, small_image_policy="reject"), src))


def test_mismatched_pair_sizes_are_reported():
  src = ListSource(
    [{"blurry": np.zeros((20, 20, 3), np.uint8), "sharp": np.zeros((20, 21, 3), np.uint8), "image_id": "bad_pair"}]
  )
  with pytest.raises(ValueError, match="bad_pair"):
    next(train_iter(make_config(), src))


def test_on_the_fly_blur_yields_kernels():
  src = make_source(sharp_only=True)
  cfg = make_config(on_the_fly_blur=True, kernel_size=9, blur_family="mixed")
  batches = take(train_iter(cfg, src), 3)
  for b in batches:
    assert set(b) == {"sharp", "kernel"}
    assert b["sharp"].shape == (4, 16, 16, 3) and b["sharp"].dtype == np.uint8
    assert b["kernel"].shape == (4, 9, 9) and b["kernel"].dtype == np.float32
    np.testing.assert_allclose(b["kernel"].sum(axis=(1, 2)), 1.0, atol=1e-5)
  assert batches_equal(batches, take(train_iter(cfg, src), 3))  # kernels are seeded too
  kernels = np.concatenate([b["kernel"] for b in batches])
  assert len({k.tobytes() for k in kernels}) == len(kernels)


def test_trajectory_exposures_reach_the_training_kernels():
  src = make_source(sharp_only=True)
  cfg = make_config(on_the_fly_blur=True, kernel_size=9, blur_family="trajectory")
  default = take(train_iter(cfg, src), 2)
  cfg.dataset.trajectory_exposures = (1 / 1000,)
  points = take(train_iter(cfg, src), 2)
  for b in points:  # every kernel a (sub-pixel) point: all its mass within the 2x2 around the centre
    assert (b["kernel"][:, 3:6, 3:6].sum(axis=(1, 2)) > 0.99).all()
  assert not batches_equal(default, points)
  np.testing.assert_array_equal(default[0]["sharp"], points[0]["sharp"])  # crops unchanged, kernels changed
  cfg.dataset.trajectory_exposures = (0.0, 1.0)
  with pytest.raises(ValueError, match="config.dataset.trajectory_exposures"):
    train_iter(cfg, src)


def test_on_the_fly_config_errors():
  with pytest.raises(ValueError, match="nope"):
    train_iter(make_config(on_the_fly_blur=True, blur_family="nope"), make_source())
  with pytest.raises(ValueError, match="on_the_fly_blur"):
    next(train_iter(make_config(on_the_fly_blur=False), make_source(sharp_only=True)))


def _windows_resized(img, side, crop):
  """Every side x side window of img, resized to crop x crop as the pipeline does (PIL bicubic)."""
  from PIL import Image

  h, w = img.shape[:2]
  return [
    np.asarray(Image.fromarray(img[y : y + side, x : x + side]).resize((crop, crop), Image.BICUBIC))
    for y in range(h - side + 1)
    for x in range(w - side + 1)
  ]


@pytest.mark.parametrize("scale,side", [(2.0, 8), (0.5, 32)])
def test_scale_range_crops_a_rescaled_window(scale, side):
  img = np.random.default_rng(1).integers(0, 256, (40, 44, 3), dtype=np.uint8)
  src = ListSource([{"sharp": img, "image_id": "x"}])
  cfg = make_config(crop_size=16, augment=False, on_the_fly_blur=True, kernel_size=5, scale_range=(scale, scale))
  candidates = _windows_resized(img, side, 16)
  for b in take(train_iter(cfg, src), 2):
    assert set(b) == {"sharp", "kernel"} and b["sharp"].shape == (4, 16, 16, 3) and b["sharp"].dtype == np.uint8
    for crop in b["sharp"]:
      assert sum(np.array_equal(c, crop) for c in candidates) >= 1
  # On a photo-like (smooth) image, magnified crops are smoother than native ones and shrunk ones rougher: what
  # the augmentation is for. A 12 px period stays below Nyquist when shrunk by 2.
  yy, xx = np.mgrid[:40, :44]
  wave = np.repeat((127.5 + 100 * np.sin(2 * np.pi * (xx + yy) / 12))[..., None], 3, -1).astype(np.uint8)
  src = ListSource([{"sharp": wave, "image_id": "w"}])
  native = take(train_iter(make_config(crop_size=16, augment=False, on_the_fly_blur=True, kernel_size=5), src), 2)
  rough = lambda bs: np.mean([np.abs(np.diff(b["sharp"].astype(float), axis=1)).mean() for b in bs])  # noqa: E731
  assert (rough(take(train_iter(cfg, src), 2)) < rough(native)) == (scale > 1)


def test_scale_range_draws_log_uniform_factors_and_clamps_to_the_photo():
  img = np.random.default_rng(2).integers(0, 256, (40, 44, 3), dtype=np.uint8)
  rng = np.random.default_rng(0)
  # A factor whose window would exceed the photo takes the whole short side (40 px), resized to the crop.
  crop = ip._rescaled_crop(img, 16, 0.1, rng)
  assert any(np.array_equal(c, crop) for c in _windows_resized(img, 40, 16))
  same = ip._rescaled_crop(img, 16, 1.0, rng)  # scale 1: a plain window, not resampled
  assert any(np.array_equal(img[y : y + 16, x : x + 16], same) for y in range(25) for x in range(29))
  src = ListSource([{"sharp": img, "image_id": "x"}])
  cfg = make_config(crop_size=16, on_the_fly_blur=True, kernel_size=5, scale_range=(0.5, 2.0))
  a, b = take(train_iter(cfg, src), 2), take(train_iter(cfg, src), 2)
  assert batches_equal(a, b)  # seeded like every other draw
  cfg.seed = 1
  assert not batches_equal(a, take(train_iter(cfg, src), 2))


def test_scale_range_errors_name_the_key():
  src = make_source(sharp_only=True)
  for bad in ((2.0, 1.0), (0.0, 1.0), ("a", 1.0), (1.0,), (None, 2.0)):
    with pytest.raises(ValueError, match="config.dataset.scale_range"):
      train_iter(make_config(on_the_fly_blur=True, scale_range=bad), src)
  with pytest.raises(ValueError, match="config.dataset.scale_range needs on_the_fly_blur"):
    train_iter(make_config(scale_range=(0.5, 2.0)), make_source())
  # () and (None,) (what --config.dataset.scale_range=None parses to) mean off, as None does.
  ref = take(train_iter(make_config(on_the_fly_blur=True), src), 2)
  for off in ((), (None,)):
    assert batches_equal(ref, take(train_iter(make_config(on_the_fly_blur=True, scale_range=off), src), 2))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_restore():
  # Spawns 2 worker processes (a few seconds): the contract is that results do not depend on
  # the worker count, and that state restores across worker-backed iterators.
  src = make_source(n=10)
  ref = take(train_iter(make_config(on_the_fly_blur=True), src), 6)
  cfg = make_config(on_the_fly_blur=True, num_workers=2)
  it = train_iter(cfg, src)
  try:
    got = take(it, 3)
    state = it.get_state()
    got += take(it, 3)
  finally:
    it.close()
  assert batches_equal(ref, got)
  it2 = train_iter(cfg, src)
  try:
    it2.set_state(json.loads(json.dumps(state)))
    assert batches_equal(take(it2, 3), ref[3:])
  finally:
    it2.close()


# ---------------------------------------------------------------------------------- eval


def test_eval_iterator_order_full_size_and_sharding():
  recs = [{"blurry": np.full((10 + i, 12, 3), i, np.uint8), "image_id": f"e{i}".encode()} for i in range(5)]
  recs[2]["sharp"] = np.zeros((12, 12, 3), np.uint8)
  src = ListSource(recs)
  cfg = make_config()
  out = list(ip.create_eval_iterator(cfg.dataset, src))
  assert [o["image_id"] for o in out] == [f"e{i}" for i in range(5)]
  assert all(isinstance(o["image_id"], str) for o in out)
  assert [o["blurry"].shape for o in out] == [(10 + i, 12, 3) for i in range(5)]
  assert ["sharp" in o for o in out] == [False, False, True, False, False]
  shares = [
    [o["image_id"] for o in ip.create_eval_iterator(cfg.dataset, src, process_index=p, process_count=2)]
    for p in range(2)
  ]
  assert shares == [["e0", "e2", "e4"], ["e1", "e3"]]
  variants = ListSource(
    [{"blurry": np.zeros((4, 4, 3), np.uint8), "image_id": b"p.png", "variant": v} for v in range(2)]
  )
  assert [o["image_id"] for o in ip.create_eval_iterator(cfg.dataset, variants)] == ["p.png#0", "p.png#1"]


# ---------------------------------------------------------------------------------- device


def _mesh():
  return Mesh(np.array(jax.devices()), ("data",))


def test_make_global_batch_on_fake_devices():
  assert jax.device_count() == 4
  sharding = NamedSharding(_mesh(), P("data", None, None, None))
  cfg = make_config(on_the_fly_blur=True)
  cfg.batch_size = 8
  local = next(train_iter(cfg, make_source(sharp_only=True)))
  g = ip.make_global_batch(local, sharding)
  assert set(g) == {"sharp", "kernel"}
  for k, v in g.items():
    assert isinstance(v, jax.Array) and v.shape == local[k].shape and v.dtype == local[k].dtype
    assert len(v.addressable_shards) == 4
    assert v.addressable_shards[0].data.shape[0] == 2
    np.testing.assert_array_equal(np.asarray(v), local[k])


def test_prefetch_to_device_preserves_order_and_state():
  sharding = NamedSharding(_mesh(), P("data"))
  src = make_source(n=10)
  cfg = make_config()
  ref = take(train_iter(cfg, src), 6)
  pf = ip.prefetch_to_device(train_iter(cfg, src), 2, sharding)
  first = take(pf, 3)
  for a, b in zip(first, ref):
    for k in a:
      assert a[k].sharding.is_equivalent_to(sharding, a[k].ndim)
      np.testing.assert_array_equal(np.asarray(a[k]), b[k])
  state = pf.get_state()  # state of the next batch *returned*, not of the grain iterator
  fresh = train_iter(cfg, src)
  fresh.set_state(state)
  assert batches_equal(take(fresh, 3), ref[3:])
  pf.set_state(state)
  assert batches_equal([{k: np.asarray(v) for k, v in b.items()} for b in take(pf, 3)], ref[3:])
  # Plain (stateless) iterators are accepted too.
  plain = ip.prefetch_to_device(iter(ref[:2]), 3, sharding)
  assert len(list(plain)) == 2


@pytest.mark.parametrize("wrap", [False, True], ids=["grain_iterator", "device_prefetch"])
def test_orbax_checkpoint_manager_round_trip(tmp_path, wrap):
  import grain
  import orbax.checkpoint as ocp

  src = make_source(n=10)
  cfg = make_config()
  ref = take(train_iter(cfg, src), 6)
  sharding = NamedSharding(_mesh(), P("data"))

  def build():
    it = train_iter(cfg, src)
    return ip.prefetch_to_device(it, 2, sharding) if wrap else it

  def host(b):
    return {k: np.asarray(v) for k, v in b.items()}

  it = build()
  take(it, 2)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  restored = build()
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
  assert batches_equal([host(b) for b in take(restored, 3)], ref[2:5])


# ---------------------------------------------------------------------------------- TFDS


def test_open_source_error_names_dataset_and_how_to_build(tmp_path):
  ds = make_config(name="surely_not_a_dataset", config="cfg1", data_dir=str(tmp_path)).dataset
  with pytest.raises(ip.SourceNotAvailableError) as e:
    ip.open_source(ds)
  msg = str(e.value)
  for part in (
    "surely_not_a_dataset/cfg1",
    "'train'",
    str(tmp_path),
    "download_and_prepare",
    "array_record",
    "python -m tfds_builders.cli build surely_not_a_dataset --config=cfg1",
  ):
    assert part in msg


_BUILD_TINY = textwrap.dedent(
  """
  import sys, numpy as np, tensorflow_datasets as tfds
  class TinyPairs(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    def _info(self):
      img = tfds.features.Image(shape=(None, None, 3))
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"blurry": img, "sharp": img, "image_id": tfds.features.Text()}))
    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}
    def _generate_examples(self):
      for i in range(6):
        im = np.full((20 + i, 24, 3), 10 * i, np.uint8)
        yield i, {"blurry": im, "sharp": im, "image_id": f"t{i}"}
  TinyPairs(data_dir=sys.argv[1], file_format="array_record").download_and_prepare()
  """
)

_READ_NO_TF = textwrap.dedent(
  """
  import importlib.util, site, sys
  site.addsitedir(sys.argv[2])
  assert importlib.util.find_spec("tensorflow") is None, "tensorflow should be hidden"
  sys.path.insert(0, sys.argv[3])
  import ml_collections
  from bdirnet_jax import input_pipeline as ip
  ds = ml_collections.ConfigDict(dict(name="tiny_pairs", config=None, split="train", data_dir=sys.argv[1],
    crop_size=16, small_image_policy="pad", augment=True, on_the_fly_blur=False, blur_family="mixed",
    kernel_size=9, num_workers=0, prefetch=2))
  cfg = ml_collections.ConfigDict(dict(seed=0, batch_size=2, dataset=ds))
  b = next(ip.create_train_iterator(cfg, process_index=0, process_count=1))
  assert b["blurry"].shape == (2, 16, 16, 3) and (b["blurry"] == b["sharp"]).all()
  ev = list(ip.create_eval_iterator(ds))
  assert sorted(e["image_id"] for e in ev) == [f"t{i}" for i in range(6)], ev
  assert all(e["blurry"].shape == (20 + int(e["image_id"][1:]), 24, 3) for e in ev)
  assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None
  print("NO_TF_OK")
  """
)


@pytest.mark.slow
def test_reads_prepared_tfds_without_tensorflow(tmp_path):
  """The GPU machine has no TensorFlow: build a tiny ArrayRecord dataset (TF allowed), then read it
  through open_source/iterators in an interpreter whose site-packages hide tensorflow."""
  site_packages = Path(ml_collections.__file__).resolve().parents[1]
  if not (site_packages / "tensorflow").exists():
    pytest.skip("tensorflow not installed here: cannot build the tiny dataset")
  data_dir = tmp_path / "tfds"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  subprocess.run(
    [sys.executable, "-c", _BUILD_TINY, str(data_dir)], check=True, env=env, capture_output=True, timeout=240
  )
  farm = tmp_path / "site_no_tf"
  farm.mkdir()
  for entry in site_packages.iterdir():
    if (
      entry.name == "tensorflow"
      or entry.name.startswith("tensorflow_cpu")
      or (entry.name.startswith("tensorflow-") and "datasets" not in entry.name)
    ):
      continue
    (farm / entry.name).symlink_to(entry)
  r = subprocess.run(
    [sys.executable, "-S", "-c", _READ_NO_TF, str(data_dir), str(farm), str(REPO)],
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert r.returncode == 0 and "NO_TF_OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.slow
def test_benchmark_script_runs(tmp_path):
  r = subprocess.run(
    [
      sys.executable,
      str(REPO / "benchmarks" / "input_pipeline.py"),
      "--steps",
      "2",
      "--warmup",
      "1",
      "--batch_size",
      "2",
      "--workers",
      "0",
      "--crop",
      "64",
    ],
    capture_output=True,
    text=True,
    timeout=240,
    cwd=REPO,
    env=dict(os.environ, PYTHONPATH=str(REPO)),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
  assert {row["on_the_fly_blur"] for row in rows} == {False, True}
  assert all(row["crops_per_s"] > 0 for row in rows)


class CountingSource(ListSource):
  def __init__(self, records):
    super().__init__(records)
    self.reads = 0

  def __getitem__(self, i):
    self.reads += 1
    return super().__getitem__(i)


@pytest.mark.parametrize("on_the_fly", [False, True])
def test_decoded_cache_reads_each_record_once_and_changes_no_batch(on_the_fly):
  records = make_source(n=6, sharp_only=on_the_fly)._records
  cfg = make_config(on_the_fly_blur=on_the_fly, num_threads=1)
  cfg.dataset.decoded_cache_mb = 0
  plain = CountingSource(records)
  expected = take(train_iter(cfg, plain), 6)  # 24 examples: 4 epochs of 6
  assert plain.reads >= 24
  cfg.dataset.decoded_cache_mb = 64
  cached = CountingSource(records)
  got = take(train_iter(cfg, cached), 6)
  assert batches_equal(got, expected)
  assert cached.reads == 6  # decoded once each, then served from memory
  assert set(got[0]) == ({"sharp", "kernel"} if on_the_fly else {"blurry", "sharp"})


def test_decoded_cache_budget_and_pickling():
  import pickle  # pylint: disable=g-import-not-at-top

  records = make_source(n=4, shape=(32, 32))._records  # 2 x 3 KiB of images each
  src = CountingSource(records)
  cache = ip.DecodedCache(src, ("blurry", "sharp", "image_id"), budget_mb=13 * 1024 / 2**20)  # room for 2
  for _ in range(2):
    for i in range(4):
      rec = cache[i]
      assert np.array_equal(rec["sharp"], records[i]["sharp"]) and not rec["sharp"].flags.writeable
  assert src.reads == 4 + 2  # two records over the budget are read again
  clone = pickle.loads(pickle.dumps(cache))  # what a grain worker process gets: an empty cache of its own
  assert len(clone) == 4 and clone._bytes == 0 and clone[3]["image_id"] == records[3]["image_id"]
