"""GPU study: the CPU study's design at the scale of about 10 minutes of one H100/H200.

  python -m bdirnet_jax.study --study=configs/studies/gpu.py --output=studies/gpu

Design as configs/studies/cpu.py (five configs x 3 seeds x {gaussian, mixed}, tested on all four families), with
BDIRNet-small on batch 16 of 128x128 crops for 1500 steps, kernel size 31, and larger test images (8 kernels per
photo, 256x256 crops: 16 images per family).

Expected wall time on one H100/H200: an ESTIMATE, not measured: ~5 x 30 s of compilation (one per config, shared
by seeds), ~15 s per run of training (about 10 ms per step; the host must sample the kernels in time, see
`dataset.num_workers`), ~5 s of scoring per run: about 10-12 minutes, plus ~2 minutes of classical baselines on
the host.
"""
import ml_collections

from configs.studies import cpu


def recipe() -> ml_collections.ConfigDict:
  """RECIPE: overrides applied to every run."""
  return ml_collections.ConfigDict(dict(
      batch_size=16,
      checkpoint_every_steps=500,
      log_every_steps=100,
      compute_dtype="bfloat16",
      model=dict(preset="small"),
      optim=dict(learning_rate=2e-3, warmup_steps=100),
      # `config` only names the source of the sharp training photos (kernels are drawn on the fly, 31x31).
      dataset=dict(config="gaussian_k15", crop_size=128, kernel_size=31, noise_sigma=0.01, num_workers=4),
  ))


def get_config():
  study = cpu.get_config()
  study.name = "gpu"
  study.expected_wall_time = "one H100/H200: ~12 min (estimate; see the module doc)"
  study.num_train_steps = 1500
  study.test.variants = 8
  study.test.max_side = 256
  study.test.eval_batch = 16
  study.overrides = recipe()
  return study
