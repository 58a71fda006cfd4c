"""BDIRNet model family: DistillNet encoder, RecNet decoder, SAID/SAIR modules."""
from bdirnet_jax.models.bdirnet import BDIRNet, PRESETS, create_model, model_kwargs

__all__ = ["BDIRNet", "PRESETS", "create_model", "model_kwargs"]
