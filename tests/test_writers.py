"""writers: asking whether TensorBoard is there changes nothing; clu still imports either way."""

import importlib.util
import sys

from bdirnet_jax import writers


def test_asking_for_tensorboard_changes_no_module(monkeypatch):
  writers.tensorboard_available.cache_clear()
  try:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    before = dict(sys.modules)
    assert not writers.tensorboard_available()
    assert dict(sys.modules) == before  # the question registers no stand-in module
  finally:
    monkeypatch.undo()
    writers.tensorboard_available.cache_clear()


def test_periodic_actions_import():
  assert writers.periodic_actions().__name__ == "clu.periodic_actions"
