"""The resume checkpoint (model, optimizer, scaler, schedule position, RNG states, SDL) and the ``done.json``
check that makes a finished job's re-run a no-op. Files are written with :mod:`dfer.io` (atomically).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from dfer.io import atomic_path

RESUME_DIR = "resume"
RESUME_FILE = "checkpoint.pt"


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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


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
