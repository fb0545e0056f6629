"""Detection quality against the synthetic ground truth (``<root>/_groundtruth/<id>.json``).

Counted per frame on the detector's raw choice (the main face before smoothing/filling):
- frames whose ground truth has a face: IoU with the chosen box (0 when nothing was detected); the stage
  reports the mean IoU and the share of frames with IoU >= 0.5;
- frames whose ground truth has no face: a correct negative when the detector chose nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

IOU_HIT = 0.5
# 68-point iBUG indices -> the 5 detector landmarks (eye centres, nose tip, mouth corners).
FIVE_FROM_68 = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))


def box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two ``xyxy`` boxes; 0 when either is None or empty."""
    if a is None or b is None:
        return 0.0
    ax0, ay0, ax1, ay1 = map(float, a)
    bx0, by0, bx1, by1 = map(float, b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def five_landmarks(lm68: np.ndarray) -> np.ndarray:
    """float[5,2] detector landmarks from 68 iBUG points (image-left eye first)."""
    lm68 = np.asarray(lm68, np.float32)
    return np.stack([lm68[list(idx)].mean(0) for idx in FIVE_FROM_68]).astype(np.float32)


def groundtruth_path(root: str | os.PathLike, clip_id: str) -> Path:
    return Path(root) / "_groundtruth" / f"{clip_id.replace('/', '__')}.json"


def load_groundtruth(root: str | os.PathLike, clip_id: str) -> dict | None:
    path = groundtruth_path(root, clip_id)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def frame_quality(chosen: Sequence[Sequence[float] | None], gt_boxes: Sequence[Sequence[float] | None]) -> dict:
    """Per-clip counts: chosen boxes (None = no face found) vs ground-truth boxes (None = no face)."""
    if len(chosen) != len(gt_boxes):
        raise ValueError(f"{len(chosen)} detections vs {len(gt_boxes)} ground-truth frames: the video and its "
                         "ground truth disagree on the frame count")
    ious = [box_iou(c, g) for c, g in zip(chosen, gt_boxes) if g is not None]
    negatives = [c is None for c, g in zip(chosen, gt_boxes) if g is None]
    return {"face_frames": len(ious), "iou_sum": float(sum(ious)), "hits": int(sum(i >= IOU_HIT for i in ious)),
            "no_face_frames": len(negatives), "correct_negatives": int(sum(negatives))}


def summarize(counts: Iterable[dict]) -> dict:
    """Dataset numbers from per-clip ``frame_quality`` dicts."""
    keys = ("face_frames", "iou_sum", "hits", "no_face_frames", "correct_negatives")
    tot = {k: 0.0 for k in keys}
    clips = 0
    for c in counts:
        clips += 1
        for k in keys:
            tot[k] += c[k]
    n, neg = int(tot["face_frames"]), int(tot["no_face_frames"])
    return {"clips": clips, "face_frames": n,
            "mean_iou": round(tot["iou_sum"] / n, 4) if n else None,
            "share_iou_ge_0.5": round(tot["hits"] / n, 4) if n else None,
            "no_face_frames": neg, "correct_negatives": int(tot["correct_negatives"]),
            "share_correct_negatives": round(tot["correct_negatives"] / neg, 4) if neg else None}
