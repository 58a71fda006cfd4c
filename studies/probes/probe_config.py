"""Recipe probe: the study's run config without its (test-set) evaluation; the recipe comes from flags."""

from configs import default


def get_config():
  config = default.get_config()
  config.eval_datasets = []
  return config
