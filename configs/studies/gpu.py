"""GPU study: the CPU study's design at GPU scale (sized first for ~10 minutes of one H100/H200; measured: ~1.2-1.5 h).

  python -m bdirnet_jax.study --study=configs/studies/gpu.py --output=studies/gpu

Design as configs/studies/cpu.py (five configs x 3 seeds x {gaussian, mixed}, tested on all four families), with
BDIRNet-small on batch 16 of 128x128 crops for 1500 steps, kernel size 31, and larger test images (8 kernels per
photo, 256x256 crops: 16 images per family).

Wall time, MEASURED on one H200 (2026-11-27, commit 32ae9c4; docs/STUDY.md): per run ~30 s of setup, 60-90 s
to compile the train step (~35 s with `XLA_FLAGS=--xla_gpu_autotune_level=0`), 1500 steps at 11-16 steps/s
(host-bound: the single-view U-Net was no faster than two-view BDIRNet), 6-16 s of scoring: 184-221 s per run,
so the 30 runs take ~1.2-1.5 h, not the ~12 min first estimated; a 15-minute device lease holds three runs. The
study resumes from committed run records (config.json + study_scores.json), so it can run lease by lease. The
classical baselines (~2.5 min on a 2-core CPU) can be scored on the host beforehand with `--report_only`.

Since then `stack_runs = 6`: the 6 runs of a config (3 seeds x 2 training blurs) train together in one vmapped
program (bdirnet_jax/stacked_train.py; docs/DESIGN.md), one compile per config instead of one per run, and the
GPU does 6 runs' work per step. Not yet measured on a GPU: `benchmarks/stacked_train.py --study=configs/studies/gpu.py`
measures run-steps per second for 1, 2, 4 and 6 stacked runs.
"""

import ml_collections

from configs.studies import cpu


def recipe() -> ml_collections.ConfigDict:
  """RECIPE: overrides applied to every run."""
  return ml_collections.ConfigDict(
    dict(
      batch_size=16,
      checkpoint_every_steps=500,
      log_every_steps=100,
      compute_dtype="bfloat16",
      model=dict(preset="small"),
      optim=dict(learning_rate=2e-3, warmup_steps=100),
      # `config` only names the source of the sharp training photos (kernels are drawn on the fly, 31x31).
      dataset=dict(config="gaussian_k15", crop_size=128, kernel_size=31, noise_sigma=0.01, num_workers=4),
    )
  )


def get_config():
  study = cpu.get_config()
  study.name = "gpu"
  study.expected_wall_time = "one H200: ~1.2-1.5 h, measured per run (module doc)"
  study.num_train_steps = 1500
  study.test.variants = 8
  study.test.max_side = 256
  study.test.eval_batch = 16
  study.overrides = recipe()
  # The 6 runs of each config (3 seeds x 2 training blurs) train together, vmapped in one program: one small model
  # cannot fill the GPU, and 30 sequential runs do not fit a sitting (bdirnet_jax/stacked_train.py).
  study.stack_runs = 6
  return study
