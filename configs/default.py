"""Embedded default: BDIRNet-small on synthetic blur of the photos shipped inside scikit-image / scikit-learn.

Runs on a laptop CPU in minutes: python main.py --config=configs/default.py --workdir=/tmp/bdirnet_default
Every other config starts from this one and changes only what it is about.
"""
import ml_collections
from ml_collections.config_dict import placeholder


# The dataset factory lives in the library (robustness and evaluate callers need no experiment config); re-exported
# here so `default.dataset_config(...)` keeps working.
from bdirnet_jax.data_config import dataset_config  # noqa: E402,F401  pylint: disable=g-import-not-at-top


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 8                # global, over all devices and processes
  config.num_train_steps = 600
  config.checkpoint_every_steps = 200
  config.log_every_steps = 50
  config.keep_checkpoints = 3
  config.async_checkpointing = True
  config.compute_dtype = "float32"     # "bfloat16" on accelerators; params and optimizer stay float32
  config.mesh_shape = (-1, 1)          # (data, model)
  config.nan_policy = "stop"           # "stop" or "skip" a step whose loss or gradients are not finite
  config.profile_steps = 0             # >0: profile that many steps after the first log interval (process 0)

  config.model = ml_collections.ConfigDict(dict(
      preset="small",                  # tiny | small | base; the fields below override the preset when set
      width=placeholder(int), enc_blocks=placeholder(tuple), middle_blocks=placeholder(int),
      dec_blocks=placeholder(tuple), proj_dim=placeholder(int),
      embed_pool="project_then_mean",  # InfoNCE head: per-location projection, then mean ("mean": pool first)
      said="instance",                 # SAID: "instance" (remove per-channel statistics) or "none"
      said_skips=True,                 # distil skip features too, so blur cannot bypass the latent
      said_learned_mix=False,          # learned per-channel blend of distilled and raw features
      sair=True,                       # SAIR: statistics-conditioned modulation in the decoder
      global_residual=True,
      scan=False,                      # nn.scan over repeated blocks (compile time flat in depth)
      remat=False,                     # recompute block activations in the backward pass (memory)
  ))

  config.loss = ml_collections.ConfigDict(dict(
      reconstruction="charbonnier",    # l1 | charbonnier | psnr | l2, for restored and identity images
      charbonnier_eps=1e-3,
      rec_weight=1.0,                  # RecNet(DistillNet(blurry)) vs sharp
      identity_weight=0.5,             # RecNet(DistillNet(sharp)) vs sharp: the sharp autoencoder
      latent_weight=0.1,               # latent consistency, sharp view as stop-gradient target
      latent_distance="l1",            # l1 | l2 | cosine
      infonce_weight=0.05,             # InfoNCE over the global batch, other scenes as negatives
      infonce_temperature=0.1,
      infonce_stop_grad_sharp=False,
      stats_weight=0.05,               # match raw encoder channel statistics of both views
      fft_weight=0.05,                 # frequency (FFT) L1; 0 disables
  ))

  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, min_lr_ratio=1e-3, warmup_steps=50, weight_decay=1e-4, b1=0.9, b2=0.9,
      grad_clip_norm=1.0, ema_decay=0.999,
  ))

  config.dataset = dataset_config()
  config.eval_datasets = [dataset_config(split="test", crop_size=0)]
  config.eval_num_grid_images = 4
  return config
