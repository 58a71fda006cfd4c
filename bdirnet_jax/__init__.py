"""BDIRNet in JAX/Flax: blur distilling and information comparison in latent space."""
