"""Baseline: the same NAFNet U-Net backbone trained as a plain blurred->sharp mapping.

No SAID, no SAIR, no sharp view: identity, latent, InfoNCE and statistics losses off. This is the "transferring
network" the paper argues generalises worse.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.said = "none"
  config.model.sair = False
  config.loss.identity_weight = 0.0
  config.loss.latent_weight = 0.0
  config.loss.infonce_weight = 0.0
  config.loss.stats_weight = 0.0
  return config
