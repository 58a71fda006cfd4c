"""Entry point: python main.py --mode=train|evaluate|predict|export ...; see bdirnet_jax/main.py."""

from bdirnet_jax import main as entry_point  # the implementation; also the installed console script `bdirnet`

__doc__ = entry_point.__doc__  # absl prints the __main__ module's docstring as the usage text

if __name__ == "__main__":
  entry_point.run()
