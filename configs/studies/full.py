"""Full study: the scale worth publishing (BDIRNet-base, 256x256 crops, enough steps for the gaps to separate from
the seed-to-seed noise).

  python -m bdirnet_jax.study --study=configs/studies/full.py --output=studies/full [--data_dir=D]

Design: the five configs x 5 seeds x trained on {linear, gaussian, mixed}, tested on all four synthetic families
(16 kernels per held-out photo, 256x256 crops) and on every real dataset prepared in --data_dir.

Expected wall time on one H200: an ESTIMATE from BENCHMARKS.md (base, bf16, batch 32 of 256x256: 98 ms per step,
88 s of compilation): 75 runs x 20k steps x ~0.1 s = ~42 hours of training, plus ~5 x 90 s of compilation and
~1 min of scoring per run: about 2 days on one GPU (the runs are independent: spread them over several GPUs by
giving each process its own subset of configs/seeds and the same --output).
"""

import ml_collections

from configs.studies import cpu


def recipe() -> ml_collections.ConfigDict:
  """RECIPE: overrides applied to every run (NAFNet's GoPro schedule, shortened)."""
  return ml_collections.ConfigDict(
    dict(
      batch_size=32,
      checkpoint_every_steps=2000,
      log_every_steps=200,
      compute_dtype="bfloat16",
      model=dict(preset="base", scan=True),
      optim=dict(learning_rate=1e-3, warmup_steps=1000, ema_decay=0.9995),
      dataset=dict(crop_size=256, kernel_size=31, noise_sigma=0.01, num_workers=8, prefetch=4),
    )
  )


def get_config():
  study = cpu.get_config()
  study.name = "full"
  study.expected_wall_time = "one H200: ~2 days (estimate; see the module doc)"
  study.seeds = (0, 1, 2, 3, 4)
  study.train_blurs = ("linear", "gaussian", "mixed")
  study.num_train_steps = 20_000
  study.test.variants = 16
  study.test.max_side = 256
  study.test.eval_batch = 16
  study.test.max_real_images = 64
  study.bootstrap.samples = 10000
  study.overrides = recipe()
  return study
