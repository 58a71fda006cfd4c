"""Entry point: python main.py --config=configs/NAME.py --workdir=DIR [--mode=train].

Config fields are overridden on the command line, e.g. --config.batch_size=16 --config.model.preset=base.
"""
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json, logs and evaluation output.")
flags.DEFINE_enum("mode", "train", ["train"], "What to run (evaluate/predict/export: issue 4, not yet built).")
flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port of process 0 "
                    "(or set JAX_COORDINATOR_ADDRESS; on SLURM/TPU pods use --distributed).")
flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process: index of this process.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with cluster auto-detection.")


def _maybe_initialize_distributed():
  import jax  # pylint: disable=g-import-not-at-top
  address = FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not (address or FLAGS.distributed):
    return
  if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
    # Cross-process collectives on CPU (tests, laptops) need gloo; accelerators bring their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=address, num_processes=FLAGS.num_processes,
                             process_id=FLAGS.process_id)
  logging.info("Process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.workdir is None:
    raise app.UsageError("--workdir is required")
  config = FLAGS.config
  if config is None and FLAGS.mode in ("train", "evaluate"):
    raise app.UsageError(f"--mode={FLAGS.mode} needs --config=configs/NAME.py")
  _maybe_initialize_distributed()
  if FLAGS.mode == "train":
    from bdirnet_jax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
