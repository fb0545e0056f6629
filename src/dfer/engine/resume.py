"""Atomic writes and the resume checkpoint (model, optimizer, scaler, schedule position, RNG states, SDL).

Every file the engine writes goes to a temp file in the same folder first and is moved in place with
``os.replace``, so a job killed at any moment leaves either the old file or the new one, never half a file.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

RESUME_DIR = "resume"
RESUME_FILE = "checkpoint.pt"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---- RNG state --------------------------------------------------------------------------------------
def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # another GPU count than when saved: CUDA streams restart
            pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- resume checkpoint ------------------------------------------------------------------------------
def finished(out: str | os.PathLike, key: str, expected: str, what: str, fix: str) -> bool:
    """Whether ``out/done.json`` marks a finished job whose ``key`` is ``expected`` (a re-run is then a no-op);
    an error naming both hashes when the folder holds another job's result (``what``: whose, ``fix``: what to do),
    so that a finished result is never overwritten by a job of other settings."""
    from dfer.config import ConfigError

    done = Path(out) / "done.json"
    if not done.is_file():
        return False
    try:
        found = json.loads(done.read_text()).get(key)
    except ValueError:
        return False
    if found != expected:
        raise ConfigError(f"{out}: holds {what} {found}, not {expected}; {fix}")
    return True


def resume_path(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / RESUME_DIR / RESUME_FILE


def save_resume(path: str | os.PathLike, state: dict) -> None:
    """``state``: plain dict of tensors/python objects; written atomically."""
    torch_save(state, path)


def load_resume(path: str | os.PathLike) -> dict | None:
    """The resume state, or None when there is none. An unreadable file (e.g. a disk-full write that still
    got renamed) is reported and ignored: the run restarts from scratch rather than crashing forever."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        # Our own file (RNG states hold numpy arrays and tuples): full unpickling.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: {path}: unreadable resume checkpoint ({type(exc).__name__}: {exc}); starting over")
        return None
