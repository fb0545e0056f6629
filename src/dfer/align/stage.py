"""`dfer align`: detect, crop and align the face of every frame of a video dataset (MAFW given as raw clips).

Per clip: a detector runs on every frame; the main face is the largest*most confident detection, kept
temporally consistent (each frame prefers a detection overlapping the previous choice, starting from the
clip's most salient face); frames without a detection take their box from the neighbours (linear
interpolation) and are listed in the report; boxes (and eye-line angles) are smoothed over time; each frame
is cropped to a square of side ``max(w, h) * (1 + margin)`` around the box centre, rotated so the eye line is
horizontal when 5 landmarks are available, and resized to ``size``.

Output (``--out``, the S2D ``frames_crop_align_224`` layout):
``<out>/<id>/<k:05d>.png`` (k = the video frame index), ``<out>/_reports/<id>.json`` (frames, faces_found,
frames_without_face, mean score, chosen boxes, detection quality when ground truth exists) and
``<out>/summary.json``. A clip is skipped when its frames and report exist for the same settings; each clip
is written to a temporary folder and renamed into place, so a killed run never leaves a half clip.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from dfer.align import quality
from dfer.align.detectors import Detection, FaceDetector, build_detector, detector_from_checkpoint, list_detectors
from dfer.cli import add_params_args, command_parser, stage_params
from dfer.data.errors import DataError
from dfer.io import write_json

REPORTS = "_reports"


# ------------------------------------------------------------------------------ per-clip geometry
def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N,4] with every box of ``b`` [M,4] (xyxy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def select_main_faces(per_frame: Sequence[Sequence[Detection]]) -> list[Detection | None]:
    """One detection (or None) per frame: the clip's main face, followed through time.

    The anchor is the frame-best detection (largest area * score) weighted by how many frames have a
    detection overlapping it, so a face seen throughout wins over a large one-frame false positive; from
    the anchor, each frame takes the most salient detection overlapping the previous choice (any when none
    overlaps)."""
    def salience(d: Detection) -> float:
        x0, y0, x1, y1 = d.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0) * d.score

    chosen: list[Detection | None] = [None] * len(per_frame)
    best = [max(dets, key=salience) if dets else None for dets in per_frame]
    found = [i for i, d in enumerate(best) if d is not None]
    if not found:
        return chosen
    all_boxes = np.stack([d.box for dets in per_frame for d in dets]).astype(np.float64)
    frame_of = np.array([i for i, dets in enumerate(per_frame) for _ in dets])
    hits = _iou_matrix(np.stack([best[i].box for i in found]).astype(np.float64), all_boxes) > 0.3
    support = np.array([len(np.unique(frame_of[row])) for row in hits])
    anchor = found[int(np.argmax(support * np.array([salience(best[i]) for i in found])))]
    chosen[anchor] = best[anchor]
    for order in (range(anchor + 1, len(per_frame)), range(anchor - 1, -1, -1)):
        prev = best[anchor]
        for i in order:
            dets = per_frame[i]
            if not dets:
                continue
            near = [d for d in dets if quality.box_iou(d.box, prev.box) > 0.1]
            chosen[i] = max(near or dets, key=salience)
            prev = chosen[i]
    return chosen


def _fill(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN rows (nearest value at the ends)."""
    out = values.copy()
    t = np.arange(len(values))
    for c in range(values.shape[1]):
        ok = ~np.isnan(values[:, c])
        if ok.any():
            out[:, c] = np.interp(t, t[ok], values[ok, c])
    return out


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (edge-padded) over time; window <= 1 leaves values as they are."""
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])], 1)


def eye_angle(landmarks: np.ndarray | None) -> float:
    """Angle (degrees) of the line from the left to the right eye; 0 = level."""
    if landmarks is None:
        return float("nan")
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def track(chosen: Sequence[Detection | None], frame_hw: tuple[int, int], smooth: int,
          eye_align: bool) -> tuple[np.ndarray, np.ndarray]:
    """Filled and smoothed (cx, cy, side) per frame and eye angles (0 without landmarks)."""
    n = len(chosen)
    geo = np.full((n, 3), np.nan)
    ang = np.full((n, 1), np.nan)
    for i, d in enumerate(chosen):
        if d is not None:
            x0, y0, x1, y1 = d.box
            geo[i] = [(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)]
            if eye_align:
                ang[i] = eye_angle(d.landmarks)
    if np.isnan(geo[:, 0]).all():   # no face anywhere: the centred square of the frame
        h, w = frame_hw
        geo[:] = [w / 2, h / 2, min(h, w)]
    if np.isnan(ang[:, 0]).all():
        ang[:] = 0.0
    return _smooth(_fill(geo), smooth), _smooth(_fill(ang), smooth)[:, 0]


def crop_align(frame: np.ndarray, cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """Square crop of ``side`` px centred at (cx, cy), rotated by ``angle`` degrees (levels the eyes),
    resized to ``size``; outside the frame is filled by replicating the border."""
    import cv2

    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), size / float(side))
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def align_frames(frames: np.ndarray, detector: FaceDetector, settings: dict) -> tuple[np.ndarray, dict]:
    """Aligned ``uint8[T,size,size,3]`` frames and the clip's report fields (``settings``: params.yaml
    ``align``: size, margin, smooth, eye_align, batch_size)."""
    st = settings
    per_frame: list[list[Detection]] = []
    bs = max(1, int(st["batch_size"]))
    for s in range(0, len(frames), bs):
        per_frame += detector.detect_batch(list(frames[s:s + bs]))
    chosen = select_main_faces(per_frame)
    geo, ang = track(chosen, frames.shape[1:3], int(st["smooth"]), bool(st["eye_align"]))
    side = geo[:, 2] * (1 + float(st["margin"]))
    out = np.stack([crop_align(f, geo[i, 0], geo[i, 1], side[i], ang[i], int(st["size"]))
                    for i, f in enumerate(frames)])
    missing = [i for i, d in enumerate(chosen) if d is None]
    scores = [d.score for d in chosen if d is not None]
    info = {"frames": len(frames), "faces_found": len(frames) - len(missing), "frames_without_face": missing,
            "no_face_in_clip": len(missing) == len(frames),
            "mean_score": round(float(np.mean(scores)), 4) if scores else None,
            "detections": [None if d is None else d.to_json() for d in chosen],
            "crops": [[round(float(v), 2) for v in (*geo[i, :2], side[i], ang[i])] for i in range(len(frames))]}
    return out, info


# ------------------------------------------------------------------------------------ dataset I/O
def split_clips(dataset: str, entry: dict, split: str, fold: int | None, base: Path | None = None):
    """(clip id, video path) of one split, from the dataset's split files (videos, not aligned frames)."""
    from dfer.data.annotations import DEFAULT_VIDEOS, load_split

    root = Path(entry["root"])
    if base is not None and not root.is_absolute():
        root = base / root
    videos = entry["videos"] or DEFAULT_VIDEOS.get(dataset)
    if not videos:
        raise DataError(root, f"{dataset} has no `videos` folder to read raw clips from",
                        f"set data.datasets.{dataset}.videos in params.yaml")
    samples = load_split(dataset, root, split, fold, format=entry["format"], frames=None, videos=videos,
                         splits=entry["splits"])
    return root, [(s.id, s.path) for s in samples]


