"""A 68-point parametric face and a small OpenCV renderer.

Shape model
-----------
A face is 68 landmarks in the iBUG/300-W layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
48-67), plus a few forehead/hairline points used only for drawing. Points live in a face-centred frame:
x in about [-1, 1] (1 = half the face width), y pointing down (eyes at y~-0.15, chin at y~1.1), and a depth z
so that head pose (yaw, pitch, roll) can be applied before an orthographic projection.

* ``Identity`` holds the per-person shape and appearance: face proportions, eye spacing, mouth width, resting
  mouth-corner and brow offsets (some people look a little sad or a little happy at rest: real label
  ambiguity), skin / lip / brow / hair / iris colours.
* Expressions are action-unit-like deltas (``AUS``) added to the neutral shape; ``apply_aus`` turns a dict of
  AU strengths (0 = rest, 1 = strong) into a deformed shape. The pixels carry the same cues as the geometry
  (lip colour, open mouth cavity and teeth, eye whites, brow position) plus a few appearance-only cues
  (nasolabial folds when smiling, glabella lines when frowning, nose wrinkles for disgust).

Rendering
---------
``draw_face`` paints a projected face onto an image; ``render_face`` is the convenience API (background,
face, nuisance, returns the RGB image, the face box and the 68 landmarks in pixel coordinates).
``face_box`` is the ground-truth box convention: the landmarks' extent, with the top raised by 25% of the
landmark height to include the forehead (landmarks therefore always lie inside the box).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

NUM_POINTS = 68
AUS = ("smile", "frown", "mouth_open", "lip_stretch", "lip_press", "brow_raise", "brow_inner", "brow_lower",
       "eye_open", "nose_wrinkle", "upper_lip_raise", "asym_smile")

JAW, BROW_L, BROW_R = range(0, 17), range(17, 22), range(22, 27)
NOSE_BRIDGE, NOSE_BASE = range(27, 31), range(31, 36)
EYE_L, EYE_R = range(36, 42), range(42, 48)
MOUTH_OUT, MOUTH_IN = range(48, 60), range(60, 68)
N_FOREHEAD = 9  # extra drawing-only points: hairline arc from jaw point 16 over the top to point 0
AU_GAIN = 1.3   # global deformation gain: how far an AU of strength 1 moves the landmarks


# ------------------------------------------------------------------------------------------- identity
@dataclass(frozen=True)
class Identity:
    """One synthetic person: shape proportions and appearance (sampled once per clip / image)."""
    jaw_width: float = 1.0
    face_length: float = 1.0
    jaw_square: float = 0.7       # <1: squarer jaw
    eye_spacing: float = 0.41
    eye_width: float = 0.2
    eye_height: float = 0.085
    brow_height: float = 0.0      # resting brow offset (negative = higher)
    mouth_width: float = 0.38
    mouth_y: float = 0.66
    lip_thickness: float = 1.0
    nose_length: float = 1.0
    rest_corner: float = 0.0      # resting mouth-corner lift (+ looks happy, - looks sad)
    rest_inner_brow: float = 0.0  # resting inner-brow lift (+ looks worried)
    skin: tuple = (200, 160, 140)
    lips: tuple = (170, 80, 80)
    brows: tuple = (60, 45, 35)
    hair: tuple = (50, 35, 25)
    iris: tuple = (70, 50, 30)
    hair_style: int = 0           # 0 none/short, 1 fringe, 2 long
    beard: bool = False
    glasses: bool = False


SKIN_TONES = [(236, 200, 175), (225, 180, 150), (200, 155, 120), (170, 120, 90), (130, 90, 65), (95, 65, 45)]


def random_identity(rng: np.random.Generator, resting_ambiguity: float = 0.15) -> Identity:
    """A random person; ``resting_ambiguity`` scales the resting mouth/brow offsets (label ambiguity)."""
    base = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], float)
    skin = np.clip(base + rng.normal(0, 10, 3), 30, 255)
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 8, 3), 20, 255)
    hair = np.clip(np.array([40, 30, 20]) * rng.uniform(0.5, 4.0) + rng.normal(0, 10, 3), 5, 240)
    brows = np.clip(hair * 0.8 + rng.normal(0, 5, 3), 5, 200)
    iris = np.array([(60, 40, 25), (90, 70, 40), (60, 90, 120), (70, 110, 80)][rng.integers(4)], float)
    return Identity(
        jaw_width=rng.uniform(0.92, 1.08), face_length=rng.uniform(0.9, 1.1), jaw_square=rng.uniform(0.5, 0.95),
        eye_spacing=rng.uniform(0.37, 0.45), eye_width=rng.uniform(0.17, 0.22), eye_height=rng.uniform(0.07, 0.1),
        brow_height=rng.normal(0, 0.03), mouth_width=rng.uniform(0.32, 0.44), mouth_y=rng.uniform(0.62, 0.7),
        lip_thickness=rng.uniform(0.7, 1.3), nose_length=rng.uniform(0.9, 1.1),
        rest_corner=rng.normal(0, resting_ambiguity), rest_inner_brow=rng.normal(0, resting_ambiguity),
        skin=tuple(skin), lips=tuple(lips), brows=tuple(brows), hair=tuple(hair), iris=tuple(iris),
        hair_style=int(rng.integers(3)), beard=bool(rng.random() < 0.12), glasses=bool(rng.random() < 0.1))


# ------------------------------------------------------------------------------------------- shape
@lru_cache(maxsize=16)
def neutral_shape(ident: Identity) -> np.ndarray:
    """float[68 + N_FOREHEAD, 3] (x, y, z) rest shape of a person, face-centred units (read-only, cached:
    a clip re-uses its person's shape for every frame)."""
    p = np.zeros((NUM_POINTS + N_FOREHEAD, 3))
    L = ident.face_length
    # Jaw: ear level (y=-0.15) round the chin (y~1.15).
    a = np.pi * np.arange(17) / 16
    p[0:17, 0] = -np.cos(a) * ident.jaw_width
    p[0:17, 1] = -0.15 + 1.3 * L * np.sin(a) ** ident.jaw_square
    p[0:17, 2] = -0.7 * np.abs(np.cos(a)) ** 0.7
    # Brows: arcs above the eyes.
    for rng_, sign in ((BROW_L, -1), (BROW_R, 1)):
        t = np.linspace(0, 1, 5) if sign > 0 else np.linspace(1, 0, 5)  # 17 outer..21 inner; 22 inner..26 outer
        x = sign * (0.14 + 0.66 * t)
        y = -0.42 + ident.brow_height - 0.09 * np.sin(np.pi * (0.3 + 0.7 * t)) + 0.03 * t
        p[list(rng_), 0], p[list(rng_), 1], p[list(rng_), 2] = x, y, 0.12 - 0.25 * t ** 2
    # Nose: bridge 27-30, base 31-35.
    nl = ident.nose_length
    p[27:31, 0] = 0
    p[27:31, 1] = np.linspace(-0.2, 0.3 * nl, 4)
    p[27:31, 2] = np.linspace(0.25, 0.55, 4)
    p[31:36, 0] = np.linspace(-0.2, 0.2, 5)
    p[31:36, 1] = 0.3 * nl + 0.08 + np.array([0.0, 0.02, 0.03, 0.02, 0.0])
    p[31:36, 2] = [0.25, 0.35, 0.4, 0.35, 0.25]
    # Eyes: 36 outer, 37/38 top, 39 inner, 40/41 bottom; right eye mirrored (42 inner ... 45 outer).
    ex, ew, eh = ident.eye_spacing, ident.eye_width, ident.eye_height
    left = np.array([[-ex - ew, 0], [-ex - 0.35 * ew, -eh], [-ex + 0.35 * ew, -eh], [-ex + ew, 0],
                     [-ex + 0.35 * ew, 0.9 * eh], [-ex - 0.35 * ew, 0.9 * eh]])
    right = left[[3, 2, 1, 0, 5, 4]] * np.array([-1, 1])
    p[36:42, :2], p[42:48, :2] = left, right
    p[36:42, 1] -= 0.15
    p[42:48, 1] -= 0.15
    p[36:48, 2] = 0.1
    # Mouth: outer 48 left corner .. 54 right corner (upper), 55..59 lower; inner 60..67.
    mw, my, lt = ident.mouth_width, ident.mouth_y * L, 0.07 * ident.lip_thickness
    up = np.array([[-mw, 0], [-0.6 * mw, -lt * 0.9], [-0.2 * mw, -lt * 1.1], [0, -lt * 0.85],
                   [0.2 * mw, -lt * 1.1], [0.6 * mw, -lt * 0.9], [mw, 0]])
    lo = np.array([[0.6 * mw, lt * 1.0], [0.2 * mw, lt * 1.3], [0, lt * 1.35], [-0.2 * mw, lt * 1.3],
                   [-0.6 * mw, lt * 1.0]])
    p[48:55, :2], p[55:60, :2] = up, lo
    inner = np.array([[-0.85 * mw, 0], [-0.3 * mw, -0.01], [0, -0.012], [0.3 * mw, -0.01], [0.85 * mw, 0],
                      [0.3 * mw, 0.01], [0, 0.012], [-0.3 * mw, 0.01]])
    p[60:68, :2] = inner
    p[48:68, 1] += my
    p[48:68, 2] = 0.3 - 0.3 * (p[48:68, 0] / mw) ** 2
    corner = [48, 54, 60, 64]
    p[corner, 1] -= ident.rest_corner * 0.06
    p[[20, 21, 22, 23], 1] -= ident.rest_inner_brow * 0.05
    # Forehead / hairline arc (drawing only): from the right ear over the top to the left ear.
    b = np.linspace(0, np.pi, N_FOREHEAD)
    p[68:, 0] = np.cos(b) * ident.jaw_width * 0.98
    p[68:, 1] = -0.15 - 0.95 * L * np.sin(b) ** 0.8
    p[68:, 2] = -0.6 * np.abs(np.cos(b)) + 0.05
    p.setflags(write=False)
    return p


def apply_aus(shape: np.ndarray, au: dict, ident: Identity) -> np.ndarray:
    """Deform a neutral shape by action-unit strengths (missing AUs = 0). Returns a new array."""
    p = shape.copy()
    g = lambda k: AU_GAIN * float(au.get(k, 0.0))  # noqa: E731
    mw = ident.mouth_width
    smile, frown, opn, stretch = g("smile"), g("frown"), g("mouth_open"), g("lip_stretch")
    press, braise, binner, blower = g("lip_press"), g("brow_raise"), g("brow_inner"), g("brow_lower")
    eye, wrinkle, ulr, asym = g("eye_open"), g("nose_wrinkle"), g("upper_lip_raise"), g("asym_smile")

    mouth = list(MOUTH_OUT) + list(MOUTH_IN)
    cy = p[mouth, 1].mean()
    # Lips thinner when pressed, fuller when stretched open.
    rel = p[mouth, 1] - cy
    p[mouth, 1] = cy + rel * (1 - 0.45 * press)
    # Corners: smile lifts and widens, frown lowers, stretch widens, press narrows.
    for idx, side in ((48, -1), (60, -1), (54, 1), (64, 1)):
        p[idx, 1] += -0.13 * smile + 0.11 * frown
        p[idx, 0] += side * (0.07 * smile + 0.09 * stretch - 0.04 * press) * mw / 0.38
    for idx, side in ((49, -1), (59, -1), (53, 1), (55, 1)):  # points next to the corners follow partly
        p[idx, 1] += -0.06 * smile + 0.05 * frown
        p[idx, 0] += side * (0.035 * smile + 0.05 * stretch) * mw / 0.38
    # Contempt: one corner (the subject's left = image right) up and back.
    p[[54, 64], 1] -= 0.12 * asym
    p[[54, 64], 0] += 0.05 * asym
    p[[53, 55], 1] -= 0.05 * asym
    # Frown pushes the lower lip up (chin raiser), upper-lip raiser lifts the upper lip.
    p[[56, 57, 58], 1] -= 0.03 * frown
    p[[49, 50, 51, 52, 53, 61, 62, 63], 1] -= 0.07 * ulr + 0.02 * wrinkle
    # Mouth open: lower lip and jaw drop.
    p[[65, 66, 67], 1] += 0.26 * opn
    p[[55, 56, 57, 58, 59], 1] += 0.26 * opn
    p[[61, 62, 63], 1] -= 0.015 * opn
    p[[60, 64], 1] += 0.06 * opn
    jaw_w = np.sin(np.pi * np.arange(17) / 16) ** 3
    p[0:17, 1] += 0.18 * opn * jaw_w
    p[0:17, 1] += 0.03 * smile * jaw_w  # cheeks widen/lower slightly
    # Brows.
    brows = list(BROW_L) + list(BROW_R)
    p[brows, 1] += -0.13 * braise + 0.09 * blower + 0.03 * wrinkle
    inner = {21: 1.0, 22: 1.0, 20: 0.6, 23: 0.6, 19: 0.25, 24: 0.25}
    for idx, w in inner.items():
        p[idx, 1] -= 0.13 * binner * w
        p[idx, 1] += 0.05 * blower * w
        p[idx, 0] -= np.sign(p[idx, 0]) * 0.05 * blower * w
    p[[17, 26], 1] += 0.03 * binner
    # Eyes: openness scales the lid distance around the corner line; brow raise lifts upper lids a bit.
    for eye_idx, top, bottom in ((EYE_L, [37, 38], [40, 41]), (EYE_R, [43, 44], [46, 47])):
        corners = [eye_idx[0], eye_idx[3]]
        line = p[corners, 1].mean()
        scale_top = max(0.15, 1 + 0.55 * eye - 0.35 * smile - 0.25 * wrinkle + 0.2 * braise)
        scale_bot = max(0.15, 1 + 0.35 * eye - 0.55 * smile - 0.3 * wrinkle)
        p[top, 1] = line + (p[top, 1] - line) * scale_top
        p[bottom, 1] = line + (p[bottom, 1] - line) * scale_bot
    # Nose wrinkle: nostrils lift.
    p[list(NOSE_BASE), 1] -= 0.04 * wrinkle
    p[list(NOSE_BASE), 0] *= 1 + 0.12 * wrinkle
    return p


# ------------------------------------------------------------------------------------------- projection
@dataclass
class Placement:
    """Where a face lands in the image: centre (px), half face width (px), pose (degrees)."""
    cx: float
    cy: float
    scale: float
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(shape: np.ndarray, place: Placement) -> np.ndarray:
    """float[N, 2] pixel coordinates (orthographic projection around the face centre at y=0.45)."""
    centred = shape - np.array([0, 0.45, 0])
    rot = centred @ rotation(place.yaw, place.pitch, place.roll).T
    return rot[:, :2] * place.scale + np.array([place.cx, place.cy])


def face_box(points68: np.ndarray) -> list[float]:
    """Ground-truth face box [x0, y0, x1, y1]: landmark extent, top raised by 25% for the forehead."""
    x0, y0 = points68.min(0)
    x1, y1 = points68.max(0)
    return [float(x0), float(y0 - 0.25 * (y1 - y0)), float(x1), float(y1)]


# ------------------------------------------------------------------------------------------- drawing
_SHIFT = 4  # sub-pixel precision for OpenCV drawing
_ONE = 1 << _SHIFT


def _pts(a: np.ndarray) -> np.ndarray:
    return np.round(a * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _col(c, k: float = 1.0) -> tuple:
    return tuple(float(np.clip(v * k, 0, 255)) for v in c)


def draw_face(img: np.ndarray, pts: np.ndarray, ident: Identity, au: dict, scale: float,
              light: float = 0.0) -> None:
    """Paint a projected face (``pts`` = float[68 + N_FOREHEAD, 2] pixels) onto an RGB image in place.

    ``light`` in [-1, 1] darkens one side of the face (directional lighting), ``scale`` = half face width px.
    """
    aa = cv2.LINE_AA
    lw = max(1, int(round(scale * 0.06)))
    outline = np.concatenate([pts[0:17], pts[68:]])
    hull = cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)
    # Hair behind the head (long style).
    if ident.hair_style == 2:
        back = hull.copy()
        c = back.mean(0)
        back = c + (back - c) * np.array([1.18, 1.08]) + np.array([0, 0.1 * scale])
        cv2.fillPoly(img, [_pts(back)], _col(ident.hair), aa, _SHIFT)
    # Ears behind the face outline.
    for jp, side in ((1, -1), (15, 1)):
        ear = pts[jp] + np.array([side * 0.06 * scale, -0.05 * scale])
        cv2.ellipse(img, tuple(_pts(ear).ravel()), (int(0.13 * scale * _ONE), int(0.24 * scale * _ONE)), 0, 0, 360,
                    _col(ident.skin, 0.75), -1, aa, _SHIFT)
    # Skin with side shading: a darker full face, then a lighter inner face shifted towards the light.
    cv2.fillPoly(img, [_pts(hull)], _col(ident.skin, 0.82), aa, _SHIFT)
    c = hull.mean(0)
    inner = c + (hull - c) * 0.86 + np.array([-light * 0.12 * scale, -0.04 * scale])
    cv2.fillPoly(img, [_pts(inner)], _col(ident.skin, 1.0 + 0.05 * abs(light)), aa, _SHIFT)
    # Hair on top: a cap from the hairline arc pulled towards the nose bridge (deeper = fringe).
    top = pts[68:]
    depth = {0: 0.12, 1: 0.45, 2: 0.3}[ident.hair_style]
    lower = top[::-1] + (pts[[27]] - top[::-1]) * depth  # pulled towards the nose bridge
    cap = np.concatenate([top, lower])
    cv2.fillPoly(img, [_pts(cap)], _col(ident.hair), aa, _SHIFT)
    if ident.beard:
        jaw = pts[2:15]
        lipline = pts[[54, 55, 56, 57, 58, 59, 48]]
        cv2.fillPoly(img, [_pts(np.concatenate([jaw, lipline]))], _col(ident.hair, 1.1), aa, _SHIFT)
    # Appearance-only cues: nasolabial folds (smile), glabella lines (frown), nose wrinkles (disgust).
    fold = max(au.get("smile", 0.0), au.get("asym_smile", 0.0) * 0.7)
    if fold > 0.15:
        k = 1 - 0.25 * min(fold, 1.2)
        for wing, corner in ((31, 48), (35, 54)):
            mid = (pts[wing] + pts[corner]) / 2
            curve = np.array([pts[wing] + (pts[wing] - pts[33]) * 0.3, mid + (mid - pts[33]) * 0.25,
                              pts[corner] + (pts[corner] - pts[57]) * 0.1])
            cv2.polylines(img, [_pts(curve)], False, _col(ident.skin, k), lw, aa, _SHIFT)
    if au.get("brow_lower", 0.0) > 0.3:
        k = 1 - 0.3 * min(au["brow_lower"], 1.2)
        for dx in (-0.05, 0.05):
            a_ = (pts[21] + pts[22]) / 2 + np.array([dx * scale, 0])
            cv2.line(img, tuple(_pts(a_).ravel()), tuple(_pts(a_ + np.array([0, 0.12 * scale])).ravel()),
                     _col(ident.skin, k), lw, aa, _SHIFT)
    if au.get("nose_wrinkle", 0.0) > 0.3:
        k = 1 - 0.3 * min(au["nose_wrinkle"], 1.2)
        for j in range(3):
            y = pts[28, 1] + (j - 1) * 0.04 * scale
            a_, b_ = np.array([pts[28, 0] - 0.08 * scale, y]), np.array([pts[28, 0] + 0.08 * scale, y])
            cv2.line(img, tuple(_pts(a_).ravel()), tuple(_pts(b_).ravel()), _col(ident.skin, k), lw, aa, _SHIFT)
    # Eyes: white, iris clipped by the lids (drawn through a small mask), lid outline.
    for eye in (EYE_L, EYE_R):
        e = pts[list(eye)]
        h = np.linalg.norm((e[1] + e[2]) / 2 - (e[4] + e[5]) / 2)
        cv2.fillPoly(img, [_pts(e)], (235, 235, 230), aa, _SHIFT)
        if h > 0.02 * scale:
            x0, y0 = np.floor(e.min(0)).astype(int) - 1
            x1, y1 = np.ceil(e.max(0)).astype(int) + 2
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, img.shape[1]), min(y1, img.shape[0])
            if x1 > x0 and y1 > y0:
                mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.fillPoly(mask, [_pts(e - [x0, y0])], 255, cv2.LINE_8, _SHIFT)
                patch = img[y0:y1, x0:x1].copy()
                centre = e.mean(0) - [x0, y0]
                r = 0.45 * np.linalg.norm(e[3] - e[0]) * 0.55
                cv2.circle(patch, tuple(_pts(centre).ravel()), int(r * _ONE), _col(ident.iris), -1, aa, _SHIFT)
                cv2.circle(patch, tuple(_pts(centre).ravel()), int(r * 0.45 * _ONE), (15, 15, 15), -1, aa, _SHIFT)
                img[y0:y1, x0:x1][mask > 0] = patch[mask > 0]
        cv2.polylines(img, [_pts(e)], True, (40, 30, 30), max(1, lw // 2 + (1 if scale > 30 else 0)), aa, _SHIFT)
    # Brows.
    for brow in (BROW_L, BROW_R):
        cv2.polylines(img, [_pts(pts[list(brow)])], False, _col(ident.brows), max(1, int(round(scale * 0.075))),
                      aa, _SHIFT)
    # Nose: a shaded bridge line and nostrils.
    cv2.polylines(img, [_pts(pts[27:31])], False, _col(ident.skin, 0.8), lw, aa, _SHIFT)
    cv2.polylines(img, [_pts(pts[31:36])], False, _col(ident.skin, 0.6), lw, aa, _SHIFT)
    for n in (32, 34):
        cv2.circle(img, tuple(_pts(pts[n]).ravel()), max(1, int(0.03 * scale * _ONE)), _col(ident.skin, 0.35),
                   -1, aa, _SHIFT)
    # Mouth: lips, then the cavity and teeth when open.
    cv2.fillPoly(img, [_pts(pts[48:60])], _col(ident.lips), aa, _SHIFT)
    inner = pts[60:68]
    gap = np.linalg.norm(inner[6] - inner[2])
    if gap > 0.03 * scale:
        cv2.fillPoly(img, [_pts(inner)], (45, 15, 20), aa, _SHIFT)
        teeth = inner[[0, 1, 2, 3, 4]].copy()
        lower_teeth = teeth[::-1] + np.array([0, min(gap * 0.35, 0.07 * scale)])
        cv2.fillPoly(img, [_pts(np.concatenate([teeth, lower_teeth]))], (230, 230, 220), aa, _SHIFT)
    elif max(au.get("smile", 0.0), au.get("lip_stretch", 0.0)) > 0.45:  # a broad smile shows the teeth
        band = 0.05 * scale * min(max(au.get("smile", 0.0), au.get("lip_stretch", 0.0)), 1.3)
        teeth = inner[[0, 1, 2, 3, 4]]
        cv2.fillPoly(img, [_pts(np.concatenate([teeth, teeth[::-1] + np.array([0, band])]))], (230, 230, 220), aa,
                     _SHIFT)
    else:
        cv2.polylines(img, [_pts(inner[[0, 1, 2, 3, 4]])], False, _col(ident.lips, 0.5), lw, aa, _SHIFT)
    if ident.glasses:
        for eye in (EYE_L, EYE_R):
            e = pts[list(eye)]
            c_ = e.mean(0)
            axes = (int(0.75 * np.linalg.norm(e[3] - e[0]) * _ONE), int(0.22 * scale * _ONE))
            ang = float(np.degrees(np.arctan2(*(e[3] - e[0])[::-1])))
            cv2.ellipse(img, tuple(_pts(c_).ravel()), axes, ang, 0, 360, (20, 20, 20), lw, aa, _SHIFT)


# ------------------------------------------------------------------------------------------- scenes
def background(rng: np.random.Generator, h: int, w: int, clutter: int = 6, texture: bool = False) -> np.ndarray:
    """Random scene: two-colour gradient, optionally a wall texture (tiles, blinds, shelves), plus ``clutter``
    random shapes (furniture, posters, lamps)."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang)) + 0.5
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if texture:
        col = tuple(float(v) for v in np.clip(c0 * rng.uniform(0.6, 1.4), 0, 255))
        step = int(rng.integers(max(4, w // 24), max(6, w // 6)))
        vertical, horizontal = rng.random() < 0.6, rng.random() < 0.6
        for x in range(int(rng.integers(step)), w, step) if vertical else ():
            cv2.line(img, (x, 0), (x, h), col, 1)
        for y in range(int(rng.integers(step)), h, step) if horizontal else ():
            cv2.line(img, (0, y), (w, y), col, 1)
    for _ in range(clutter):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(0.05, 0.35) * max(h, w)
        if kind == 0:
            cv2.rectangle(img, (int(x), int(y)), (int(x + s), int(y + s * rng.uniform(0.3, 2))), col, -1)
        elif kind == 1:
            cv2.circle(img, (int(x), int(y)), int(s / 2), col, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (int(x), int(y)), (int(x + s * rng.normal()), int(y + s * rng.normal())), col,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _body_polygons(pts: np.ndarray, scale: float, img_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Neck and shoulders below the chin (so faces do not float)."""
    chin = pts[8]
    neck_w = 0.45 * scale
    neck = np.array([[chin[0] - neck_w, chin[1] - 0.3 * scale], [chin[0] + neck_w, chin[1] - 0.3 * scale],
                     [chin[0] + neck_w, chin[1] + 0.6 * scale], [chin[0] - neck_w, chin[1] + 0.6 * scale]])
    shoulders = np.array([[chin[0] - 2.2 * scale, img_h + scale], [chin[0] - 1.6 * scale, chin[1] + 0.5 * scale],
                          [chin[0] + 1.6 * scale, chin[1] + 0.5 * scale], [chin[0] + 2.2 * scale, img_h + scale]])
    return neck, shoulders


def paint_body(img: np.ndarray, pts: np.ndarray, scale: float, skin, cloth) -> None:
    neck, shoulders = _body_polygons(pts, scale, img.shape[0])
    cv2.fillPoly(img, [_pts(shoulders)], _col(cloth), cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(img, [_pts(neck)], _col(skin, 0.75), cv2.LINE_AA, _SHIFT)


def occluder(rng: np.random.Generator, img: np.ndarray, box: list[float], strength: float = 0.4,
             skin=None) -> None:
    """Cover part of the face box: a hand (skin-coloured blob), a microphone/cup or a bar."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cover = strength * rng.uniform(0.7, 1.3)
    kind = rng.integers(3)
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0 + 0.3 * h, y1)
    if kind == 0 and skin is not None:
        col = _col(skin, rng.uniform(0.85, 1.1))
        cv2.ellipse(img, (int(cx), int(cy)), (int(cover * w * 0.7) + 1, int(cover * h * 0.5) + 1),
                    float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    elif kind == 1:
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.rectangle(img, (int(cx - cover * w * 0.3), int(cy - cover * h * 0.5)),
                      (int(cx + cover * w * 0.3), int(y1 + h)), col, -1)
    else:
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        yb = rng.uniform(y0, y1)
        cv2.rectangle(img, (int(x0 - 0.2 * w), int(yb)), (int(x1 + 0.2 * w), int(yb + cover * h * 0.6)), col, -1)


@lru_cache(maxsize=64)
def _gradient_map(h: int, w: int, angle: float, strength: float) -> np.ndarray:
    x = (np.arange(w, dtype=np.float32) / w - 0.5) * np.float32(np.cos(angle))
    y = (np.arange(h, dtype=np.float32) / h - 0.5) * np.float32(np.sin(angle))
    g = 1 + np.float32(strength) * (y[:, None] + x[None, :])
    g.setflags(write=False)
    return g


def photometric(rng: np.random.Generator, img: np.ndarray, *, gradient: float, noise: float, blur: float,
                brightness: float = 1.0, gray: bool = False, angle: float | None = None,
                noise_bank: np.ndarray | None = None) -> np.ndarray:
    """Lighting gradient (multiplicative, direction ``angle`` or random), brightness, blur and sensor noise;
    returns a new uint8 image. ``noise_bank`` (float32[H+8, W+8, C], unit sd): a clip's pre-drawn noise, of
    which each frame takes a randomly shifted window (drawing fresh Gaussian noise per frame is the slowest
    part of rendering)."""
    h, w = img.shape[:2]
    f = img.astype(np.float32)
    if gradient > 0:
        ang = float(rng.uniform(0, 2 * np.pi)) if angle is None else float(angle)
        f *= (_gradient_map(h, w, round(ang, 6), round(float(gradient), 6)) * np.float32(brightness))[..., None]
    elif brightness != 1.0:
        f *= np.float32(brightness)
    if blur > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    if noise > 0:
        if noise_bank is None:
            f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(noise)
        else:
            dy, dx = rng.integers(0, 9, 2)
            f += noise_bank[dy:dy + h, dx:dx + w, :f.shape[2]] * np.float32(noise)
    np.clip(f, 0, 255, out=f)
    out = f.astype(np.uint8)
    if gray:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return out


@dataclass
class FrameSpec:
    """Everything that makes one frame: who, where, which expression, which nuisance."""
    ident: Identity
    place: Placement
    au: dict
    light: float = 0.0
    face: bool = True                 # False: an irrelevant frame without a face
    occlusion: float = 0.0            # 0 = none, else fraction-ish of the face covered
    cloth: tuple = (80, 80, 120)
    extra: dict = field(default_factory=dict)


def render_frame(rng: np.random.Generator, bg: np.ndarray, spec: FrameSpec, *, gradient: float, noise: float,
                 blur: float, brightness: float = 1.0, gray: bool = False, angle: float | None = None,
                 noise_bank: np.ndarray | None = None):
    """Draw one frame over a background. Returns (rgb uint8, box | None, float[68, 2] | None).

    ``spec.extra["occluder_seed"]`` fixes the occluder's look (the same object across a clip's frames)."""
    img = bg.copy()
    photo = dict(gradient=gradient, noise=noise, blur=blur, brightness=brightness, gray=gray, angle=angle,
                 noise_bank=noise_bank)
    if not spec.face:
        return photometric(rng, img, **photo), None, None
    shape = apply_aus(neutral_shape(spec.ident), spec.au, spec.ident)
    pts = project(shape, spec.place)
    paint_body(img, pts, spec.place.scale, spec.ident.skin, spec.cloth)
    draw_face(img, pts, spec.ident, spec.au, spec.place.scale, spec.light)
    lm = pts[:NUM_POINTS].astype(np.float32)
    box = face_box(lm)
    if spec.occlusion > 0:
        seed = spec.extra.get("occluder_seed")
        occluder(rng if seed is None else np.random.default_rng(seed), img, box, spec.occlusion, spec.ident.skin)
    out = photometric(rng, img, **photo)
    return out, box, lm


def render_face(rng: np.random.Generator, size: int = 112, expression: str = "neutral", intensity: float = 1.0,
                pose: tuple[float, float, float] | None = None, *, face_frac: float = 0.62,
                position: tuple[float, float] | None = None, identity: Identity | None = None,
                clutter: int = 4, occlusion: float = 0.0, noise: float = 4.0, blur: float = 0.0,
                gradient: float = 0.3, gray: bool = False):
    """Render one face image: (rgb uint8[size, size, 3], box [x0, y0, x1, y1], float32[68, 2] landmarks).

    ``expression``: canonical emotion name (``dfer.data.synth.expressions.CATALOGUE``); ``intensity`` scales
    its apex action units; ``pose`` = (yaw, pitch, roll) degrees (random when None); ``face_frac`` = face
    width / image side; ``position`` = face centre in pixels (image centre when None).
    """
    from dfer.data.synth.expressions import CATALOGUE

    if expression not in CATALOGUE:
        raise KeyError(f"unknown expression {expression!r}; known: {sorted(CATALOGUE)}")
    ident = identity or random_identity(rng)
    if pose is None:
        pose = (rng.normal(0, 12), rng.normal(0, 7), rng.normal(0, 7))
    cx, cy = position or (size / 2, size * 0.47)
    place = Placement(cx, cy, face_frac * size / 2, *pose)
    au = {k: v * intensity for k, v in CATALOGUE[expression].items()}
    bg = background(rng, size, size, clutter)
    spec = FrameSpec(ident, place, au, light=float(rng.uniform(-1, 1)), occlusion=occlusion)
    return render_frame(rng, bg, spec, gradient=gradient, noise=noise, blur=blur, gray=gray)


__all__ = ["AUS", "NUM_POINTS", "Identity", "Placement", "FrameSpec", "random_identity", "neutral_shape",
           "apply_aus", "project", "face_box", "draw_face", "background", "occluder", "photometric",
           "render_frame", "render_face"]
