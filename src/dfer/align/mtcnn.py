"""MTCNN (facenet-pytorch): the no-download detector for real faces; its weights ship inside the PyPI package.

S4D (notes §4) aligns MAFW with MTCNN crop + eye alignment, which is what ``dfer align`` does with it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dfer.align.detectors import Detection, FaceDetector, check_frame, register_detector


class MTCNNDetector(FaceDetector):
    name = "mtcnn"

    def __init__(self, device: str = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), score_threshold: float = 0.9):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:  # pragma: no cover - facenet-pytorch is a project dependency
            raise ImportError("the mtcnn detector needs facenet-pytorch: `pip install facenet-pytorch`") from exc
        self.model = MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                           thresholds=list(thresholds), post_process=False, select_largest=False)
        self.min_face_size, self.thresholds = min_face_size, list(thresholds)
        self.score_threshold = score_threshold

    def describe(self) -> dict:
        return {"name": self.name, "min_face_size": self.min_face_size, "thresholds": self.thresholds,
                "score_threshold": self.score_threshold}

    def _convert(self, boxes, probs, points) -> list[Detection]:
        if boxes is None:
            return []
        dets = [Detection(np.asarray(b, np.float32), float(p), np.asarray(l, np.float32))
                for b, p, l in zip(boxes, probs, points) if p is not None and p >= self.score_threshold]
        return sorted(dets, key=lambda d: -d.score)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        boxes, probs, points = self.model.detect(check_frame(rgb), landmarks=True)
        return self._convert(boxes, probs, points)

    def detect_batch(self, frames) -> list[list[Detection]]:
        frames = [check_frame(f) for f in frames]
        if not frames:
            return []
        if len({f.shape for f in frames}) > 1:  # MTCNN batches only equal-size frames
            return [self.detect(f) for f in frames]
        boxes, probs, points = self.model.detect(np.stack(frames), landmarks=True)
        return [self._convert(b, p, l) for b, p, l in zip(boxes, probs, points)]


@register_detector("mtcnn")
def _build(weights=None, device: str = "cpu", **options) -> MTCNNDetector:
    if weights is not None:
        raise ValueError("mtcnn uses the weights shipped in facenet-pytorch; do not pass --weights")
    return MTCNNDetector(device=device, **options)
