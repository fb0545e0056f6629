"""The one way src/dfer writes an output file: to a temp file in the same folder, moved in place with
``os.replace`` (atomic on one file system). A job killed at any moment (Ctrl-C, a cluster time limit, a full
disk) thus leaves the old file or the new one, never half a file, and Snakemake / DVC / a resumed run can trust
every file that exists. Also the sha256 of a file (checkpoints and weights are identified by it).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``path`` (its folder is created; the writer creates the file, so it gets the
    usual permissions); on success it replaces ``path``, on error it is removed. The temp name ends in ``.tmp``:
    give writers that guess the format from the name (savefig, np.save) the format or an open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))  # unique per writer
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str, *, if_changed: bool = False) -> bool:
    """Write ``text`` atomically. ``if_changed``: leave a file that already holds ``text`` alone (its mtime too,
    so a no-op re-run looks like one); returns whether the file was written."""
    if if_changed and Path(path).is_file() and Path(path).read_text() == text:
        return False
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return True


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
               end: str = "\n", if_changed: bool = False) -> bool:
    """``json.dumps(obj, indent, sort_keys) + end`` written atomically (numpy scalars/arrays and paths become
    JSON numbers/lists/strings); see :func:`write_text`."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default) + end,
                      if_changed=if_changed)


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """One JSON object per line, written atomically."""
    write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
