"""Face detectors by name, behind one interface.

=============  ===============================  =================================  ==========
name           model                            weights                            landmarks
=============  ===============================  =================================  ==========
retinaface     RetinaFace (mobilenet0.25/R50)   user path (Pytorch_Retinaface)     5 points
mtcnn          MTCNN (facenet-pytorch)          shipped inside the PyPI package    5 points
synthetic      CenterNet-style small CNN        `dfer train-detector` (model.pt)   5 points
=============  ===============================  =================================  ==========

``build_detector(name, weights=None, device="cpu", **options) -> FaceDetector``; a detector maps an RGB
``uint8[H,W,3]`` frame to a list of :class:`Detection` (pixel ``xyxy`` box, score, 5 landmarks or None),
highest score first. The 5 landmarks are, in order: left eye, right eye, nose tip, left and right mouth
corner (image left/right, the RetinaFace/MTCNN convention).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dfer.registry import Registry


@dataclass(eq=False)  # numpy fields: compare detections by identity
class Detection:
    box: np.ndarray                          # float32[4] x0, y0, x1, y1 in pixels
    score: float
    landmarks: np.ndarray | None = None      # float32[5, 2] or None

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "landmarks": None if self.landmarks is None
                else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]}


class FaceDetector:
    """Base class: subclasses implement ``detect``; ``detect_batch`` batches when the backend can."""

    name: str = "base"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def detect_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[list[Detection]]:
        return [self.detect(f) for f in frames]

    def describe(self) -> dict:
        """What produced the detections (stored in the per-clip reports; a change re-runs the stage)."""
        return {"name": self.name}


def check_frame(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"detectors take RGB uint8[H,W,3] frames, got {rgb.dtype}{list(rgb.shape)}")
    return rgb


def file_digest(path: str | os.PathLike | None, length: int = 12) -> str | None:
    """Short sha256 of a weights file: reports record it, so retrained weights re-run the stage."""
    if path is None or not Path(path).is_file():
        return None
    from dfer.io import file_sha256

    return file_sha256(path)[:length]


def weights_error(path: str | os.PathLike | None, name: str, what: str, fix: str):
    """A wrong/missing checkpoint is the user's to fix: DataError names the file and the fix."""
    from dfer.data.errors import DataError

    return DataError(path if path is not None else f"<{name} weights>", what, fix)


def read_weights(path: str | os.PathLike | None, name: str, what: str, fix: str, weights_only: bool = True):
    """A detector checkpoint (:func:`dfer.models.weights.read_checkpoint`); no path, a missing file or an
    unreadable one raise a DataError naming the file and ``fix`` (``what``: how the message calls the file)."""
    from dfer.models.weights import read_checkpoint

    if path is None:
        raise weights_error(None, name, f"{what} needed and none was given", fix)
    return read_checkpoint(path, trust_pickle=not weights_only, what=what, fix=fix)


# -------------------------------------------------------------------------------------- registry
def _load_builtin() -> None:
    # Importing the modules registers their builders (kept lazy: facenet-pytorch is only needed for mtcnn).
    from dfer.align import mtcnn, retinaface, synthetic_detector  # noqa: F401


DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("face detector", loader=_load_builtin, sort=True)


def register_detector(name: str):
    return DETECTORS.register(name)


def list_detectors() -> list[str]:
    return DETECTORS.names()


def build_detector(name: str, weights: str | os.PathLike | None = None, device: str = "cpu",
                   **options) -> FaceDetector:
    """A ready-to-run detector. ``weights``: local checkpoint (required for retinaface and synthetic)."""
    builder = DETECTORS.get(name)
    if weights is not None:
        weights = Path(weights)
    return builder(weights=weights, device=device, **options)


def detector_from_checkpoint(path: str | os.PathLike) -> str | None:
    """The registry name stored in a dfer detector checkpoint (``{"detector": name, ...}``), else None."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None
    return ckpt.get("detector") if isinstance(ckpt, dict) else None
