"""Smoke study for CI: the whole path (train, resume, test sets, baselines, bootstrap, report) in minutes.

2 configs x 2 seeds x 1 training family x 2 test families, BDIRNet-tiny cut to one level, 6 steps of batch 4 on
32x32 crops, 4 test images of 32x32 per family. Expected wall time on 2 CPU cores: about 2 minutes (first run, two
compilations of ~30 s dominate; seeds share them through the study's compilation cache); a second invocation
trains and scores nothing (~15 s). Measures nothing: runs this short do not learn.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config():
  study = ml_collections.ConfigDict()
  study.name = "smoke"
  study.expected_wall_time = "2 CPU cores: ~2 min"
  study.configs = ("bdirnet", "unet_baseline")
  study.seeds = (0, 1)
  study.train_blurs = ("gaussian",)
  study.test_blurs = ("gaussian", "linear")
  study.num_train_steps = 6
  study.real_datasets = True
  study.learned_min_gain_db = 0.5
  study.stack_runs = 0  # >1: runs of one config trained together (bdirnet_jax/stacked_train.py)
  study.test = ml_collections.ConfigDict(
    dict(
      variants=2,  # kernels (and crops) per test photo
      max_side=32,  # square crops of at most this side
      kernel_size=placeholder(int),  # None: the runs' dataset.kernel_size
      noise_sigma=placeholder(float),  # None: the runs' dataset.noise_sigma
      max_real_images=2,
      eval_batch=4,
    )
  )
  study.bootstrap = ml_collections.ConfigDict(dict(samples=1000, seed=0))
  study.overrides = ml_collections.ConfigDict(
    dict(
      batch_size=4,
      checkpoint_every_steps=3,
      log_every_steps=3,
      model=dict(preset="tiny", enc_blocks=(1,), dec_blocks=(1,)),  # one level: compiles fastest
      optim=dict(warmup_steps=1, learning_rate=2e-3),
      dataset=dict(crop_size=32, kernel_size=9, prefetch=1),
    )
  )
  return study
