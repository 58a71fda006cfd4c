"""Ablation: no comparison in latent space (no consistency, InfoNCE or statistics terms); identity loss kept."""

from configs import default


def get_config():
  config = default.get_config()
  config.loss.latent_weight = 0.0
  config.loss.infonce_weight = 0.0
  config.loss.stats_weight = 0.0
  return config
