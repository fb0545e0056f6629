"""``Generic``: unlabelled non-face images, the synthetic stand-in for ImageNet-1K (MAE-ImageNet1K pre-training).

Each image is a random scene: a background (linear / radial gradient, sine grating, checkerboard, plaid or
smooth colour noise), 3-12 objects (circles, ellipses, rectangles, rotated boxes, polygons, stars, rings,
thick curves) filled with a flat colour, a gradient or a texture, some with an outline, then small clutter
(dots, short strokes) and camera effects (lighting gradient, blur, sensor noise). No faces: nothing here
draws one, and the ground truth records ``box: null, landmarks: null`` with the list of drawn objects.

Layout (``<out>/Generic/``): ``images/<5-digit id>.jpg`` (JPEG as ImageNet; PNGs of these noisy scenes are 5x
larger), ``images.txt`` (one path per line, relative to the
folder), ``_groundtruth/<id>.json`` (background kind, objects with kind / bbox / fill), ``manifest.json``.
Item ``i`` draws from its own seeded RNG: same seed and settings = identical files.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BACKGROUNDS = ("linear_gradient", "radial_gradient", "grating", "checker", "plaid", "colour_noise")
SHAPES = ("circle", "ellipse", "rectangle", "rotated_box", "polygon", "star", "ring", "curve")
FILLS = ("flat", "gradient", "texture")
DATASET = "Generic"
LIST_FILE = "images.txt"


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """A float32 ``[h, w, 3]`` background/texture of one of ``BACKGROUNDS``."""
    kind = kind or str(rng.choice(BACKGROUNDS))
    c0, c1 = _colour(rng), _colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "linear_gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a)) + 0.5
    elif kind == "radial_gradient":
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 1.0) * max(h, w)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
    elif kind == "grating":
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 0.5 * max(h, w))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period + rng.uniform(0, 6.3))
    elif kind == "checker":
        s = rng.uniform(4, 0.3 * max(h, w))
        a = rng.uniform(0, np.pi / 2)
        u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
        t = ((np.floor(u / s) + np.floor(v / s)) % 2).astype(np.float32)
    elif kind == "plaid":
        p1, p2 = rng.uniform(5, 0.4 * max(h, w), 2)
        t = 0.25 * (2 + np.sin(2 * np.pi * xx / p1) + np.sin(2 * np.pi * yy / p2))
    elif kind == "colour_noise":
        gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        small = rng.uniform(0, 255, (gh, gw, 3)).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255), kind
    else:
        raise KeyError(f"unknown background {kind!r}; known: {BACKGROUNDS}")
    t = np.clip(t, 0, 1)[..., None]
    return c0 * (1 - t) + c1 * t, kind


def _shape_mask(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """uint8 ``[h, w]`` mask (255 inside) of one random shape of ``kind``."""
    m = np.zeros((h, w), np.uint8)
    s = float(np.exp(rng.uniform(np.log(0.06), np.log(0.6)))) * min(h, w)   # size, log-uniform
    cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
    c = (int(cx), int(cy))
    if kind == "circle":
        cv2.circle(m, c, max(int(s / 2), 1), 255, -1, cv2.LINE_AA)
    elif kind == "ellipse":
        axes = (max(int(s / 2), 1), max(int(s / 2 * rng.uniform(0.2, 0.9)), 1))
        cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind in ("rectangle", "rotated_box"):
        bw, bh = s, s * rng.uniform(0.25, 1.5)
        angle = 0.0 if kind == "rectangle" else float(rng.uniform(0, 180))
        box = cv2.boxPoints(((cx, cy), (bw, bh), angle))
        cv2.fillPoly(m, [np.round(box).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == "polygon":
        k = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = s / 2 * rng.uniform(0.5, 1.0, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == "star":
        k = int(rng.integers(4, 9))
        ang = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False) + rng.uniform(0, np.pi)
        rad = np.where(np.arange(2 * k) % 2 == 0, s / 2, s / 2 * rng.uniform(0.3, 0.6))
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(m, c, max(int(s / 2), 2), 255, max(int(s * rng.uniform(0.08, 0.25)), 1), cv2.LINE_AA)
    elif kind == "curve":
        t = np.linspace(0, 1, 24)[:, None]
        p = np.array([cx, cy]) + rng.normal(0, s / 2, (3, 2))
        pts = (1 - t) ** 2 * p[0] + 2 * t * (1 - t) * p[1] + t ** 2 * p[2]   # quadratic Bezier
        cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 255, max(int(s * rng.uniform(0.04, 0.15)), 1),
                      cv2.LINE_AA)
    else:
        raise KeyError(f"unknown shape {kind!r}; known: {SHAPES}")
    return m


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def render_generic(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    """One scene ``uint8 [h, w, 3]`` RGB and its ground truth (background, objects, clutter, camera)."""
    img, bg_kind = _texture(rng, h, w)
    objects = []
    for _ in range(int(rng.integers(3, 13))):
        kind = str(rng.choice(SHAPES))
        mask = _shape_mask(rng, h, w, kind)
        box = _bbox(mask)
        if box is None:  # fully outside the image
            continue
        fill = str(rng.choice(FILLS, p=[0.45, 0.25, 0.30]))
        if fill == "flat":
            paint = np.broadcast_to(_colour(rng), (h, w, 3))
        elif fill == "gradient":
            paint, _ = _texture(rng, h, w, "linear_gradient")
        else:
            paint, _ = _texture(rng, h, w, str(rng.choice(("grating", "checker", "plaid", "colour_noise"))))
        alpha = (mask.astype(np.float32) / 255.0)[..., None] * float(rng.uniform(0.7, 1.0))
        img = img * (1 - alpha) + paint * alpha
        if rng.random() < 0.3:  # outline
            edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            img[edge > 0] = _colour(rng)
        objects.append({"kind": kind, "bbox": box, "fill": fill})
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    n_clutter = int(rng.integers(0, 25))
    for _ in range(n_clutter):
        col = tuple(float(v) for v in _colour(rng))
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(1, 4)), col, -1, cv2.LINE_AA)
        else:
            d = rng.normal(0, 0.06 * max(h, w), 2)
            cv2.line(img, (x, y), (int(x + d[0]), int(y + d[1])), col, 1, cv2.LINE_AA)
    f = img.astype(np.float32)
    light = float(rng.uniform(0, 0.4))
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f *= (1 + light * ((xx / w - 0.5) * np.cos(a) + (yy / h - 0.5) * np.sin(a)))[..., None]
    blur = float(rng.uniform(0, 1.2))
    if blur > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    noise = float(rng.uniform(0, 6))
    f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(noise)
    out = np.clip(f, 0, 255).astype(np.uint8)
    record = {"background": bg_kind, "objects": objects, "clutter": n_clutter,
              "camera": {"light": round(light, 3), "blur": round(blur, 3), "noise": round(noise, 3)}}
    return out, record


def write_generic(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    """Writer of the ``Generic`` folder (signature of ``dfer.data.synth.writers``; ``diff`` is unused: the
    difficulty knobs are about faces and clips)."""
    from dfer.data.synth.writers import _n, _quality, item_rng, write_image_groundtruth, write_jpg, write_lines

    n = _n(cfg, "images", cfg["scale"], 8)
    lo, hi = cfg["size"]
    gt_dir = tmp / "_groundtruth"
    lines, counts = [], {k: 0 for k in BACKGROUNDS}
    for i in progress(range(n), desc=DATASET):
        r_ = item_rng(seed, DATASET, i)
        w, h = int(r_.integers(lo, hi + 1)), int(r_.integers(lo, hi + 1))
        img, rec = render_generic(r_, h, w)
        item = f"{i:05d}"
        write_jpg(tmp / "images" / f"{item}.jpg", img, _quality(r_))
        lines.append(f"images/{item}.jpg")
        counts[rec["background"]] += 1
        write_image_groundtruth(gt_dir, item, None, None, None, None, rec)
    write_lines(tmp / LIST_FILE, lines)
    return {"items": n, "counts": {"images": counts}, "label_noise": 0.0}
