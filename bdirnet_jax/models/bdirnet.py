"""BDIRNet: DistillNet + RecNet + a projection head for latent comparison."""
import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from bdirnet_jax.models.distillnet import DistillNet
from bdirnet_jax.models.recnet import RecNet

# Block counts per preset. `base` follows NAFNet-w32's GoPro layout with a shorter bottleneck so that one forward
# pass (which training runs twice: blurred and sharp view) costs no more than NAFNet-w32's.
PRESETS = {
    "tiny": dict(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1), proj_dim=16),
    "small": dict(width=16, enc_blocks=(1, 1, 2), middle_blocks=2, dec_blocks=(1, 1, 1), proj_dim=64),
    "base": dict(width=32, enc_blocks=(1, 1, 1, 24), middle_blocks=1, dec_blocks=(1, 1, 1, 1), proj_dim=128),
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class BDIRNet(nn.Module):
  """Blur Distilling and Information Reconstruction Network.

  `__call__(blurry, sharp)` runs both views through the shared DistillNet in one batch (one kernel launch per layer
  for both views) and returns everything the losses compare; `deblur(blurry)` is the inference path.
  """
  width: int = 16
  enc_blocks: Sequence[int] = (1, 1, 2)
  middle_blocks: int = 2
  dec_blocks: Sequence[int] = (1, 1, 1)
  said: str = "instance"
  said_skips: bool = True
  said_learned_mix: bool = False
  sair: bool = True
  global_residual: bool = True
  proj_dim: int = 64
  embed_pool: str = "project_then_mean"
  scan: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    if len(self.enc_blocks) != len(self.dec_blocks):
      raise ValueError(f"model.enc_blocks {tuple(self.enc_blocks)} and model.dec_blocks "
                       f"{tuple(self.dec_blocks)} must have the same length")
    common = dict(scan=self.scan, remat=self.remat, dtype=self.dtype)
    self.distill = DistillNet(self.width, tuple(self.enc_blocks), self.middle_blocks, said=self.said,
                              said_skips=self.said_skips, said_learned_mix=self.said_learned_mix, **common)
    self.rec = RecNet(self.width, tuple(self.dec_blocks), sair=self.sair, global_residual=self.global_residual,
                      **common)
    self.proj_hidden = nn.Dense(self.proj_dim * 2, name="proj_hidden")
    self.proj_out = nn.Dense(self.proj_dim, name="proj_out")

  @property
  def downsample_factor(self) -> int:
    return 2 ** len(self.enc_blocks)

  def embed(self, latent):
    """Projection head for the InfoNCE comparison (SimCLR-style, float32).

    "project_then_mean" applies the hidden layer at every location before pooling. Pooling first ("mean") is
    degenerate behind SAID's instance normalisation: every channel's spatial mean is then the same learned shift
    for every image, so all embeddings coincide and InfoNCE's gradient explodes (norms ~1e7 at init).
    """
    x = latent.astype(jnp.float32)
    if self.embed_pool == "project_then_mean":
      pooled = jnp.mean(nn.gelu(self.proj_hidden(x)), axis=(1, 2))
    elif self.embed_pool == "mean":
      pooled = nn.gelu(self.proj_hidden(jnp.mean(x, axis=(1, 2))))
    else:
      raise ValueError(f"model.embed_pool must be 'project_then_mean' or 'mean', got {self.embed_pool!r}")
    return self.proj_out(pooled)

  def deblur(self, blurry):
    d = self.distill(blurry)
    return self.rec(d.latent, d.skips, blurry)

  def __call__(self, blurry, sharp=None, reconstruct_sharp: bool = True):
    """Returns restored images, and with `sharp` the identity reconstruction and both views' latents."""
    if sharp is None:
      d = self.distill(blurry)
      return {"restored": self.rec(d.latent, d.skips, blurry), "latent_blurry": d.latent,
              "stats_blurry": d.stats, "embed_blurry": self.embed(d.latent)}
    b = blurry.shape[0]
    both = jnp.concatenate([blurry, sharp.astype(blurry.dtype)], axis=0)
    d = self.distill(both)
    half = lambda t, i: jax.tree.map(lambda a: a[:b] if i == 0 else a[b:], t)
    out = {
        "latent_blurry": half(d.latent, 0), "latent_sharp": half(d.latent, 1),
        "stats_blurry": half(d.stats, 0), "stats_sharp": half(d.stats, 1),
    }
    emb = self.embed(d.latent)
    out["embed_blurry"], out["embed_sharp"] = emb[:b], emb[b:]
    if reconstruct_sharp:
      rec = self.rec(d.latent, d.skips, both)
      out["restored"], out["identity"] = rec[:b], rec[b:]
    else:
      out["restored"] = self.rec(half(d.latent, 0), half(d.skips, 0), blurry)
    return out


_FIELDS = {f.name for f in dataclasses.fields(BDIRNet)} - {"parent", "name", "dtype"}


def model_kwargs(model_config: ml_collections.ConfigDict) -> dict:
  """Preset values overridden by any explicitly set (non-None) field of `config.model`."""
  preset = model_config.get("preset", "small")
  if preset not in PRESETS:
    raise ValueError(f"config.model.preset must be one of {sorted(PRESETS)}, got {preset!r}")
  kwargs = dict(PRESETS[preset])
  for key, value in model_config.items():
    if key in ("preset", "dtype"):
      continue
    if key not in _FIELDS:
      raise ValueError(f"config.model.{key} is not a BDIRNet field; known fields: {sorted(_FIELDS)}")
    if value is not None:
      kwargs[key] = tuple(value) if isinstance(value, (list, tuple)) else value
  return kwargs


def create_model(model_config: ml_collections.ConfigDict, dtype: str | None = None) -> BDIRNet:
  """Builds the model from `config.model`; `dtype` is the compute dtype (params stay float32)."""
  dtype = dtype or model_config.get("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"compute dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
  return BDIRNet(dtype=DTYPES[dtype], **model_kwargs(model_config))
