"""Bad configs fail before anything is compiled, with one readable line naming the key."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

import configs
from bdirnet_jax import config_validation
from bdirnet_jax import input_pipeline
from bdirnet_jax import train
from bdirnet_jax.config_validation import ConfigError
from configs import default
from configs import tiny
from tests import fakes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_with(path, value):
  """The tiny config as a plain (not type-safe) ConfigDict, as loaded from config.json, with one value replaced."""
  d = tiny.get_config().to_dict()
  node = d
  *parents, leaf = path.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  return ml_collections.ConfigDict(d)


# (key to set, bad value, what the one-line message must contain)
BAD_VALUES = [
  ("batch_size", "8", "config.batch_size must be an integer"),
  ("batch_size", 8.0, "config.batch_size must be an integer"),
  ("batch_size", True, "config.batch_size must be an integer"),
  ("batch_size", 1, "config.batch_size must be >= 2 for the InfoNCE loss"),
  ("num_train_steps", -5, "config.num_train_steps must be >= 1"),
  ("num_train_steps", 0, "config.num_train_steps must be >= 1"),
  ("checkpoint_every_steps", 0, "config.checkpoint_every_steps"),
  ("log_every_steps", -1, "config.log_every_steps"),
  ("init_from", 3, "config.init_from must be a path or empty, got 3 (int)"),
  ("seed", None, "config.seed must be an integer"),
  ("keep_checkpoints", 0, "config.keep_checkpoints"),
  ("profile_steps", -1, "config.profile_steps"),
  ("async_checkpointing", "yes", "config.async_checkpointing must be True or False"),
  ("compute_dtype", "float33", "config.compute_dtype must be one of"),
  ("compute_dtype", "fp16", "config.compute_dtype"),
  ("nan_policy", "ignore", "config.nan_policy"),
  ("mesh_shape", (-1, -1), "config.mesh_shape"),
  ("mesh_shape", (4,), "config.mesh_shape"),
  ("mesh_shape", (0, 1), "config.mesh_shape"),
  ("model.preset", "huge", "config.model.preset must be one of"),
  ("model.bogus", 1, "config.model.bogus is not a BDIRNet field"),
  ("model.width", -8, "config.model.width"),
  ("model.width", 8.5, "config.model.width must be an integer"),
  ("model.enc_blocks", (1,), "config.model.enc_blocks and config.model.dec_blocks must have the same length"),
  ("model.enc_blocks", (1, -1), "config.model.enc_blocks"),
  ("model.said", "batch", "config.model.said"),
  ("model.embed_pool", "max", "config.model.embed_pool"),
  ("model.sair", "yes", "config.model.sair"),
  ("loss.reconstruction", "l3", "config.loss.reconstruction"),
  ("loss.latent_distance", "kl", "config.loss.latent_distance"),
  ("loss.rec_weight", -1.0, "config.loss.rec_weight"),
  ("loss.fft_weight", "0.1", "config.loss.fft_weight must be a number"),
  ("loss.infonce_temperature", 0.0, "config.loss.infonce_temperature"),
  ("loss.charbonnier_eps", -1e-3, "config.loss.charbonnier_eps"),
  ("optim.learning_rate", 0.0, "config.optim.learning_rate"),
  ("optim.learning_rate", "1e-3", "config.optim.learning_rate must be a number"),
  ("optim.ema_decay", 1.0, "config.optim.ema_decay"),
  ("optim.b2", 1.5, "config.optim.b2"),
  ("optim.warmup_steps", -1, "config.optim.warmup_steps"),
  ("optim.grad_clip_norm", -1.0, "config.optim.grad_clip_norm"),
  ("optim.min_lr_ratio", 2.0, "config.optim.min_lr_ratio"),
  ("dataset.name", "", "config.dataset.name"),
  ("dataset.crop_size", 30, "config.dataset.crop_size must be a positive multiple of the model's downsampling"),
  ("dataset.crop_size", 0, "config.dataset.crop_size"),
  ("dataset.crop_size", "32", "config.dataset.crop_size"),
  ("dataset.small_image_policy", "crop", "config.dataset.small_image_policy"),
  ("dataset.augment", "yes", "config.dataset.augment"),
  ("dataset.noise_sigma", -0.1, "config.dataset.noise_sigma"),
  ("dataset.num_workers", -1, "config.dataset.num_workers"),
  ("dataset.prefetch", 1.5, "config.dataset.prefetch"),
  ("dataset.data_dir", 3, "config.dataset.data_dir"),
]


@pytest.mark.parametrize("key,value,message", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_fails_with_one_line_naming_the_key(key, value, message):
  with pytest.raises(ConfigError) as e:
    config_validation.validate(_tiny_with(key, value))
  assert message in str(e.value)
  assert "\n" not in str(e.value)


def test_blur_family_is_checked_when_blur_runs_on_the_fly():
  config = _tiny_with("dataset.on_the_fly_blur", True)
  config_validation.validate(config)
  config.dataset.blur_family = "motion"
  with pytest.raises(ConfigError, match="config.dataset.blur_family"):
    config_validation.validate(config)


def test_trajectory_exposures_are_checked_and_overridable():
  config = _tiny_with("dataset.on_the_fly_blur", True)
  config.dataset.trajectory_exposures = (0.5, 1.0)
  config_validation.validate(config)
  config_validation.validate(ml_collections.ConfigDict(json.loads(config.to_json_best_effort())))  # a list
  config.dataset.trajectory_exposures = (0.5, 2.0)
  with pytest.raises(ConfigError, match="config.dataset.trajectory_exposures"):
    config_validation.validate(config)


def test_missing_key_is_named():
  d = tiny.get_config().to_dict()
  del d["optim"]["learning_rate"]
  with pytest.raises(ConfigError, match="config.optim.learning_rate is missing"):
    config_validation.validate(ml_collections.ConfigDict(d))


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(configs.__path__) if not m.ispkg])
def test_shipped_configs_and_their_json_round_trip_are_valid(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config_validation.validate(config)
  loaded = ml_collections.ConfigDict(json.loads(config.to_json_best_effort()))  # as resumed from config.json
  config_validation.validate(loaded)
  assert json.loads(loaded.to_json_best_effort()) == json.loads(config.to_json_best_effort())  # nothing lost
  broken = json.loads(config.to_json_best_effort())
  broken["batch_size"] = str(broken["batch_size"])  # and the checks do run on this config: one broken value fails
  with pytest.raises(ConfigError, match="config.batch_size must be an integer"):
    config_validation.validate(ml_collections.ConfigDict(broken))


@pytest.fixture
def no_compilation(monkeypatch):
  """Makes train_and_evaluate fail loudly if it gets as far as running (compiling) the init or the train step."""
  real_create_state = train.create_state

  def create_state(config, mesh, rng):
    model, tx, abstract, shardings, _ = real_create_state(config, mesh, rng)
    return model, tx, abstract, shardings, _fail

  def _fail(*args, **kwargs):
    raise AssertionError("reached compilation")

  monkeypatch.setattr(train, "create_state", create_state)
  # Building the jitted step compiles nothing (the training loop builds it before reading data); calling it does.
  monkeypatch.setattr(train, "jit_train_step", lambda *args, **kwargs: _fail)
  monkeypatch.setattr(train, "_PROGRAMS", type(train._PROGRAMS)())  # no programs reused from an earlier test


@pytest.mark.parametrize(
  "key,value,message",
  [
    ("batch_size", 6, "config.batch_size=6 is not divisible by the 4 devices"),
    ("batch_size", 2, "config.batch_size=2 is not divisible by the 4 devices"),
    ("mesh_shape", (3, 1), "config.mesh_shape (3, 1) does not fit 4 devices"),
    ("mesh_shape", (2, 3), "config.mesh_shape (2, 3) does not fit 4 devices"),
    ("num_train_steps", -1, "config.num_train_steps must be >= 1"),
  ],
)
def test_train_fails_before_compilation(tmp_path, no_compilation, key, value, message):
  assert jax.device_count() == 4
  config = tiny.get_config()
  config[key] = value
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(config, tmp_path / "w", iter([]))
  assert message in str(e.value) and "\n" not in str(e.value)
  assert not (tmp_path / "w" / "checkpoints").exists() or not any((tmp_path / "w" / "checkpoints").iterdir())


def test_crop_larger_than_images_is_rejected_before_compilation(tmp_path, no_compilation):
  config = tiny.get_config()
  config.dataset.crop_size = 64
  config.dataset.small_image_policy = "reject"
  image = np.zeros((40, 50, 3), np.uint8)
  source = [{"blurry": image, "sharp": image, "image_id": f"img{i}".encode()} for i in range(8)]
  iterator = input_pipeline.create_train_iterator(config, source=source)
  with pytest.raises(ValueError, match=r"is 40x50, smaller than crop_size 64 \(small_image_policy='reject'"):
    train.train_and_evaluate(config, tmp_path / "w", iterator)


def _main(*args, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
  )


def test_cli_unknown_config_field_fails_naming_it(tmp_path):
  result = _main("--config=configs/tiny.py", "--config.bogus=1", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "'bogus'" in result.stderr and "--config.bogus" in result.stderr and "Traceback" not in result.stderr
  result = _main("--config=configs/tiny.py", "--config.model.widht=8", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
    "error: --config.model.widht: the config has no field 'widht'; did you mean 'width'?"
  )
  assert not any(tmp_path.iterdir())  # failed while parsing flags: nothing written


def test_cli_wrong_type_and_bad_value_fail_in_one_line(tmp_path):
  result = _main("--config=configs/tiny.py", "--config.batch_size=abc", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "--config.batch_size=abc" in result.stderr
  result = _main("--config=configs/tiny.py", "--config.compute_dtype=float33", f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.compute_dtype must be one of"), result.stderr[-2000:]
  assert "Traceback" not in result.stderr


# (entry field, bad value, what the one-line message must contain)
BAD_EVAL_ENTRIES = [
  (
    "name",
    "synthetic_blurr",
    "config.eval_datasets[0].name='synthetic_blurr' is not a known dataset; expected one of ",
  ),
  ("config", "gausian_k15", "config.eval_datasets[0].config='gausian_k15' is not a config of synthetic_blur"),
  ("split", "test!", "config.eval_datasets[0].split='test!' is not a TFDS split"),
  ("protocol", "gopro_matlb", "config.eval_datasets[0].protocol='gopro_matlb' is not a known protocol"),
]


@pytest.mark.parametrize("key,value,message", BAD_EVAL_ENTRIES)
def test_bad_eval_dataset_fails_naming_the_entry(key, value, message):
  config = default.get_config()
  config.eval_datasets[0][key] = value
  with pytest.raises(ConfigError) as e:
    config_validation.validate(config)
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
  if key == "name":  # the registered names, so the fix is visible in the message
    assert "'synthetic_blur'" in str(e.value) and "'gopro'" in str(e.value)
  if key == "config":
    assert "'gaussian_k15'" in str(e.value)


def test_eval_dataset_split_is_checked_against_a_prepared_dataset(synthetic_blur_data_dir):
  config = default.get_config()
  config.eval_datasets[0].update(data_dir=str(synthetic_blur_data_dir), split="tset")
  with pytest.raises(ConfigError, match=r"split='tset': synthetic_blur/gaussian_k15 has no split 'tset'; it has "):
    config_validation.validate(config)
  config.eval_datasets[0].split = "test[:2]"
  config_validation.validate(config)


def test_eval_datasets_writing_one_file_are_rejected():
  config = default.get_config()
  config.eval_datasets = [config.eval_datasets[0], ml_collections.ConfigDict(config.eval_datasets[0].to_dict())]
  with pytest.raises(
    ConfigError, match=r"eval_datasets\[1\] writes synthetic_blur_test.json like .*eval_datasets\[0\]"
  ):
    config_validation.validate(config)
  config.eval_datasets[1].label = "again"
  config_validation.validate(config)


def test_cli_misspelled_eval_dataset_fails_before_training(tmp_path):
  """The default recipe trains for minutes before its final evaluation; the typo must stop it before that (the
  60 s subprocess timeout fails the test otherwise)."""
  config_file = tmp_path / "typo.py"
  config_file.write_text(
    "from configs import default\n\n\ndef get_config():\n  config = default.get_config()\n"
    "  config.eval_datasets[0].name = 'synthetic_blurr'\n  return config\n"
  )
  workdir = tmp_path / "w"
  result = _main(f"--config={config_file}", f"--workdir={workdir}", timeout=60)
  assert result.returncode == 1, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: config.eval_datasets[0].name='synthetic_blurr' is not a known dataset"), last
  assert "'synthetic_blur'" in last and "Traceback" not in result.stderr
  assert not (workdir / "checkpoints").exists()


def _read_only(monkeypatch, folder):
  """Makes `folder` behave as a read-only directory (tests run as root, for whom chmod does not block writes):
  creating a file or folder inside it raises PermissionError, as the kernel would."""
  import builtins  # pylint: disable=g-import-not-at-top

  inside = lambda path: os.path.abspath(os.fspath(path)).startswith(str(folder) + os.sep)
  denied = lambda path: PermissionError(13, "Permission denied", os.fspath(path))
  real_open, real_mkdir = builtins.open, os.mkdir

  def open_(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and inside(file) and set(mode) & set("wax+"):
      raise denied(file)
    return real_open(file, mode, *args, **kwargs)

  def mkdir(path, *args, **kwargs):
    if inside(path):
      raise denied(path)
    return real_mkdir(path, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", open_)
  monkeypatch.setattr(os, "mkdir", mkdir)  # os.makedirs and pathlib's mkdir go through it


def test_unwritable_workdir_fails_in_one_line_naming_it_before_compilation(tmp_path, no_compilation, monkeypatch):
  workdir = tmp_path / "read_only"
  workdir.mkdir()
  _read_only(monkeypatch, workdir)
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(tiny.get_config(), workdir, fakes.PairIterator(4, 32))
  assert str(e.value).startswith(f"--workdir={workdir} is not a writable directory: ") and "\n" not in str(e.value)
  assert not any(workdir.iterdir())
