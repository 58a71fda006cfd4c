"""Embedded default: BDIRNet-small on synthetic blur of the photos shipped inside scikit-image / scikit-learn.

  python main.py --config=configs/default.py --workdir=workdirs/default

Trains on 64x64 crops of the 6 training photos, blurred on the fly with a fresh 15x15 Gaussian kernel per crop
(`blur_family="gaussian"`), and is scored on the 2 held-out photos (8 fixed Gaussian blurs each,
`synthetic_blur/gaussian_k15`, test split). Sized to finish on a 2-core CPU within 15 minutes (BENCHMARKS.md);
docs/DESIGN.md says why each choice was made. Every other config starts from this one and changes only what it
is about.
"""

import ml_collections
from ml_collections.config_dict import placeholder

# The dataset factory lives in the library (robustness and evaluate callers need no experiment config); re-exported
# here so `default.dataset_config(...)` keeps working.
from bdirnet_jax.data_config import dataset_config  # noqa: E402,F401  pylint: disable=g-import-not-at-top


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 8  # global, over all devices and processes
  config.num_train_steps = 500
  config.checkpoint_every_steps = 200
  config.log_every_steps = 50
  config.eval_every_steps = 0  # validation on eval_datasets every N steps (0 = only the final evaluation)
  config.keep_checkpoints = 3
  config.async_checkpointing = True
  config.compute_dtype = "float32"  # "bfloat16" on accelerators; params and optimizer stay float32
  config.mesh_shape = (-1, 1)  # (data, model)
  config.nan_policy = "stop"  # "stop" or "skip" a step whose loss or gradients are not finite
  config.profile_steps = 0  # >0: profile that many steps after the first log interval (process 0)
  config.init_from = ""  # fine-tune: a workdir or pretrained package whose params start a new run (same model)

  config.model = ml_collections.ConfigDict(
    dict(
      preset="small",  # tiny | small | base; the fields below override the preset when set
      width=placeholder(int),
      enc_blocks=placeholder(tuple),
      middle_blocks=placeholder(int),
      dec_blocks=placeholder(tuple),
      proj_dim=placeholder(int),
      embed_pool="project_then_mean",  # InfoNCE head: per-location projection, then mean ("mean": pool first)
      said="instance",  # SAID: "instance" (remove per-channel statistics) or "none"
      said_skips=True,  # SAID on the skips too (their statistics, not their content)
      said_learned_mix=False,  # learned per-channel blend of distilled and raw features
      sair=True,  # SAIR: statistics-conditioned modulation in the decoder
      global_residual=True,  # restored = blurry + RecNet(...): the decoder predicts the correction
      identity_residual=False,  # identity view decoded without residual: the sharp autoencoder
      scan=False,  # nn.scan over repeated blocks (compile time flat in depth)
      remat=False,  # recompute block activations in the backward pass (memory)
    )
  )

  config.loss = ml_collections.ConfigDict(
    dict(
      reconstruction="charbonnier",  # l1 | charbonnier | psnr | l2, for restored and identity images
      charbonnier_eps=1e-3,
      rec_weight=1.0,  # RecNet(DistillNet(blurry)) vs sharp
      identity_weight=0.0,  # RecNet(DistillNet(sharp)) vs sharp (autoencoder unless identity_residual)
      latent_weight=0.01,  # latent consistency, sharp view as stop-gradient target
      latent_distance="l1",  # l1 | l2 | cosine
      latent_normalize=True,  # compare standardised latents (False: raw, lowered by shrinking SAID's gamma)
      infonce_weight=0.005,  # InfoNCE over the global batch, other scenes as negatives
      infonce_temperature=0.1,
      infonce_stop_grad_sharp=False,
      stats_weight=0.0,  # match raw encoder channel statistics of both views; off: at 0.005 it
      # halved the crop gain at step 100 (DESIGN.md, "Learning")
      stats_scale_free=True,  # mean offset / std and log std ratio (False: raw L1, which diverges)
      fft_weight=0.05,  # frequency (FFT) L1, orthonormal spectra; 0 disables
    )
  )

  config.optim = ml_collections.ConfigDict(
    dict(
      learning_rate=2e-3,
      min_lr_ratio=1e-3,
      warmup_steps=20,
      weight_decay=1e-4,
      b1=0.9,
      b2=0.9,
      weight_decay_on="kernels",  # "kernels": conv/dense kernels only; "all": every parameter
      grad_clip_norm=1.0,
      ema_decay=0.999,
      ema_warmup=True,  # EMA decay min(ema_decay, (1 + t) / (10 + t)) at step t
      schedule_steps=placeholder(int),  # cosine horizon; None = num_train_steps when the run starts (then fixed)
    )
  )

  config.dataset = dataset_config(
    config="gaussian_k15", crop_size=64, on_the_fly_blur=True, blur_family="gaussian", kernel_size=15
  )
  config.eval_datasets = [dataset_config(config="gaussian_k15", split="test", crop_size=0)]
  config.eval_num_grid_images = 4
  return config