def dataset_clips(dataset: str, entry: dict, base: Path | None = None) -> tuple[Path, list[tuple[str, Path]]]:
    """Every clip of the dataset (union of all folds' train and test split files) as (id, video path)."""
    folds = (entry["folds"] or [1, 2, 3, 4, 5]) if dataset in ("DFEW", "MAFW") else [None]
    seen: dict[str, Path] = {}
    root = Path(entry["root"])
    for fold in folds:
        for split in ("train", "test"):
            root, clips = split_clips(dataset, entry, split, fold, base)
            for clip_id, path in clips:
                seen.setdefault(clip_id, path)
    return root, sorted(seen.items())


def report_path(out: Path, clip_id: str) -> Path:
    return out / REPORTS / f"{clip_id.replace('/', '__')}.json"


def is_done(out: Path, clip_id: str, config: dict) -> dict | None:
    """The existing report when the clip was already aligned with the same settings, else None."""
    rp, folder = report_path(out, clip_id), out / clip_id
    if not (rp.is_file() and folder.is_dir()):
        return None
    try:
        report = json.loads(rp.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if report.get("config") != config or len(list(folder.glob("*.png"))) != report.get("frames"):
        return None
    return report


def write_clip(out: Path, clip_id: str, aligned: np.ndarray) -> None:
    """Frames to a temporary sibling folder, then renamed into place (an old folder is replaced)."""
    import cv2

    final = out / clip_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for k, img in enumerate(aligned):
        if not cv2.imwrite(str(tmp / f"{k:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{tmp / f'{k:05d}.png'}: cannot write the aligned frame (disk full?)")
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def align_dataset(root: Path, clips: Sequence[tuple[str, Path]], out: Path, detector: FaceDetector,
                  settings: dict, held_out: set[str] | None = None, log=print) -> dict:
    """Align every clip (skipping finished ones) and write the reports and ``summary.json``."""
    from tqdm import tqdm

    from dfer.data.video import read_frames

    st = settings
    config = {"detector": detector.describe(),
              **{k: st[k] for k in ("size", "margin", "smooth", "eye_align")}}
    out.mkdir(parents=True, exist_ok=True)
    has_gt = (root / "_groundtruth").is_dir()
    reports, done, skipped = {}, 0, 0
    bar = tqdm(clips, desc="align", unit="clip", mininterval=2.0)
    for clip_id, path in bar:
        report = is_done(out, clip_id, config)
        if report is not None:
            skipped += 1
        else:
            frames = read_frames(path)
            aligned, info = align_frames(frames, detector, st)
            report = {"id": clip_id, "video": str(path), "config": config, **info}
            if has_gt:
                gt = quality.load_groundtruth(root, clip_id)
                if gt is not None:
                    n = min(len(gt["boxes"]), info["frames"])
                    chosen = [None if d is None else d["box"] for d in info["detections"][:n]]
                    report["quality"] = quality.frame_quality(chosen, gt["boxes"][:n])
            write_clip(out, clip_id, aligned)
            write_json(report_path(out, clip_id), report, indent=1, if_changed=True)
            done += 1
        reports[clip_id] = report
        bar.set_postfix(aligned=done, skipped=skipped, refresh=False)
    summary = summarize(reports, config, held_out)
    write_json(out / "summary.json", summary, indent=1, if_changed=True)  # a no-op re-run keeps its mtime
    q = summary.get("detection_quality")
    log(f"aligned {done} clips, skipped {skipped} (already done); frames without a face: "
        f"{summary['frames_without_face']}/{summary['frames']}"
        + (f"; detection vs ground truth: mean IoU {q['mean_iou']}, IoU>=0.5 {q['share_iou_ge_0.5']}" if q else ""))
    return summary


def summarize(reports: dict[str, dict], config: dict, held_out: set[str] | None = None) -> dict:
    rs = list(reports.values())
    summary = {"config": config, "clips": len(rs), "frames": sum(r["frames"] for r in rs),
               "faces_found": sum(r["faces_found"] for r in rs),
               "frames_without_face": sum(len(r["frames_without_face"]) for r in rs),
               "clips_without_any_face": sorted(r["id"] for r in rs if r["no_face_in_clip"]),
               "clips_with_missing_frames": sum(bool(r["frames_without_face"]) for r in rs)}
    with_q = [r for r in rs if "quality" in r]
    if with_q:
        summary["detection_quality"] = quality.summarize(r["quality"] for r in with_q)
        if held_out is not None:  # clips the detector never saw in training
            summary["detection_quality_held_out"] = quality.summarize(
                r["quality"] for r in with_q if r["id"] in held_out)
    return summary


# ---------------------------------------------------------------------------------------------- CLI
def resolve_detector(name_or_path: str | None, weights: str | None, cfg: dict) -> tuple[str, str | None]:
    """``--detector`` may name a registry entry or (as the workflow passes it) a detector checkpoint."""
    det_cfg = cfg["detector"]
    name = name_or_path or det_cfg["name"]
    if name and name not in list_detectors() and (os.sep in name or name.endswith((".pt", ".pth"))):
        weights = weights or name
        name = detector_from_checkpoint(name) or det_cfg["name"]
    if not name:
        raise KeyError(f"no detector given; pass --detector ({list_detectors()}) or set align.detector.name")
    if weights is None and name == det_cfg["name"]:
        weights = det_cfg["weights"]
    return name, weights


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("align", __doc__)
    ap.add_argument("--dataset", required=True, help="video dataset of params.yaml data.datasets (e.g. MAFW)")
    ap.add_argument("--detector", default=None,
                    help=f"detector name ({', '.join(list_detectors())}) or a detector checkpoint path "
                         "(default: align.detector.name)")
    ap.add_argument("--weights", default=None, help="detector weights (default: align.detector.weights)")
    ap.add_argument("--out", default=None, help="output folder (default: align.out with {dataset} filled in)")
    ap.add_argument("--size", type=int, default=None, help="aligned frame side in px (default: align.size)")
    ap.add_argument("--root", default=None, help="dataset root (default: data.datasets.<DATASET>.root)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips (a quick look)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: align.device)")
    add_params_args(ap)
    args = ap.parse_args(argv)
    params, base = stage_params(args)
    cfg = params["align"]
    if args.dataset not in params["data"]["datasets"]:
        raise KeyError(f"unknown dataset {args.dataset!r}; choose one of {sorted(params['data']['datasets'])}")
    entry = dict(params["data"]["datasets"][args.dataset])
    if args.root:
        entry["root"] = args.root
    root, clips = dataset_clips(args.dataset, entry, base)
    if args.limit:
        clips = clips[:args.limit]
    name, weights = resolve_detector(args.detector, args.weights, cfg)
    options = cfg["detector"]["options"].get(name) or {}
    detector = build_detector(name, weights, device=args.device or cfg["device"], **options)
    settings = {k: cfg[k] for k in ("size", "margin", "smooth", "eye_align", "batch_size")}
    if args.size:
        settings["size"] = args.size
    out = Path(args.out or str(cfg["out"]).format(dataset=args.dataset))
    held_out = None
    if getattr(detector, "train_ids", None) is not None:
        held_out = {c for c, _ in clips} - set(detector.train_ids)
    align_dataset(root, clips, out, detector, settings, held_out)
    return 0
