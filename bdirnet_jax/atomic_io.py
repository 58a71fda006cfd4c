"""Atomic file writes: a reader (a resumed study, a report over DIR/eval, a restore) never sees half a file."""

import json
import os

from etils import epath


def write_text(path, text: str) -> None:
  """Writes `text` to a sibling temporary file, then renames it over `path` (atomic on one filesystem)."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def write_json(path, obj, **dumps_kwargs) -> None:
  """`json.dumps(obj, **dumps_kwargs)` written atomically (`write_text`)."""
  write_text(path, json.dumps(obj, **dumps_kwargs))
