"""BDIRNet model family: DistillNet encoder, RecNet decoder, SAID/SAIR modules."""

from bdirnet_jax.models.bdirnet import PRESETS
from bdirnet_jax.models.bdirnet import BDIRNet
from bdirnet_jax.models.bdirnet import create_model
from bdirnet_jax.models.bdirnet import model_kwargs

__all__ = ["BDIRNet", "PRESETS", "create_model", "model_kwargs"]
