"""Study configs for `python -m bdirnet_jax.study --study=configs/studies/NAME.py --output=DIR`."""
