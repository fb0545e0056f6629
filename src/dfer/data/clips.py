"""One interface for a clip, whether it is a folder of frame images or a video file.

``open_clip(sample)`` -> ``Clip`` with ``len(clip)`` (decodable frames) and ``clip.get(indices)`` ->
``uint8[T,H,W,3]`` RGB. ``read_image(sample)`` does the same for still-image datasets.
"""
from __future__ import annotations

import csv
import os
import re
import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dfer.data import video
from dfer.data.annotations import Sample
from dfer.data.errors import DataError

FRAME_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
IMAGE_FIX = "re-extract or copy this image again, or remove the item from the split file"

cv2.setNumThreads(1)  # DataLoader workers already parallelise; OpenCV threads would oversubscribe


def natural_key(name: str):
    """``frame_2.jpg`` before ``frame_10.jpg`` (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: str | os.PathLike, order: str = "natural") -> list[Path]:
    """Frame files of a folder, sorted naturally or lexicographically (S2D's ``sorted(glob)``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "frame folder not found",
                        "check the dataset root/`frames` entry in params.yaml, or run `dfer align`")
    names = [n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in FRAME_EXTS]
    if not names:
        raise DataError(folder, "frame folder is empty (no .jpg/.png/.bmp files)",
                        "re-extract the frames of this clip or remove it from the split file")
    names.sort(key=natural_key if order == "natural" else None)
    return [folder / n for n in names]


def read_rgb(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as ``uint8[H,W,3]`` RGB (gray replicated), optionally resized to ``size=(H, W)``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found", IMAGE_FIX)
    if path.stat().st_size == 0:
        raise DataError(path, "image file is empty (0 bytes)", IMAGE_FIX)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(path, "unreadable or corrupt image", IMAGE_FIX)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return _resize(img, size)


def _resize(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or img.shape[:2] == tuple(size):
        return img
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class Clip:
    """A clip: ``len(clip)`` frames, ``get(indices, size=None)`` -> ``uint8[T,H,W,3]`` RGB.

    ``size=(H, W)`` resizes every frame on read (the official loader resizes frames to 224x224 first);
    without it frames of different sizes are resized to the first frame's size.
    """

    path: Path

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        raise NotImplementedError

    def _check(self, indices: Sequence[int]) -> list[int]:
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("Clip.get: indices is empty")
        n = len(self)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise DataError(self.path, f"frame index {bad[0]} out of range: the clip has {n} frames",
                            "sample indices from len(clip)")
        return idx


class FrameFolderClip(Clip):
    def __init__(self, folder: str | os.PathLike, order: str = "natural"):
        self.path = Path(folder)
        self.files = list_frames(folder, order)

    def __len__(self) -> int:
        return len(self.files)

    def get(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        idx = self._check(indices)
        decoded = {i: read_rgb(self.files[i], size) for i in dict.fromkeys(idx)}
        first = decoded[idx[0]].shape[:2]
        return np.stack([_resize(decoded[i], first) for i in idx])


class VideoClip(Clip):
    def __init__(self, path: str | os.PathLike, backend: str = "auto"):
        self.path = Path(path)
        self.backend = backend
        self._n = video.count_frames(self.path, backend)

    def __len__(self) -> int:
        return self._n

    def get(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        frames = video.read_frames(self.path, self._check(indices), self.backend, n_frames=self._n)
        if size is not None:
            frames = np.stack([_resize(f, size) for f in frames])
        return frames


def open_clip(sample: Sample, frame_order: str | None = None, backend: str = "auto") -> Clip:
    """Open a clip sample (frame folder or video file) for random frame access."""
    if sample.kind == "frames":
        return FrameFolderClip(sample.path, frame_order or sample.frame_order)
    if sample.kind == "video":
        return VideoClip(sample.path, backend)
    raise ValueError(f"{sample.source}: sample {sample.id!r} is an {sample.kind}, not a clip; use read_image")


# ------------------------------------------------------------------------------------- images
_PIXEL_TABLES: dict[str, list[str]] = {}
_PIXEL_LOCK = threading.Lock()


def _pixel_table(path: Path) -> list[str]:
    """The ``pixels`` column of fer2013.csv, read once per process."""
    key = str(path)
    with _PIXEL_LOCK:
        if key not in _PIXEL_TABLES:
            if not path.is_file():
                raise DataError(path, "FER2013 pixel table not found",
                                "put the Kaggle fer2013.csv at <root>/fer2013/fer2013.csv")
            with open(path, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                if "pixels" not in header:
                    raise DataError(f"{path}:1", f"header {header} has no `pixels` column",
                                    "use the original fer2013.csv (emotion,pixels,Usage)")
                col = header.index("pixels")
                _PIXEL_TABLES[key] = [r[col] if len(r) > col else "" for r in reader]
        return _PIXEL_TABLES[key]


def _ferplus_image(sample: Sample) -> np.ndarray:
    table = _pixel_table(sample.path)
    where = f"{sample.path}:{sample.row + 2}"
    if not 0 <= sample.row < len(table):
        raise DataError(where, f"row {sample.row} of {sample.source} is missing: fer2013.csv has "
                        f"{len(table)} rows", "use the fer2013.csv that fer2013new.csv was made for")
    values = table[sample.row].split()
    if len(values) != 48 * 48 or not all(v.isdigit() for v in values):
        raise DataError(where, f"pixels of {sample.id} are not 2304 integers ({len(values)} values)",
                        "use the original fer2013.csv")
    gray = np.asarray(values, dtype=np.uint8).reshape(48, 48)
    return np.repeat(gray[:, :, None], 3, axis=2)


def read_image(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image sample as ``uint8[H,W,3]`` RGB (FERPlus 48x48 gray replicated to 3 channels)."""
    if sample.kind != "image":
        raise ValueError(f"{sample.source}: sample {sample.id!r} is a {sample.kind} clip; use open_clip")
    if sample.path.suffix.lower() == ".csv":
        return _resize(_ferplus_image(sample), size)
    return read_rgb(sample.path, size)
