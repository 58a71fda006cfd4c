"""A whole reproducibility study in one command (bdirnet_jax.study): configs x training blur families x seeds,
fixed test sets, classical baselines, paired bootstrap intervals and a report.

  python -m bdirnet_jax.study --study=configs/studies/NAME.py --output=DIR [--data_dir=D] [--report_only]
    [--study.FIELD=VALUE]

docs/STUDY.md describes the studies and their results.
"""

from absl import flags

from bdirnet_jax.study import cli

if __name__ == "__main__":
  cli.define_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the study's flags, defined in cli
  cli.run()
