"""Entry point: python main.py (or `bdirnet` once installed) --mode=train|evaluate|predict|export --workdir=DIR
[--config=configs/NAME.py].

train:    --config required; resumes from DIR/checkpoints.
evaluate: every config.eval_datasets entry at full resolution -> DIR/eval/ (JSON per dataset, report.md, grids);
          --config optional (defaults to DIR/config.json, so eval datasets can be changed by a new config).
predict:  --input=FILE_OR_DIR --output=DIR (or --output=NAME.png for one input file) [--overwrite --keep_ext
          --tile=T --tile_overlap=O --bf16 --keep_raw_orientation]. Never writes over an input; outputs that
          exist are replaced only with --overwrite.
export:   --output=FILE (e.g. exports/model.jax) [--format=jax|onnx], a jax.export artifact (default) or an ONNX
          graph of the inference function.

Logs show the project's own lines; --verbosity=1 (or -v 1) adds the libraries' (orbax, TensorFlow, XLA).

Config fields are overridden on the command line, e.g. --config.batch_size=16 --config.model.preset=base.
"""

import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from bdirnet_jax import command_line

FLAGS = flags.FLAGS


def _define_flags():
  """main.py's flags; defined only by the entry point, so importing this module defines none."""
  config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json, logs and evaluation output.")
  flags.DEFINE_enum("mode", "train", ["train", "evaluate", "predict", "export"], "What to run.")
  flags.DEFINE_string("input", None, "predict: an image file or a folder (searched recursively).")
  flags.DEFINE_string(
    "output",
    None,
    "predict: output folder, or NAME.png for one input file; export: output file (e.g. exports/model.jax).",
  )
  flags.DEFINE_bool("overwrite", False, "predict: replace outputs that already exist (never an input).")
  flags.DEFINE_bool(
    "keep_ext",
    False,
    "predict: name every output <name>.<ext>.png (img.jpg -> img.jpg.png); without it only inputs sharing a stem "
    "(img.bmp, img.tif) keep their extension.",
  )
  flags.DEFINE_enum("format", "jax", ["jax", "onnx"], "export: a jax.export artifact or an ONNX graph.")
  flags.DEFINE_integer(
    "tile",
    None,
    "predict: tile size in pixels; 0 disables tiling; unset = tile only when an image would not fit the device memory.",
  )
  flags.DEFINE_integer("tile_overlap", 32, "predict: overlap between neighbouring tiles, blended linearly.")
  flags.DEFINE_integer(
    "batch_size",
    None,
    "predict: images (or tiles) per step over all devices, rounded up to a "
    "multiple of the device count; unset = automatic.",
  )
  flags.DEFINE_bool(
    "keep_raw_orientation",
    False,
    "predict: deblur the pixels as stored instead of applying the EXIF "
    "orientation (the output PNG then carries the orientation as a tag).",
  )
  flags.DEFINE_bool("bf16", False, "predict/export/evaluate: bfloat16 activations (params stay float32).")
  flags.DEFINE_bool("use_ema", True, "evaluate/predict/export: use the EMA params when the run kept them.")
  flags.DEFINE_integer("step", None, "evaluate/predict/export: checkpoint step (default: latest).")
  flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-process: host:port of process 0 (or set JAX_COORDINATOR_ADDRESS; on SLURM/TPU pods use --distributed).",
  )
  flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
  flags.DEFINE_integer("process_id", None, "Multi-process: index of this process.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with cluster auto-detection.")
  for flag in FLAGS.get_flags_for_module(__name__):  # --helpshort lists the flags of the script that was run
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _maybe_initialize_distributed():
  import jax  # pylint: disable=g-import-not-at-top

  address = FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if not (address or FLAGS.distributed):
    return
  if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
    # Cross-process collectives on CPU (tests, laptops) need gloo; accelerators bring their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=address, num_processes=FLAGS.num_processes, process_id=FLAGS.process_id
  )
  logging.info(
    "Process %d of %d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def main(argv):
  command_line.setup_logging()
  if len(argv) > 1:
    command_line.usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.workdir is None:
    command_line.usage_error("--workdir is required")
  config_file = FLAGS["config"].config_filename if FLAGS["config"].present else None
  if config_file and not os.path.isfile(config_file.split(":")[0]):
    sys.exit(f"error: --config={config_file}: no such config file")
  # Every path becomes absolute once, here: orbax refuses relative checkpoint paths.
  for name in ("workdir", "input", "output"):
    if FLAGS[name].value is not None:
      FLAGS[name].value = os.path.abspath(os.path.expanduser(FLAGS[name].value))
  config = FLAGS.config
  if config is None and FLAGS.mode == "train":
    command_line.usage_error("--mode=train needs --config=configs/NAME.py")
  if FLAGS.mode == "predict" and not (FLAGS.input and FLAGS.output):
    command_line.usage_error("--mode=predict needs --input=FILE_OR_DIR and --output=DIR (or NAME.png)")
  if FLAGS.mode == "export" and not FLAGS.output:
    command_line.usage_error("--mode=export needs --output=FILE (e.g. exports/model.jax)")
  if FLAGS.mode in ("train", "evaluate"):  # the ones that read (and may build) TFDS datasets
    command_line.no_bars_when_redirected()
  _maybe_initialize_distributed()
  from bdirnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from bdirnet_jax import config_validation  # pylint: disable=g-import-not-at-top

  try:
    _run(config)
  except (
    config_validation.ConfigError,
    FileNotFoundError,
    FloatingPointError,
    checkpoint.CheckpointSaveError,
  ) as e:
    # Expected errors (bad config value, missing checkpoint or dataset, non-finite loss with nan_policy='stop', a
    # failed checkpoint save): the message, not a traceback.
    sys.exit(f"error: {e}")


def _run(config):
  # pylint: disable=g-import-not-at-top
  if FLAGS.mode == "train":
    from bdirnet_jax import train

    train.train_and_evaluate(config, FLAGS.workdir)
  elif FLAGS.mode == "evaluate":
    from bdirnet_jax import evaluate

    evaluate.evaluate(FLAGS.workdir, config, use_ema=FLAGS.use_ema, step=FLAGS.step, bf16=FLAGS.bf16)
    logging.info("evaluate: report written to %s", os.path.join(FLAGS.workdir, evaluate.EVAL_DIR, "report.md"))
  elif FLAGS.mode == "predict":
    from bdirnet_jax import predict
    from bdirnet_jax import predict_io

    try:
      status = predict.predict(
        FLAGS.workdir,
        FLAGS.input,
        FLAGS.output,
        tile=FLAGS.tile,
        tile_overlap=FLAGS.tile_overlap,
        batch_size=FLAGS.batch_size,
        bf16=FLAGS.bf16,
        use_ema=FLAGS.use_ema,
        step=FLAGS.step,
        keep_raw_orientation=FLAGS.keep_raw_orientation,
        keep_ext=FLAGS.keep_ext,
        overwrite=FLAGS.overwrite,
      )
    except predict_io.PlanError as e:  # refused before the model loads: one line (and the files it names)
      sys.exit(f"error: {e}")
    sys.exit(status)
  elif FLAGS.mode == "export":
    if FLAGS.format == "onnx":
      from bdirnet_jax import onnx_export as export
    else:
      from bdirnet_jax import export

    export.export(FLAGS.workdir, FLAGS.output, bf16=FLAGS.bf16, use_ema=FLAGS.use_ema, step=FLAGS.step)


def _parse_flags(argv):
  """absl's parser, with an unknown --config.FIELD reported in one line (ml_collections raises AttributeError)."""
  try:
    return command_line.parse_flags(argv)
  except AttributeError as e:
    text = str(e)
    found = re.search(r"[A-Za-z_]\w*", text)
    field = found.group(0) if found else text
    given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and field in a.split("=")[0]]
    hint = re.search(r'Did you mean "([^"]+)"', text)
    sys.exit(
      f"error: {given[0] if given else '--config'}: the config has no field {field!r}"
      + (f"; did you mean {hint.group(1)!r}?" if hint else " (see configs/default.py for the fields)")
    )


def run():
  """The console script `bdirnet` and main.py."""
  main_module = sys.modules["__main__"]
  if not main_module.__doc__:  # the console script's wrapper has none: --help shows this module's usage
    main_module.__doc__ = __doc__
  command_line.quiet_native_logs()
  _define_flags()
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
