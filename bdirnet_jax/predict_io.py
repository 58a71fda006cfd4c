"""--mode=predict's files: which ones (folder walk, one output per input), reading and writing them beside the
network on a small thread pool, the progress bar and the final report.

The network side, batching by shape bucket and tiling, is `predict.Predictor`; it only sees pixel arrays. Reads run
two images ahead and writes up to four behind, so decoding and encoding overlap the device.
"""

import collections
import concurrent.futures
import dataclasses
import functools
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Protocol

from absl import logging
from tqdm import tqdm

from bdirnet_jax import image_io

READ_AHEAD = 2
WRITE_BEHIND = 4


class Deblurrer(Protocol):
  """What deblur_files needs of predict.Predictor."""

  def submit(self, pixels, done: Callable[[Any], None], name: str = "image") -> None: ...

  def finish(self) -> None: ...


@dataclasses.dataclass
class Plan:
  jobs: list[tuple[Path, Path]]  # (input file, output PNG), in reading order
  failures: list[tuple[Path, str]]  # (path, reason): unlistable folders, inputs whose output another one claims


def plan(input_path, output_dir, *, shard: tuple[int, int] = (0, 1)) -> Plan:
  """The files to deblur: `input_path` itself, or every image under it, each to OUTPUT/<relative path>.png.

  Two inputs with one output (x.png and x.jpg) keep the first and report the second. `shard=(i, n)`: this process
  takes every n-th file from the i-th (multi-process runs split the work). Raises FileNotFoundError.
  """
  input_path, output_dir = Path(input_path), Path(output_dir)
  failures: list[tuple[Path, str]] = []
  if input_path.is_dir():
    files, failures = image_io.find_images(input_path, exclude=output_dir)
    jobs = [(f, output_dir / f.relative_to(input_path).with_suffix(".png")) for f in files]
  elif input_path.exists():
    jobs = [(input_path, output_dir / (input_path.stem + ".png"))]
  else:
    raise FileNotFoundError(f"--input={input_path} does not exist")
  owners: dict[Path, Path] = {}
  unique = []
  for src, dst in jobs:
    if dst in owners:
      failures.append((src, f"skipped: its output {dst} is also the output of {owners[dst]} (same stem)"))
    else:
      owners[dst] = src
      unique.append((src, dst))
  return Plan(unique[shard[0] :: shard[1]], failures)


def deblur_files(
  predictor: Deblurrer, input_path, output_dir, *, shard: tuple[int, int] = (0, 1), keep_raw_orientation: bool = False
) -> int:
  """Deblurs a file or a folder tree into `output_dir` as PNGs; returns the exit status (1 if anything failed).

  Outputs keep the input's ICC profile; see image_io for orientation (keep_raw_orientation: stored pixels, and
  the orientation written as a tag).
  """
  try:
    work = plan(input_path, output_dir, shard=shard)
  except FileNotFoundError as e:
    logging.error("predict: %s", e)
    return 1
  jobs, failures = work.jobs, work.failures
  if not jobs and not failures:
    logging.error("predict: no %s images found under %s", "/".join(image_io.EXTENSIONS), input_path)
    return 1

  read = functools.partial(image_io.read_image, keep_raw_orientation=keep_raw_orientation)
  written = 0
  with (
    concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool,
    tqdm(total=len(jobs), unit="image", desc="predict", disable=None) as bar,
  ):
    writes: collections.deque = collections.deque()

    def fail(src, reason):
      failures.append((src, reason))
      bar.update(1)

    def drain(limit: int):
      nonlocal written
      while len(writes) > limit:
        src, future = writes.popleft()
        try:
          future.result()
          written += 1
        except Exception as e:  # pylint: disable=broad-except
          failures.append((src, f"could not write the output: {e}"))
        bar.update(1)

    def done(src, dst, metadata, result):
      if isinstance(result, Exception):
        fail(src, f"deblurring failed: {type(result).__name__}: {result}")
        return
      writes.append((src, pool.submit(image_io.write_png, dst, result, **metadata)))
      drain(limit=WRITE_BEHIND)

    reads = collections.deque()
    for i, (src, dst) in enumerate(jobs):
      while len(reads) < READ_AHEAD and i + len(reads) < len(jobs):
        reads.append(pool.submit(read, jobs[i + len(reads)][0]))
      future = reads.popleft()
      try:
        image = future.result()
      except image_io.ImageReadError as e:
        fail(src, e.reason)
        continue
      except Exception as e:  # pylint: disable=broad-except  (OSError, decoder errors: report and go on)
        fail(src, f"cannot read: {type(e).__name__}: {e}")
        continue
      if image.note:
        logging.info("predict: %s: %s", src, image.note)
      # Raw pixels keep their orientation as a tag, so viewers still show them upright.
      metadata = dict(icc_profile=image.icc_profile, orientation=1 if image.oriented else image.orientation)
      predictor.submit(image.pixels, functools.partial(done, src, dst, metadata), name=str(src))
    predictor.finish()
    drain(limit=0)

  if failures:
    lines = "\n".join(f"  {path}: {reason}" for path, reason in failures)
    logging.error(
      "predict: %d of %d image(s) written to %s; %d failed:\n%s", written, len(jobs), output_dir, len(failures), lines
    )
    return 1
  logging.info("predict: %d image(s) written to %s", written, output_dir)
  return 0
