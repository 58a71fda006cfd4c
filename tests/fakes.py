"""Small deterministic data for tests: Gaussian-blurred crops of photos shipped with scikit-image."""
import numpy as np
import scipy.ndimage
import skimage.data


def photo_pairs(size=64, sigma=1.5):
  """(blurry, sharp) uint8 pairs from three shipped photos, resized by striding to keep tests fast."""
  pairs = []
  for name in ("astronaut", "coffee", "chelsea"):
    img = getattr(skimage.data, name)()
    img = img[: (img.shape[0] // 4) * 4 : 2, : (img.shape[1] // 4) * 4 : 2]
    blurry = scipy.ndimage.gaussian_filter(img.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    pairs.append((np.clip(np.round(blurry), 0, 255).astype(np.uint8), img))
  return pairs


class PairIterator:
  """Random aligned crops; its whole state is the batch counter, so get/set_state resume exactly."""

  def __init__(self, batch_size, crop, seed=0, size=64):
    self.batch_size, self.crop, self.seed, self.index = batch_size, crop, seed, 0
    self.pairs = photo_pairs(size)

  def __iter__(self):
    return self

  def __next__(self):
    rng = np.random.default_rng([self.seed, self.index])
    self.index += 1
    blurry, sharp = [], []
    for _ in range(self.batch_size):
      b, s = self.pairs[rng.integers(len(self.pairs))]
      y = rng.integers(0, b.shape[0] - self.crop + 1)
      x = rng.integers(0, b.shape[1] - self.crop + 1)
      blurry.append(b[y:y + self.crop, x:x + self.crop])
      sharp.append(s[y:y + self.crop, x:x + self.crop])
    return {"blurry": np.stack(blurry), "sharp": np.stack(sharp)}

  def get_state(self):
    return {"index": self.index}

  def set_state(self, state):
    self.index = int(state["index"])
