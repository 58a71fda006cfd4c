"""Tiny smoke config: 10 steps of BDIRNet-tiny on 32x32 crops, well under a minute on 2 CPU cores."""

from configs import default


def get_config():
  config = default.get_config()
  config.batch_size = 4
  config.num_train_steps = 10
  config.checkpoint_every_steps = 5
  config.log_every_steps = 5
  config.optim.warmup_steps = 2
  config.model.preset = "tiny"
  config.dataset.crop_size = 32
  config.dataset.prefetch = 1
  config.eval_datasets = []  # a smoke run: tests evaluate tiny workdirs on datasets of their own
  return config
