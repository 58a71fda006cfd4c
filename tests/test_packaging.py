"""pyproject.toml: `pip install .` ships every package the code imports and a working `bdirnet` command.

Installing is checked by hand (README); here, cheaply: the file parses, names the packages, and its console script
points at a callable.
"""

import importlib
import tomllib
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)


def test_packages_cover_the_code_and_the_configs():
  project = _pyproject()
  assert project["project"]["name"] == "bdirnet-jax"
  include = project["tool"]["setuptools"]["packages"]["find"]["include"]
  found = set(setuptools.find_packages(str(ROOT), include=include))
  assert {
    "bdirnet_jax",
    "bdirnet_jax.models",
    "tfds_builders",
    "tfds_builders.gopro",
    "configs",
    "configs.studies",
  } <= found
  assert not any(p.split(".")[0] in ("tests", "benchmarks", "studies") for p in found)
  # Every folder with an __init__.py under a shipped root is shipped (a new subpackage cannot be forgotten).
  for root in ("bdirnet_jax", "tfds_builders", "configs"):
    for init in (ROOT / root).rglob("__init__.py"):
      assert ".".join(init.parent.relative_to(ROOT).parts) in found, init


def test_dependencies_are_the_requirements_file():
  project = _pyproject()
  assert "dependencies" in project["project"]["dynamic"]
  files = project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
  lines = (ROOT / files[0]).read_text().splitlines()
  assert any(line.startswith("jax==") for line in lines) and not any(line.startswith("-") for line in lines)


def test_console_script_target_is_callable():
  scripts = _pyproject()["project"]["scripts"]
  module, _, attr = scripts["bdirnet"].partition(":")
  assert callable(getattr(importlib.import_module(module), attr))


def test_builder_metadata_files_are_package_data():
  patterns = _pyproject()["tool"]["setuptools"]["package-data"]["tfds_builders"]
  needed = {
    p.relative_to(ROOT / "tfds_builders")
    for p in (ROOT / "tfds_builders").glob("*/*")
    if p.suffix in (".md", ".bib", ".txt")
  }
  assert needed and all(any(n.match(pattern) for pattern in patterns) for n in needed)
