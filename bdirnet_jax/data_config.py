"""The dataset config factory, in the library so library modules (robustness, evaluate callers) need no
experiment config; `configs/default.py` re-exports it as `default.dataset_config`."""

import ml_collections
from ml_collections.config_dict import placeholder


def dataset_config(name="synthetic_blur", config="mixed", split="train", **overrides):
  ds = ml_collections.ConfigDict(
    dict(
      name=name,  # a builder registered by `import tfds_builders`
      config=config,  # its builder config (None for builders without configs)
      split=split,
      label=placeholder(str),  # evaluation output name (DIR/eval/<label>_<split>.json); None = the name
      protocol=placeholder(
        str
      ),  # evaluation protocol (protocols.PROTOCOLS); None = protocols.DATASET_PROTOCOLS by name
      data_dir=placeholder(str),  # TFDS data_dir; None = $TFDS_DATA_DIR or ~/tensorflow_datasets
      manual_dir=placeholder(str),  # where the extracted official archives live (real datasets)
      auto_prepare=True,  # build synthetic_blur on first use if missing (real datasets need `tfds build`)
      crop_size=128,
      small_image_policy="pad",  # "pad" (reflect) or "reject" images smaller than the crop
      augment=True,  # flips and 90-degree rotations, identical on both views
      on_the_fly_blur=False,  # sharp-only source: kernels sampled on the host, blur applied on the device
      blur_family="mixed",
      kernel_size=31,
      trajectory_exposures=placeholder(tuple),  # exposure fractions of trajectory kernels; None = blur's default
      scale_range=placeholder(tuple),  # (lo, hi): sharp crops rescaled by a log-uniform factor (on-the-fly blur)
      noise_sigma=0.01,
      num_workers=0,  # grain worker processes (0: in the main process)
      num_threads=2,  # grain read threads per process
      prefetch=2,
      decoded_cache_mb=1024,  # decoded training images kept in memory per process (0: decode on every read)
    )
  )
  ds.update(overrides)
  return ds
