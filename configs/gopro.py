"""Paper-scale training on GoPro (blur, linear CRF), evaluated on GoPro, HIDE and RealBlur.

Needs the builders prepared from the official archives, e.g.
  tfds build tfds_builders/gopro --manual_dir=$MANUAL --data_dir=$DATA
Schedule follows NAFNet's GoPro recipe (batch 32 of 256x256 crops, AdamW, cosine decay over 200k steps).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 32
  config.num_train_steps = 200_000
  config.checkpoint_every_steps = 5_000
  config.log_every_steps = 100
  config.compute_dtype = "bfloat16"
  config.model.preset = "base"
  config.model.scan = True
  config.optim.warmup_steps = 1_000
  config.optim.ema_decay = 0.9995
  config.dataset = default.dataset_config("gopro", "blur", crop_size=256, num_workers=8, prefetch=4, auto_prepare=False)
  config.eval_datasets = [
    default.dataset_config("gopro", "blur", split="test", crop_size=0, auto_prepare=False),
    default.dataset_config("hide", None, split="test", crop_size=0, auto_prepare=False),
    default.dataset_config("realblur", "j", split="test", crop_size=0, auto_prepare=False, label="realblur_j"),
    default.dataset_config("realblur", "r", split="test", crop_size=0, auto_prepare=False, label="realblur_r"),
  ]
  return config
