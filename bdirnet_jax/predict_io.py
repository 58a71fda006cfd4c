"""--mode=predict's files: which ones (folder walk, one output per input), reading and writing them beside the
network on a small thread pool, the progress bar and the final report.

The network side, batching by shape bucket and tiling, is `predict.Predictor`; it only sees pixel arrays. Reads run
two images ahead and writes up to four behind, so decoding and encoding overlap the device.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import os
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


LISTED = 10  # names listed in a message before "and N more"


class PlanError(ValueError):
  """A request predict refuses before loading the model: a missing input, an output over an input, outputs that
  already exist (without --overwrite)."""


@dataclasses.dataclass
class Plan:
  jobs: list[tuple[Path, Path]]  # (input file, output PNG), in reading order
  skipped: list[tuple[Path, str]]  # images found but not deblurred: (path, reason)
  unlisted: list[tuple[Path, str]]  # (path, reason): folders (or entries) that could not be listed
  unsupported: list[Path]  # other files in the input folder, ignored
  output: Path  # the output folder, or the output file for one input and --output=NAME.png
  to_file: bool = False


def _listing(paths) -> str:
  paths = list(paths)
  shown = "".join(f"\n  {p}" for p in paths[:LISTED])
  return shown + (f"\n  ... and {len(paths) - LISTED} more" if len(paths) > LISTED else "")


def _output_names(files: list[Path], root: Path, output_dir: Path, keep_ext: bool) -> list[tuple[Path, Path]]:
  """OUTPUT/<relative path>.png per input; inputs sharing a stem in one folder (img.bmp, img.tif) keep their
  extension in the name (img.bmp.png, img.tif.png), so none of them is lost. keep_ext: every input does."""
  stems = collections.Counter(f.relative_to(root).with_suffix("") for f in files)
  jobs = []
  for f in files:
    rel = f.relative_to(root)
    name = rel.name if keep_ext or stems[rel.with_suffix("")] > 1 else rel.stem
    jobs.append((f, output_dir / rel.parent / (name + ".png")))
  return jobs


def plan(input_path, output, *, keep_ext: bool = False, overwrite: bool = False) -> Plan:
  """The files to deblur: `input_path` itself, or every image under it, each to OUTPUT/<relative path>.png.

  For a single input file, an `output` ending in .png (and not an existing folder) is the output file itself.
  Raises PlanError, before anything is read, for a missing input, for an output that would replace an input, and
  for outputs that already exist unless `overwrite`.
  """
  input_path, output = Path(input_path), Path(output)
  if not input_path.exists():
    raise PlanError(f"--input={input_path} does not exist")
  names_file = output.suffix.lower() in image_io.EXTENSIONS and not output.is_dir()
  skipped: list[tuple[Path, str]] = []
  unlisted: list[tuple[Path, str]] = []
  unsupported: list[Path] = []
  if input_path.is_dir():
    if names_file:
      raise PlanError(f"--output={output} names an image file, but --input={input_path} is a folder: pass a folder")
    if output.resolve() == input_path.resolve():
      raise PlanError(f"--output={output} is the input folder: the outputs would replace the inputs; pass another")
    files, unlisted = image_io.find_images(input_path, exclude=output, others=unsupported)
    jobs = _output_names(files, input_path, output, keep_ext)
    to_file = False
  else:
    files = [input_path]
    to_file = names_file
    if to_file and output.suffix.lower() != ".png":
      raise PlanError(f"--output={output}: predict writes PNG; name a .png file or a folder")
    name = input_path.name if keep_ext else input_path.stem
    jobs = [(input_path, output if to_file else output / (name + ".png"))]
  if output.exists() and not output.is_dir() and not to_file:
    raise PlanError(f"--output={output} is a file, not a folder")
  # Two outputs still one name (x.png.png from x.png beside x.jpg, and from an input named x.png.png): keep one.
  owners: dict[Path, Path] = {}
  unique = []
  for src, dst in jobs:
    if dst in owners:
      skipped.append((src, f"skipped: its output {dst} is also the output of {owners[dst]}"))
    else:
      owners[dst] = src
      unique.append((src, dst))
  inputs = {f.resolve(): f for f in files}
  for src, dst in unique:
    if dst.resolve() in inputs:
      raise PlanError(f"--output={output}: the output {dst} would replace the input {inputs[dst.resolve()]}")
  existing = [dst for _, dst in unique if os.path.lexists(dst)]
  if existing and not overwrite:
    raise PlanError(
      f"{len(existing)} output(s) already exist; pass --overwrite to replace them (or choose another --output):"
      + _listing(existing)
    )
  return Plan(unique, skipped, unlisted, unsupported, output, to_file)


def deblur_files(
  predictor: Deblurrer,
  input_path,
  output_dir,
  *,
  shard: tuple[int, int] = (0, 1),
  keep_raw_orientation: bool = False,
  keep_ext: bool = False,
  overwrite: bool = False,
  work: Plan | None = None,
) -> int:
  """Deblurs a file or a folder tree into `output_dir` as PNGs; returns the exit status (1 if anything failed).

  Outputs keep the input's ICC profile; see image_io for orientation (keep_raw_orientation: stored pixels, and
  the orientation written as a tag). `work`: an already made plan (predict makes it before loading the model).
  `shard=(i, n)`: this process takes every n-th file from the i-th (multi-process runs split the work).
  """
  if work is None:
    try:
      work = plan(input_path, output_dir, keep_ext=keep_ext, overwrite=overwrite)
    except PlanError as e:
      logging.error("predict: %s", e)
      return 1
  jobs = work.jobs[shard[0] :: shard[1]]
  skipped = work.skipped if shard[0] == 0 else []  # reported once
  failures: list[tuple[Path, str]] = []
  if not work.jobs and not work.skipped and not work.unlisted:
    logging.error(
      "predict: no %s images found under %s%s",
      "/".join(image_io.EXTENSIONS),
      input_path,
      f" ({len(work.unsupported)} other file(s))" if work.unsupported else "",
    )
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

  return _report(work, jobs, written, failures, skipped, shard)


def _report(work: Plan, jobs, written: int, failures, skipped, shard) -> int:
  """The summary: found = written + failed + skipped, then what else was ignored, ending with the output path."""
  found = len(jobs) + len(skipped)
  problems = failures + skipped + (work.unlisted if shard[0] == 0 else [])
  if problems:
    logging.error("predict: not written:%s", "".join(f"\n  {path}: {reason}" for path, reason in problems))
  if work.unsupported and shard[0] == 0:
    logging.warning(
      "predict: %d file(s) ignored, not %s images:%s",
      len(work.unsupported),
      "/".join(e.lstrip(".") for e in image_io.EXTENSIONS),
      _listing(work.unsupported),
    )
  where = f"{'process %d: ' % shard[0] if shard[1] > 1 else ''}{found} image(s) found: {written} written, "
  where += f"{len(failures)} failed, {len(skipped)} skipped"
  (logging.error if problems else logging.info)("predict: %s; output: %s", where, work.output)
  return 1 if problems else 0
