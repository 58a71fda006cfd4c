"""Ablation: DistillNet without SAID (features leave the encoder with their statistics)."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.said = "none"
  return config
