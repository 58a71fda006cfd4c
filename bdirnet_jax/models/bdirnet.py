"""BDIRNet: DistillNet + RecNet + a projection head for latent comparison."""

import dataclasses
from typing import Any
from typing import Sequence

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
EMBED_POOLS = ("project_then_mean", "mean")


def compute_dtype(name: str):
  """The jnp dtype of a compute-dtype name; `config.compute_dtype` and `--bf16` both come through here."""
  if not isinstance(name, str) or name not in DTYPES:
    raise ValueError(f"config.compute_dtype must be one of {sorted(DTYPES)}, got {name!r}")
  return DTYPES[name]


def check_fields(enc_blocks, dec_blocks, embed_pool) -> None:
  """The architecture's rules, named by config key: `BDIRNet.setup` runs them, and config_validation before
  anything is compiled."""
  for key, value in (("enc_blocks", enc_blocks), ("dec_blocks", dec_blocks)):
    if not (
      isinstance(value, (tuple, list))
      and value
      and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
      raise ValueError(f"config.model.{key} must be a non-empty sequence of integers >= 0, got {value!r}")
  if len(enc_blocks) != len(dec_blocks):
    raise ValueError(
      "config.model.enc_blocks and config.model.dec_blocks must have the same length, got "
      f"{tuple(enc_blocks)} and {tuple(dec_blocks)}"
    )
  if embed_pool not in EMBED_POOLS:
    raise ValueError(f"config.model.embed_pool must be one of {sorted(EMBED_POOLS)}, got {embed_pool!r}")


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
  identity_residual: bool = False
  proj_dim: int = 64
  embed_pool: str = "project_then_mean"
  scan: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    check_fields(self.enc_blocks, self.dec_blocks, self.embed_pool)
    common = dict(scan=self.scan, remat=self.remat, dtype=self.dtype)
    self.distill = DistillNet(
      self.width,
      tuple(self.enc_blocks),
      self.middle_blocks,
      said=self.said,
      said_skips=self.said_skips,
      said_learned_mix=self.said_learned_mix,
      **common,
    )
    self.rec = RecNet(
      self.width, tuple(self.dec_blocks), sair=self.sair, global_residual=self.global_residual, **common
    )
    self.proj_hidden = nn.Dense(self.proj_dim * 2, name="proj_hidden")
    self.proj_out = nn.Dense(self.proj_dim, name="proj_out")

  @property
  def downsample_factor(self) -> int:
    return downsample_factor(self.enc_blocks)

  def embed(self, latent):
    """Projection head for the InfoNCE comparison (SimCLR-style, float32).

    "project_then_mean" applies the hidden layer at every location before pooling. Pooling first ("mean") is
    degenerate behind SAID's instance normalisation: every channel's spatial mean is then the same learned shift
    for every image, so all embeddings coincide and InfoNCE's gradient explodes (norms ~1e7 at init).
    """
    x = latent.astype(jnp.float32)
    if self.embed_pool == "mean":
      pooled = nn.gelu(self.proj_hidden(jnp.mean(x, axis=(1, 2))))
    else:  # "project_then_mean" (setup checked the name)
      pooled = jnp.mean(nn.gelu(self.proj_hidden(x)), axis=(1, 2))
    return self.proj_out(pooled)

  def deblur(self, blurry):
    d = self.distill(blurry)
    return self.rec(d.latent, d.skips, blurry)

  def __call__(self, blurry, sharp=None, reconstruct_sharp: bool = True):
    """Returns restored images, and with `sharp` the identity reconstruction and both views' latents.

    The two views are interleaved on the batch axis ([b0, s0, b1, s1, ...]), not concatenated: with the batch
    sharded over devices, each device then holds both views of its own images, so pairing them back up is a
    local reshape and the compiled step needs no collective-permute or all-to-all.
    """
    if sharp is None:
      d = self.distill(blurry)
      return {
        "restored": self.rec(d.latent, d.skips, blurry),
        "latent_blurry": d.latent,
        "stats_blurry": d.stats,
        "embed_blurry": self.embed(d.latent),
      }
    both = interleave(blurry, sharp.astype(blurry.dtype))
    d = self.distill(both)
    (lb, ls), (sb, ss) = split_views(d.latent), split_views(d.stats)
    out = {"latent_blurry": lb, "latent_sharp": ls, "stats_blurry": sb, "stats_sharp": ss}
    out["embed_blurry"], out["embed_sharp"] = deinterleave(self.embed(d.latent))
    if reconstruct_sharp:
      # The identity view is decoded from the sharp latent with no residual unless `identity_residual`: it is then
      # the sharp autoencoder of Nimisha et al., which must carry the image through DistillNet's features, not
      # the "return the input unchanged" map a residual decoder meets at initialisation.
      base = both if self.identity_residual else interleave(blurry, jnp.zeros_like(blurry))
      out["restored"], out["identity"] = deinterleave(self.rec(d.latent, d.skips, base))
    else:
      out["restored"] = self.rec(lb, split_views(d.skips)[0], blurry)
    return out


def interleave(a, b):
  """[B, ...] x 2 -> [2B, ...] as a0, b0, a1, b1, ...: keeps both views of an image in the same batch shard."""
  return jnp.stack([a, b], axis=1).reshape((2 * a.shape[0],) + a.shape[1:])


def deinterleave(x):
  """Inverse of `interleave`: ([B, ...], [B, ...])."""
  x = x.reshape((x.shape[0] // 2, 2) + x.shape[1:])
  return x[:, 0], x[:, 1]


def split_views(tree):
  """`deinterleave` over every leaf of a pytree: (tree of first views, tree of second views)."""
  return jax.tree.map(lambda a: deinterleave(a)[0], tree), jax.tree.map(lambda a: deinterleave(a)[1], tree)


_FIELDS = {f.name for f in dataclasses.fields(BDIRNet)} - {"parent", "name", "dtype"}


def model_kwargs(model_config: ml_collections.ConfigDict) -> dict:
  """Preset values overridden by any explicitly set (non-None) field of `config.model`, checked (`check_fields`).

  The compute dtype is not a model field: it is `config.compute_dtype` (training) or `--bf16` (inference).
  """
  preset = model_config.get("preset", "small")
  if not isinstance(preset, str) or preset not in PRESETS:
    raise ValueError(f"config.model.preset must be one of {sorted(PRESETS)}, got {preset!r}")
  kwargs = dict(PRESETS[preset])
  for key, value in model_config.items():
    if key == "preset":
      continue
    if key not in _FIELDS:
      raise ValueError(f"config.model.{key} is not a BDIRNet field; known fields: {sorted(_FIELDS)}")
    if value is not None:
      kwargs[key] = tuple(value) if isinstance(value, (list, tuple)) else value
  check_fields(kwargs["enc_blocks"], kwargs["dec_blocks"], kwargs.get("embed_pool", BDIRNet.embed_pool))
  for key, minimum in (("width", 1), ("proj_dim", 1), ("middle_blocks", 0)):
    value = kwargs.get(key)
    if value is None:
      continue
    if not isinstance(value, int) or isinstance(value, bool):
      raise ValueError(f"config.model.{key} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
      raise ValueError(f"config.model.{key} must be >= {minimum}, got {value}")
  return kwargs


def downsample_factor(enc_blocks) -> int:
  """How many pixels of the input one latent pixel spans per side: each encoder level halves H and W, so inputs
  must be multiples of this."""
  return 2 ** len(enc_blocks)


def create_model(model_config: ml_collections.ConfigDict, dtype: str = "float32") -> BDIRNet:
  """Builds the model from `config.model`; `dtype` names the compute dtype (params stay float32)."""
  return BDIRNet(dtype=compute_dtype(dtype), **model_kwargs(model_config))
