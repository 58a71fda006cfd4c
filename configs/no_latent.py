"""Ablation: no comparison in latent space (consistency, InfoNCE and statistics weights 0).

The identity weight stays the default's, 0, so no loss needs the sharp view: the network trains on the blurred view
alone, like unet_baseline but with SAID and SAIR (`losses.needs_sharp_view`).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.loss.latent_weight = 0.0
  config.loss.infonce_weight = 0.0
  config.loss.stats_weight = 0.0
  return config
