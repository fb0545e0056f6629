"""A contact sheet per synthetic dataset (``_groundtruth/preview.png``): what a person checks first.

Clip datasets: one row per clip (8 evenly spaced frames), image datasets: a grid; ground-truth landmarks and
boxes drawn in green/red, the annotated / true label (and dynamics) written on the first tile.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

TILE = 96


def _frames(root: Path, dataset: str, item_id: str, gt: dict) -> list[np.ndarray]:
    if dataset in ("DFEW", "FERV39K"):
        base = root / ("Clip/clip_224x224_16f" if dataset == "DFEW" else "2_ClipsforFaceCrop") / item_id
        return [cv2.imread(str(base / f"{k}.jpg"))[..., ::-1] for k in range(1, len(gt["boxes"]) + 1)]
    if dataset == "MAFW":
        import av

        with av.open(str(root / "data" / "clips" / f"{item_id}.mp4")) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    if dataset == "AffectNet":
        return [cv2.imread(str(root / "Manually_Annotated_Images" / item_id))[..., ::-1]]
    if dataset == "RAF-DB":
        return [cv2.imread(str(root / "basic" / "Image" / "aligned" / f"{item_id}_aligned.jpg"))[..., ::-1]]
    if dataset == "Generic":
        return [cv2.imread(str(root / "images" / f"{item_id}.jpg"))[..., ::-1]]
    if dataset in ("VoxCeleb2", "AFEW"):
        import av

        path = root / f"{item_id}.mp4" if dataset == "VoxCeleb2" else root / f"{gt['split']}/{item_id}.avi"
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    raise KeyError(dataset)


def _tile(img: np.ndarray, box, lm, text: str | None) -> np.ndarray:
    h, w = img.shape[:2]
    s = TILE / max(h, w)
    out = np.zeros((TILE, TILE, 3), np.uint8)
    small = cv2.resize(np.ascontiguousarray(img), (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_AREA)
    out[:small.shape[0], :small.shape[1]] = small
    if lm is not None:
        for x, y in np.asarray(lm) * s:
            cv2.circle(out, (int(x), int(y)), 1, (0, 255, 0), -1)
    if box is not None:
        x0, y0, x1, y1 = (np.asarray(box) * s).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 0, 0), 1)
    if text:
        cv2.putText(out, text, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.28, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_preview(root: Path, dataset: str, rows: int = 6, cols: int = 8) -> Path:
    """Write ``<root>/_groundtruth/preview.png`` from the first items (sorted ids) and their ground truth."""
    gt_dir = root / "_groundtruth"
    paths = sorted(p for p in gt_dir.glob("*.json") if p.name != "manifest.json")
    grid = []
    if dataset == "FERPlus":
        pixels = list(csv.reader(open(root / "fer2013" / "fer2013.csv", newline="")))[1:]
    for p in paths[: rows if dataset in ("DFEW", "MAFW", "FERV39K", "VoxCeleb2", "AFEW") else rows * cols]:
        gt = json.loads(p.read_text())
        item_id = p.stem.replace("__", "/")
        if dataset == "FERPlus":
            frames = [np.repeat(np.array(pixels[gt["row"]][1].split(), np.uint8).reshape(48, 48, 1), 3, 2)]
        else:
            frames = _frames(root, dataset, item_id, gt)
        boxes = gt.get("boxes") or [gt.get("box")]
        lms = gt.get("landmarks") if "boxes" in gt else [gt.get("landmarks")]
        text = gt["background"] if dataset == "Generic" else f"{gt.get('label')}/{gt.get('true_label')}"
        if "dynamics" in gt:
            text += f" {gt['dynamics']}"
        picks = np.linspace(0, len(frames) - 1, cols).round().astype(int) if len(frames) > 1 else [0]
        grid += [_tile(frames[k], boxes[k], lms[k], text if j == 0 else None) for j, k in enumerate(picks)]
    while len(grid) % cols:
        grid.append(np.zeros((TILE, TILE, 3), np.uint8))
    sheet = np.concatenate([np.concatenate(grid[i:i + cols], 1) for i in range(0, len(grid), cols)], 0)
    out = gt_dir / "preview.png"
    cv2.imwrite(str(out), sheet[..., ::-1])
    return out
