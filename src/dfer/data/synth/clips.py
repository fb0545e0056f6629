"""Plan and render one synthetic clip or image: identity, expression over time, camera, nuisance.

Two framings, as in the real data:
* ``aligned``: the face fills a square crop (DFEW's clip_224x224_16f, FERV39K's face crops, RAF-DB aligned
  images), with small residual jitter of position/scale, like the output of a face aligner;
* ``wild``: the face covers ``face_width`` of a larger frame and drifts / zooms over time (MAFW raw clips,
  AffectNet's uncropped images), so a detector and an aligner have real work to do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfer.data.synth import expressions as ex
from dfer.data.synth.faces import (NUM_POINTS, FrameSpec, Placement, apply_aus, background, face_box, neutral_shape,
                                   project, random_identity, render_frame)

# Difficulty knobs (params.yaml synth.difficulty overrides any of them).
DIFFICULTY = {
    "intensity": [1.0, 1.8],         # apex intensity range (calibrated: see CALIBRATION.md)
    "au_jitter": 0.2,                # log-normal sd of each apex AU
    "idle_au": 0.1,                  # sd of random per-clip AUs (idiosyncratic mimics)
    "resting_ambiguity": 0.15,       # sd of resting mouth-corner / inner-brow offsets
    "pose_sd": [10.0, 6.0, 6.0],     # yaw, pitch, roll (degrees)
    "pose_drift": 1.0,               # per-frame random-walk sd of the head pose (degrees)
    "neutral_stretch": 0.3,          # P(non-neutral clip holds a 30-50% neutral stretch)
    "irrelevant_frames": 0.2,        # P(clip has 1..T/6 frames without a face or fully occluded)
    "occlusion": 0.1,                # P(clip / image has an occluder over part of the face)
    "speech": 0.35,                  # P(clip shows talking: mouth opening unrelated to the emotion)
    "noise": [1.0, 5.0],             # sensor noise sd range
    "blur": 0.4,                     # P(blurred); sigma in [0.5, 1.3]
    "gradient": [0.0, 0.7],          # lighting gradient strength range
    "clutter": [0, 3],               # background shapes
    "aligned_face": [0.72, 0.84],    # face width / crop width in aligned crops (DFEW, FERV39K, RAF-DB, FERPlus)
}


def difficulty(overrides: dict | None) -> dict:
    d = dict(DIFFICULTY)
    for k, v in (overrides or {}).items():
        if k not in d:
            raise KeyError(f"unknown synth.difficulty key {k!r}; known: {sorted(d)}")
        d[k] = v
    return d


@dataclass
class Rendered:
    frames: list            # uint8[H, W, 3] RGB per frame
    boxes: list             # [x0, y0, x1, y1] or None per frame
    landmarks: list         # float[68, 2] or None per frame
    intensity: list         # expression intensity per frame (after neutral stretches)
    meta: dict              # expression, dynamics, pose, flags


def _camera(rng, n: int, size: tuple[int, int], framing: str, face_width,
            aligned_face=(0.72, 0.84)) -> list[tuple[float, float, float]]:
    """(cx, cy, half face width px) per frame; ``face_width`` / ``aligned_face``: face width / frame width."""
    h, w = size
    if framing == "aligned":
        s = w * rng.uniform(*aligned_face) / 2
        cx, cy = w / 2 + rng.normal(0, 0.025 * w), h * 0.5 + rng.normal(0, 0.025 * h)
        jit = rng.normal(0, 0.006 * w, (n, 3)).cumsum(0) * 0.5
        return [(cx + jit[i, 0], cy + jit[i, 1], s * (1 + jit[i, 2] / w)) for i in range(n)]
    frac0 = rng.uniform(*face_width)
    frac1 = float(np.clip(frac0 * rng.uniform(0.8, 1.25), face_width[0] * 0.9, face_width[1] * 1.1))
    s0, s1 = frac0 * w / 2, frac1 * w / 2
    smax = max(s0, s1)
    margin_x, margin_y = 1.15 * smax, 1.35 * smax
    lo, hi = np.array([margin_x, margin_y]), np.array([w - margin_x, h - 1.0 * smax])
    hi = np.maximum(hi, lo + 1)
    p0, p1 = rng.uniform(lo, hi), rng.uniform(lo, hi)
    p1 = p0 + (p1 - p0) * rng.uniform(0.2, 0.6)   # drift part of the way
    wob_f, wob_ph = rng.uniform(0.5, 2), rng.uniform(0, 2 * np.pi, 2)
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        p = p0 + (p1 - p0) * t + 0.03 * w * np.sin(2 * np.pi * wob_f * t + wob_ph)
        out.append((float(np.clip(p[0], lo[0], hi[0])), float(np.clip(p[1], lo[1], hi[1])), s0 + (s1 - s0) * t))
    return out


def render_clip(rng: np.random.Generator, emotion: str, n: int, size: tuple[int, int], framing: str,
                diff: dict, *, face_width=(0.25, 0.45), dynamics: str | None = None, gray: bool = False,
                scene: dict | None = None, allow_irrelevant: bool = True, draw: bool = True) -> Rendered:
    """Render ``n`` frames of one person showing ``emotion`` with its temporal dynamics (n=1: an image at a
    random point of the apex phase). ``draw=False``: geometry only (``frames`` are None, boxes/landmarks are
    exactly those of the drawn clip), for fast tests of the expression signal."""
    h, w = size
    dyn = dynamics or ex.EMOTION_DYNAMICS[emotion]
    ident = random_identity(rng, diff["resting_ambiguity"])
    intensity = float(rng.uniform(*diff["intensity"]))
    apex = ex.apex_aus(rng, emotion, intensity, diff["au_jitter"])
    idle = ex.idle_aus(rng, diff["idle_au"])
    if n == 1:
        curve, motion = np.array([rng.uniform(0.75, 1.05) if emotion != "neutral" else 0.0]), np.zeros(1)
    else:
        curve, motion = ex.intensity_curve(rng, dyn, n)
    flags = {"neutral_stretch": None, "irrelevant": [], "occluded": False, "speech": False}
    if n > 1 and emotion != "neutral" and rng.random() < diff["neutral_stretch"]:
        length = int(round(n * rng.uniform(0.3, 0.5)))
        start = int(rng.integers(0, n - length + 1))
        curve = curve.copy()
        curve[start:start + length] = 0.0
        flags["neutral_stretch"] = [start, start + length]
    speech = np.zeros(n)
    if n > 1 and rng.random() < diff["speech"]:
        f, ph = rng.uniform(3, 7), rng.uniform(0, 2 * np.pi)
        speech = 0.35 * np.abs(np.sin(2 * np.pi * f * np.linspace(0, 1, n) + ph))
        flags["speech"] = True
    # Head pose: a base pose, a random walk, and emotion-driven motion.
    base = rng.normal(0, diff["pose_sd"])
    walk = rng.normal(0, diff["pose_drift"], (n, 3)).cumsum(0) if n > 1 else np.zeros((1, 3))
    poses = base + walk
    if dyn == "sudden_decay":
        poses[:, 1] -= 8 * motion
    elif dyn == "slow_tremor":
        poses[:, 0] += 3 * motion * np.sign(rng.normal(size=n))
    elif dyn == "slump":
        poses[:, 1] += 14 * (-motion)
    elif dyn == "fidget":
        poses[:, 0] += 12 * motion * (1 if rng.random() < 0.5 else -1)
    cams = _camera(rng, n, size, framing, face_width, diff["aligned_face"])
    # Frames without a face (cut-away) or fully occluded, and a clip-level occluder.
    no_face, heavy = set(), set()
    if n > 1 and allow_irrelevant and rng.random() < diff["irrelevant_frames"]:
        k = int(rng.integers(1, max(2, n // 6) + 1))
        start = int(rng.integers(0, n - k + 1))
        target = no_face if rng.random() < 0.6 else heavy
        target.update(range(start, start + k))
        flags["irrelevant"] = sorted(no_face | heavy)
    occ = 0.0
    occ_frames = set()
    if rng.random() < diff["occlusion"]:
        occ = float(rng.uniform(0.3, 0.6))
        a = int(rng.integers(0, n))
        occ_frames = set(range(a, min(n, a + int(rng.integers(max(1, n // 3), n + 1)))))
        flags["occluded"] = True
    occ_seed = int(rng.integers(2**31))
    heavy_seed = int(rng.integers(2**31))
    # Everything above fixes the geometry; pixels draw from their own stream, so ``draw=False`` gives the
    # same landmarks as a rendered clip.
    pix = np.random.default_rng(int(rng.integers(2**63)))
    light = float(pix.uniform(-1, 1))
    if draw:
        scene = scene or {}
        wild = framing == "wild"  # in-the-wild frames: busier scenes around a small face
        bg = background(pix, h, w, int(pix.integers(diff["clutter"][0], diff["clutter"][1] + 1))
                        + scene.get("extra_clutter", 6 if wild else 0), texture=wild or pix.random() < 0.3)
        if "tint" in scene:
            bg = np.clip(bg.astype(np.float32) * 0.6 + np.asarray(scene["tint"], np.float32) * 0.4, 0,
                         255).astype(np.uint8)
        photo = dict(gradient=float(pix.uniform(*diff["gradient"])), angle=float(pix.uniform(0, 2 * np.pi)),
                     noise=float(pix.uniform(*diff["noise"])),
                     blur=float(pix.uniform(0.5, 1.3)) if pix.random() < diff["blur"] else 0.0,
                     brightness=float(pix.uniform(0.75, 1.15)), gray=gray,
                     noise_bank=pix.standard_normal((h + 8, w + 8, 3), dtype=np.float32) if n > 1 else None)
        cloth = tuple(float(v) for v in pix.uniform(20, 230, 3))
    frames, boxes, lms = [], [], []
    for i in range(n):
        au = ex.merge_aus(idle, apex, weights=[1.0, float(curve[i])])
        au["mouth_open"] = au.get("mouth_open", 0.0) + speech[i]
        cx, cy, s = cams[i]
        place = Placement(cx, cy, s, *poses[i])
        if not draw:
            frames.append(None)
            if i in no_face:
                boxes.append(None)
                lms.append(None)
            else:
                lm = project(apply_aus(neutral_shape(ident), au, ident), place)[:NUM_POINTS].astype(np.float32)
                boxes.append(face_box(lm))
                lms.append(lm)
            continue
        if i in heavy:
            spec = FrameSpec(ident, place, au, light, occlusion=1.0, cloth=cloth, extra={"occluder_seed": heavy_seed})
        else:
            spec = FrameSpec(ident, place, au, light, face=i not in no_face,
                             occlusion=occ if i in occ_frames else 0.0, cloth=cloth, extra={"occluder_seed": occ_seed})
        img, box, lm = render_frame(pix, bg, spec, **photo)
        frames.append(img)
        boxes.append(box)
        lms.append(lm)
    meta = {"expression": emotion, "dynamics": dyn, "apex_intensity": round(intensity, 4),
            "pose": [round(float(v), 2) for v in base], **flags}
    return Rendered(frames, boxes, lms, [round(float(c), 4) for c in curve], meta)
