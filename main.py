"""Entry point: python main.py --mode=train|evaluate|predict|export --workdir=DIR [--config=configs/NAME.py].

train:    --config required; resumes from DIR/checkpoints.
evaluate: every config.eval_datasets entry at full resolution -> DIR/eval/ (JSON per dataset, report.md, grids);
          --config optional (defaults to DIR/config.json, so eval datasets can be changed by a new config).
predict:  --input=FILE_OR_DIR --output=DIR [--tile=T --tile_overlap=O --bf16 --keep_raw_orientation].
export:   --output=FILE, a jax.export artifact of the inference function.

Config fields are overridden on the command line, e.g. --config.batch_size=16 --config.model.preset=base.
"""
from bdirnet_jax import main as entry_point  # the implementation; also the installed console script `bdirnet`

if __name__ == "__main__":
  entry_point.run()
