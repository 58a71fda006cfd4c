"""The command line as a user meets it: main.py's predict (files kept safe, names, summary, quiet logs), usage
errors and --help, tfds_builders.cli, and the log filter. Each subprocess costs an import of JAX (and a model
load where it runs the network), so the runs are few and each checks several things."""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bdirnet_jax import command_line
from tests import fakes

ROOT = Path(__file__).resolve().parents[1]


def _main(*args, timeout=300):
  env = fakes.subprocess_env(1)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # main.py quiets TensorFlow/XLA itself
  return subprocess.run(
    [sys.executable, "main.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
  )


def _lines(proc):
  return (proc.stdout + proc.stderr).strip().splitlines()


def _no_chatter(proc):
  text = proc.stdout + proc.stderr
  assert "orbax" not in text and "handler" not in text and "oneDNN" not in text, text[-3000:]
  assert "\x1b[" not in text and "\r" not in text, "escape codes in a redirected log"


def _image(path, h, w, seed=0, ext=".png"):
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  photo = fakes.photo_pairs()[0][0][:h, :w, ::-1] if seed == 0 else np.full((h, w, 3), seed, np.uint8)
  assert cv2.imwrite(str(path.with_suffix(ext)), np.ascontiguousarray(photo))
  return path.with_suffix(ext)


def test_help_exits_0_and_usage_errors_give_the_reason_first():
  proc = _main("--help")
  assert proc.returncode == 0 and "--mode" in proc.stdout
  proc = _main("--mode=predict", "--workdir=W")
  assert proc.returncode != 0
  assert proc.stderr.splitlines() == [
    "error: --mode=predict needs --input=FILE_OR_DIR and --output=DIR (or NAME.png)",
    "See main.py --help for the flags.",
  ]
  proc = _main("--no_such_flag=1")
  assert proc.returncode != 0 and proc.stderr.splitlines()[0] == "error: Unknown command line flag 'no_such_flag'"
  assert len(proc.stderr.splitlines()) == 2


def test_predict_refuses_an_output_over_its_inputs_before_loading_the_model(tmp_path):
  a, b = _image(tmp_path / "in/a", 12, 16), _image(tmp_path / "in/b", 12, 16, seed=9, ext=".jpg")
  before = {p: p.read_bytes() for p in (a, b)}
  missing_workdir = tmp_path / "never read"  # loading the model would fail on it: the refusal comes first
  proc = _main(
    "--mode=predict", f"--workdir={missing_workdir}", f"--input={tmp_path / 'in'}", f"--output={tmp_path}/in/"
  )
  assert proc.returncode != 0
  assert _lines(proc) == [
    f"error: --output={tmp_path / 'in'} is the input folder: the outputs would replace the inputs; pass another"
  ]
  proc = _main("--mode=predict", f"--workdir={missing_workdir}", f"--input={a}", f"--output={a}")
  assert proc.returncode != 0 and _lines(proc) == [f"error: --output={a}: the output {a} would replace the input {a}"]
  assert {p: p.read_bytes() for p in (a, b)} == before and sorted(p.name for p in (tmp_path / "in").iterdir()) == [
    "a.png",
    "b.jpg",
  ]


def test_predict_one_image_writes_the_named_png_quietly_and_keeps_it(trained_workdir, tmp_path):
  photo = _image(tmp_path / "in/photo", 40, 52, ext=".jpg")
  out = tmp_path / "results/sharp.png"
  proc = _main("--mode=predict", f"--workdir={trained_workdir}", f"--input={photo}", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert out.is_file() and cv2.imread(str(out)).shape == (40, 52, 3)
  lines = _lines(proc)
  assert len(lines) <= 10, "\n".join(lines)
  _no_chatter(proc)
  assert lines[-1].endswith(f"predict: 1 image(s) found: 1 written, 0 failed, 0 skipped; output: {out}")
  written = out.read_bytes()
  proc = _main("--mode=predict", f"--workdir={trained_workdir}", f"--input={photo}", f"--output={out}")
  assert proc.returncode != 0 and out.read_bytes() == written
  assert _lines(proc) == [
    "error: 1 output(s) already exist; pass --overwrite to replace them (or choose another --output):",
    f"  {out}",
  ]


def test_predict_folder_keeps_every_input_and_its_summary_adds_up(trained_workdir, tmp_path):
  inputs = tmp_path / "in"
  _image(inputs / "img", 24, 20)
  _image(inputs / "img", 24, 20, seed=50, ext=".bmp")
  _image(inputs / "sub/other", 16, 16, seed=90, ext=".jpg")
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  (inputs / "notes.txt").write_text("not an image")
  (inputs / "anim.gif").write_bytes(b"GIF89a")
  out = tmp_path / "out"
  proc = _main("--mode=predict", f"--workdir={trained_workdir}", f"--input={inputs}", f"--output={out}", "--keep_ext")
  assert proc.returncode == 1, proc.stderr[-3000:]
  written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
  assert written == ["img.bmp.png", "img.png.png", "sub/other.jpg.png"]
  lines = _lines(proc)
  _no_chatter(proc)
  assert lines[-1].endswith(f"predict: 4 image(s) found: 3 written, 1 failed, 0 skipped; output: {out}")
  text = "\n".join(lines)
  assert f"{inputs / 'broken.png'}: " in text
  assert "predict: 2 file(s) ignored, not png/" in text and f"  {inputs / 'anim.gif'}\n  {inputs / 'notes.txt'}" in text


def _tfds_cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "tfds_builders.cli", *map(str, args)],
    cwd=ROOT,
    env=fakes.subprocess_env(1),
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_tfds_cli_lists_builders_and_a_bad_manual_dir_leaves_only_the_layout_message(tmp_path):
  import tfds_builders  # pylint: disable=g-import-not-at-top

  proc = _tfds_cli("--help")
  assert proc.returncode == 0
  for name in tfds_builders.BUILDER_NAMES:
    assert f"tfds_builders/{name} " in proc.stdout
  (tmp_path / "empty").mkdir()
  data_dir = tmp_path / "tfds"
  proc = _tfds_cli("build", "tfds_builders/gopro", f"--manual_dir={tmp_path / 'empty'}", f"--data_dir={data_dir}")
  assert proc.returncode != 0
  assert proc.stderr.startswith(f"error: gopro: manual directory {tmp_path / 'empty'} is empty.\n\nExpected layout")
  assert "Traceback" not in proc.stderr and "INFO" not in proc.stderr and not data_dir.exists()
  (tmp_path / "wrong").mkdir()
  (tmp_path / "wrong/readme.txt").write_text("not the dataset")
  (data_dir / "kept").mkdir(parents=True)  # the data dir and what it held survive; the failed build's folders go
  proc = _tfds_cli("build", "tfds_builders/gopro", f"--manual_dir={tmp_path / 'wrong'}", f"--data_dir={data_dir}")
  assert proc.returncode != 0 and "Expected layout" in proc.stderr and "Traceback" not in proc.stderr
  assert sorted(p.name for p in data_dir.iterdir()) == ["kept"]


def test_exports_at_the_root_are_git_ignored():
  if shutil.which("git") is None or not (ROOT / ".git").exists():
    pytest.skip("not a git checkout")
  names = ["model.jax", "model.onnx", "exports/model.jax"]
  proc = subprocess.run(["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.stdout.split() == names


def _record(pathname, level):
  return logging.LogRecord("absl", level, pathname, 1, "message", None, None)


def test_log_filter_keeps_the_projects_lines_and_libraries_warnings():
  keep = command_line.OwnLinesOnly().filter
  own = str(ROOT / "bdirnet_jax" / "predict.py")
  orbax = "/venv/site-packages/orbax/checkpoint/_src/handlers/pytree_checkpoint_handler.py"
  jax_file = "/venv/site-packages/jax/_src/xla_bridge.py"
  assert keep(_record(own, logging.INFO)) and keep(_record(str(ROOT / "main.py"), logging.INFO))
  assert not keep(_record(orbax, logging.INFO)) and not keep(_record(orbax, logging.WARNING))
  assert keep(_record(orbax, logging.ERROR))
  assert not keep(_record(jax_file, logging.INFO)) and keep(_record(jax_file, logging.WARNING))
  # The training loop's report goes through clu's writers: its metric and steps/s lines are the project's output.
  for clu_file in ("clu/metric_writers/logging_writer.py", "clu/platform/local.py"):
    assert keep(_record("/venv/site-packages/" + clu_file, logging.INFO))
  assert not keep(_record("/venv/site-packages/clu/checkpoint.py", logging.INFO))
  assert command_line.verbose_requested(["main.py", "-v", "1"])
  assert command_line.verbose_requested(["main.py", "--verbosity=2"])
  assert not command_line.verbose_requested(["main.py", "--verbosity=0", "--mode=predict"])
