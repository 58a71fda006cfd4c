"""What a study will do: its config files found and loaded, the study config checked, and each run's resolved
training config.

Config files are named by path (`--study=configs/studies/NAME.py`, `study.config_dir`), as a user types them in the
repository. A relative path that does not exist in the working directory is looked up beside the installed
`configs` package as well, so `pip install .` and a run from any directory find the shipped configs.
"""

import importlib.util
import os

import ml_collections

from bdirnet_jax import blur

CONFIG_ALIASES = {"bdirnet": "default"}
DEFAULT_CONFIG_DIR = "configs"  # where `study.configs` names live, unless `study.config_dir` says otherwise


def run_name(config_name: str, train_blur: str, seed: int) -> str:
  return f"{config_name}-{train_blur}-seed{seed}"


def configs_roots() -> list[str]:
  """The folders that hold the importable `configs` package (the repository when run from it, site-packages once
  installed), found without importing it."""
  spec = importlib.util.find_spec("configs")
  if spec is None or not spec.submodule_search_locations:
    return []
  return [os.path.dirname(location) for location in spec.submodule_search_locations]


def resolve_path(path: str) -> str:
  """`path` itself when it exists (absolute, or relative to the working directory), else the same relative path
  beside the `configs` package when that exists, else `path` unchanged (for the caller's error to name)."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  for root in configs_roots():
    candidate = os.path.join(root, path)
    if os.path.exists(candidate):
      return candidate
  return path


def where_looked(path: str) -> str:
  """Where `resolve_path` looked for `path`, for an error message."""
  if os.path.isabs(path):
    return "an absolute path"
  cwd = os.getcwd()
  roots = "".join(f" and in {r} (beside the configs package)" for r in configs_roots() if os.path.abspath(r) != cwd)
  return f"looked for in the working directory {cwd}{roots}"


def load_training_config(config_name: str, config_dir: str = DEFAULT_CONFIG_DIR) -> ml_collections.ConfigDict:
  """`get_config()` of the file `<config_dir>/<name>.py` (`bdirnet` names `default.py`).

  Loaded by path, so the library does not import the experiment configs as a package; the study names them.
  """
  module = CONFIG_ALIASES.get(config_name, config_name)
  given = os.path.join(config_dir, f"{module}.py")
  path = resolve_path(given)
  if not os.path.isfile(path):
    raise ValueError(
      f"study config {config_name!r}: no training config file {given} (study.config_dir={config_dir!r}, "
      f"{where_looked(given)})"
    )
  spec = importlib.util.spec_from_file_location(f"_bdirnet_study_config_{module}", path)
  loaded = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(loaded)
  return loaded.get_config()


def _apply_overrides(config: ml_collections.ConfigDict, overrides, prefix: str = "") -> None:
  for key, value in overrides.items():
    if key not in config:
      raise ValueError(f"study override {prefix}{key}: the training config has no such field")
    if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(config[key], ml_collections.ConfigDict):
      _apply_overrides(config[key], value, f"{prefix}{key}.")
    else:
      config[key] = value


def training_config(
  study: ml_collections.ConfigDict, config_name: str, train_blur: str, seed: int, data_dir: str
) -> ml_collections.ConfigDict:
  """The resolved training config of one run."""
  config = load_training_config(config_name, study.get("config_dir", DEFAULT_CONFIG_DIR))
  _apply_overrides(config, study.get("overrides", {}))
  config.seed = int(seed)
  config.num_train_steps = int(study.num_train_steps)
  config.dataset.on_the_fly_blur = True
  config.dataset.blur_family = train_blur
  config.dataset.data_dir = data_dir
  # The study scores every run on its own fixed test sets; the config's periodic/final evaluation would only cost
  # time (and build its datasets outside the study folder).
  config.eval_datasets = []
  return config


def synthetic_test_params(study: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> dict:
  """kernel_size, noise_sigma and trajectory_exposures of the study's synthetic test sets (`testsets.synthetic_sets`
  keywords): `study.test`'s value where set, else the run config's (`config`, a resolved one)."""
  test_cfg = study.test
  exposures = test_cfg.get("trajectory_exposures")
  exposures = config.dataset.get("trajectory_exposures") if exposures is None else exposures
  return dict(
    kernel_size=int(test_cfg.get("kernel_size") or config.dataset.kernel_size),
    noise_sigma=float(config.dataset.noise_sigma if test_cfg.get("noise_sigma") is None else test_cfg.noise_sigma),
    trajectory_exposures=(
      None if exposures is None else blur.check_exposures(exposures, "study.test.trajectory_exposures")
    ),
  )


def validate_study(study: ml_collections.ConfigDict) -> None:
  for field in ("configs", "seeds", "train_blurs", "test_blurs", "num_train_steps"):
    if not study.get(field):
      raise ValueError(f"study.{field} is empty or missing")
  blur.check_families(study.train_blurs, "study.train_blurs")
  blur.check_families(study.test_blurs, "study.test_blurs", allow_mixed=False)
  for field in ("configs", "seeds", "train_blurs", "test_blurs"):
    if len(set(study[field])) != len(study[field]):
      raise ValueError(f"study.{field} has duplicates: {list(study[field])}")


def runs(study: ml_collections.ConfigDict) -> list[tuple[str, str, int]]:
  """(config, train blur, seed) of every run, seed-major: a study stopped part-way has every (config, train blur)
  cell of its first seeds, so an interim report already compares configs on equal terms."""
  return [(c, tb, int(s)) for s in study.seeds for tb in study.train_blurs for c in study.configs]
