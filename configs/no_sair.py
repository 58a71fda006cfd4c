"""Ablation: RecNet without SAIR (plain additive skips)."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.sair = False
  return config
