"""First schedule of the shipped model `pretrained/bdirnet-small-mixed/`: BDIRNet-small trained on every synthetic blur
family at once, with noise, so that it deblurs the camera-shake and motion blur of real photos, not only Gaussian.

  python main.py --config=configs/pretrained_bdirnet_small_mixed.py --workdir=workdirs/pretrained-bdirnet-small-mixed

What differs from the embedded default (configs/default.py) and why:
- blur: a fresh 31x31 kernel per crop, its family drawn uniformly from trajectory, linear, Gaussian and defocus
  (`blur_family="mixed"`). 31x31 covers real shake at phone resolution (GoPro's kernels reach ~30 px); the
  parameter ranges of `blur.sample_kernel` start at near-identity (linear length 1, sigma 0.5, radius 1), so
  small blurs are drawn too.
- trajectory exposures (1/1000, 1/2, 1): two thirds of the trajectories really blur; DeblurGAN's set (1/1000, 1/10,
  1/2, 1) leaves 30% of 31x31 kernels moving energy by less than half a pixel (docs/DESIGN.md). The third that is
  point-like teaches "leave it alone": trained on (1/2, 1) only, step 1000 lost 2.3 dB on point-like kernels of the
  validation photo (studies/pretrained/validation/validation_step1000.md) while gaining 1.3 dB on blurring ones.
- 96x96 crops: a 29 px blur needs context on both sides; at 64x64 half the crop is the blur's border.
- a long schedule (resumable over several sittings on a CPU; one GPU sitting is enough at device speed).

The photos are the default's: the 6 training photos of `synthetic_blur` (packaged with scikit-image and
scikit-learn); the 2 held-out photos are never trained on. Steps are chosen on a validation photo outside both
splits (matplotlib's grace_hopper.jpg, `studies/pretrained/validate.py`), never on the test split.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.num_train_steps = 12000
  config.optim.schedule_steps = 12000
  config.optim.warmup_steps = 200
  config.checkpoint_every_steps = 250
  config.log_every_steps = 50
  config.keep_checkpoints = 2
  config.dataset.config = "mixed"  # names the source of the sharp training photos; kernels are drawn on the fly
  config.dataset.crop_size = 96
  config.dataset.blur_family = "mixed"
  config.dataset.kernel_size = 31
  config.dataset.trajectory_exposures = (0.001, 0.5, 1.0)
  config.dataset.noise_sigma = 0.01
  config.eval_datasets = [
    default.dataset_config(config=family, split="test", crop_size=0, label=f"synthetic_{family}")
    for family in ("trajectory", "linear", "gaussian", "defocus")
  ]
  return config
