"""Emotion catalogue (apex action units), temporal dynamics, class priors and label noise.

Design: what each paper component can find
-------------------------------------------
* **Geometry carries the expression.** Every canonical emotion of ``labels.py`` has an apex AU vector
  (``CATALOGUE``): mouth corners (smile / frown / contempt's one-sided lift), mouth opening and stretch, lip
  press, brow raise / inner raise / lower, eye openness, nose wrinkle, upper-lip raise. Expressions are
  graded: apex intensity is drawn in ``DIFFICULTY["intensity"]`` ([1.0, 1.8] since the calibration of
  CALIBRATION.md: weaker expressions were below what a CPU-budget landmark net and tiny ViT can read), each AU
  is jittered per clip, everyone has a resting face
  (``Identity.rest_corner`` / ``rest_inner_brow``) and random idle AUs are added, so classes overlap.
  Landmark-aware features (MCP) see the geometry directly; a pixel model must find it under pose, scale,
  lighting, background clutter, blur, noise and occluders.
* **Some classes differ mostly or only in time** (``DYNAMICS``):
    - surprise vs fear: nearly the same apex (raised brows, wide eyes, open mouth; fear adds a little lip
      stretch and inner-brow raise); surprise has a *sudden* onset (1-2 frames) then decays, fear a slow onset
      with a *tremor* (intensity and head jitter at 3-6 Hz-like rates);
    - sadness vs disappointment (MAFW): *identical* apex; sadness is *sustained* (slow onset, held to the
      end), disappointment *rises then falls* back to neutral inside the clip. A single apex frame cannot
      tell them apart (tests check this); a temporal model can;
    - anxiety (fidgety, oscillating low intensity, gaze/head shifts) and helplessness (slow slump: head
      pitches down while the inner brows rise) carry part of their signal in head motion.
* **Temporal noise.** Some non-neutral clips hold a long neutral stretch (delayed onset or a pause); some
  clips contain irrelevant frames (no face: a cut-away) or heavily occluded frames; speech makes the mouth
  open and close regardless of the emotion. Temporal modelling and frame filtering (NR-DFERNet's DSF) help.
* **Label ambiguity.** Annotated labels are wrong with probability ``label_noise``, towards a *confusable*
  class (``CONFUSIONS``: fear<->surprise, sadness<->disappointment, anger<->disgust, ...), and resting faces
  blur the neutral boundary. Ground truth keeps the true label; SDL-style soft labels have something to fix.
* **Pixels vs. data size.** A from-scratch tiny ViT does not read the expression from pixels at all at this
  data size (CALIBRATION.md: majority class after 10 epochs even on clutter-free faces; a 4-block CNN reaches
  ~30%). That is the paper's point: landmark-aware features (MCP) and static pre-training (SFER on the larger
  AffectNet stand-in) are what make the small sets learnable.
* **Class balance** mimics the real datasets (``PRIORS``: DFEW's disgust ~2%, MAFW's contempt ~1%), with a
  floor so every class appears in every test fold.
"""
from __future__ import annotations

import numpy as np

from dfer.data import labels

# Apex action units per canonical emotion (1.0 = strong).
CATALOGUE: dict[str, dict[str, float]] = {
    "neutral": {},
    "happiness": {"smile": 1.0, "eye_open": -0.3, "mouth_open": 0.2, "lip_stretch": 0.15},
    "sadness": {"frown": 0.85, "brow_inner": 0.9, "eye_open": -0.3, "brow_lower": 0.15},
    "anger": {"brow_lower": 1.0, "lip_press": 0.8, "eye_open": 0.15, "nose_wrinkle": 0.2},
    "surprise": {"brow_raise": 1.0, "eye_open": 0.75, "mouth_open": 0.8},
    "fear": {"brow_raise": 0.8, "brow_inner": 0.35, "eye_open": 0.75, "mouth_open": 0.6, "lip_stretch": 0.35},
    "disgust": {"nose_wrinkle": 1.0, "upper_lip_raise": 0.9, "brow_lower": 0.45, "frown": 0.35,
                "eye_open": -0.3},
    "contempt": {"asym_smile": 0.9, "lip_press": 0.3, "eye_open": -0.1},
    "anxiety": {"brow_inner": 0.6, "lip_press": 0.5, "eye_open": 0.25, "lip_stretch": 0.25},
    "helplessness": {"brow_inner": 0.75, "frown": 0.4, "mouth_open": 0.2, "eye_open": -0.25},
    "disappointment": {"frown": 0.85, "brow_inner": 0.9, "eye_open": -0.3, "brow_lower": 0.15},  # = sadness
}

# Temporal profile per emotion (see ``intensity_curve``).
EMOTION_DYNAMICS: dict[str, str] = {
    "neutral": "flat", "happiness": "onset_hold", "sadness": "sustained", "anger": "onset_hold",
    "surprise": "sudden_decay", "fear": "slow_tremor", "disgust": "onset_hold", "contempt": "onset_hold",
    "anxiety": "fidget", "helplessness": "slump", "disappointment": "rise_fall",
}
DYNAMICS = sorted(set(EMOTION_DYNAMICS.values()))

# Plausible annotation mistakes: a noisy label goes to one of these (uniformly).
CONFUSIONS: dict[str, list[str]] = {
    "neutral": ["sadness", "contempt", "anxiety", "happiness"],
    "happiness": ["neutral", "surprise", "contempt"],
    "sadness": ["neutral", "disappointment", "helplessness", "fear"],
    "anger": ["disgust", "contempt", "neutral"],
    "surprise": ["fear", "happiness", "neutral"],
    "fear": ["surprise", "anxiety", "sadness"],
    "disgust": ["anger", "contempt", "sadness"],
    "contempt": ["neutral", "disgust", "happiness"],
    "anxiety": ["fear", "neutral", "helplessness"],
    "helplessness": ["sadness", "disappointment", "anxiety"],
    "disappointment": ["sadness", "helplessness", "neutral"],
}

# Class priors (canonical names) of the real datasets' single-label annotations (approximate).
PRIORS: dict[str, dict[str, float]] = {
    "DFEW": {"happiness": 0.255, "sadness": 0.17, "neutral": 0.255, "anger": 0.18, "surprise": 0.10,
             "disgust": 0.02, "fear": 0.08},
    "FERV39K": {"anger": 0.12, "disgust": 0.05, "fear": 0.04, "happiness": 0.2, "neutral": 0.3, "sadness": 0.2,
                "surprise": 0.05},
    "MAFW": {"anger": 0.13, "anxiety": 0.07, "contempt": 0.012, "disappointment": 0.025, "disgust": 0.09,
             "fear": 0.08, "happiness": 0.2, "helplessness": 0.03, "neutral": 0.11, "sadness": 0.17,
             "surprise": 0.09},
    "AffectNet": {"neutral": 0.26, "happiness": 0.45, "sadness": 0.085, "surprise": 0.05, "fear": 0.022,
                  "disgust": 0.013, "anger": 0.087, "contempt": 0.013},
    "RAF-DB": {"surprise": 0.105, "fear": 0.025, "disgust": 0.058, "happiness": 0.388, "sadness": 0.162,
               "anger": 0.057, "neutral": 0.205},
    # AFEW 7.0 Train: Angry 133, Disgust 74, Fear 81, Happy 150, Neutral 144, Sad 117, Surprise 74 clips
    "AFEW": {"anger": 0.171, "disgust": 0.095, "fear": 0.105, "happiness": 0.194, "neutral": 0.186,
             "sadness": 0.151, "surprise": 0.095},
    "FERPlus": {"neutral": 0.35, "happiness": 0.27, "surprise": 0.12, "sadness": 0.12, "anger": 0.08,
                "disgust": 0.01, "fear": 0.025, "contempt": 0.01},
}


def class_counts(prior: dict[str, float], total: int, floor: int) -> dict[str, int]:
    """Deterministic integer counts proportional to ``prior`` (largest remainders), at least ``floor`` each."""
    names = list(prior)
    p = np.array([prior[n] for n in names], float)
    p /= p.sum()
    rest = max(total - floor * len(names), 0)
    exact = p * rest
    counts = np.floor(exact).astype(int)
    for j in np.argsort(-(exact - counts), kind="stable")[: rest - counts.sum()]:
        counts[j] += 1
    return {n: int(c) + floor for n, c in zip(names, counts)}


def noisy_label(rng: np.random.Generator, true: str, rate: float, allowed: list[str]) -> str:
    """Annotated label: ``true``, or with probability ``rate`` a confusable class among ``allowed``."""
    if rng.random() >= rate:
        return true
    options = [c for c in CONFUSIONS[true] if c in allowed and c != true] or [c for c in allowed if c != true]
    return options[int(rng.integers(len(options)))]


def true_from_annotated(rng: np.random.Generator, annotated: str, rate: float, allowed: list[str]) -> str:
    """The expression actually shown for a clip annotated ``annotated``: the annotated one, or with probability
    ``rate`` one that an annotator could have mistaken for it (keeps the annotated class counts exact)."""
    if rng.random() >= rate:
        return annotated
    options = [c for c in allowed if c != annotated and annotated in CONFUSIONS[c]]
    options = options or [c for c in CONFUSIONS[annotated] if c in allowed] or [c for c in allowed if c != annotated]
    return options[int(rng.integers(len(options)))]


def dataset_emotions(dataset: str) -> list[str]:
    """Canonical emotion names of a dataset's classes, model order."""
    return [labels.canonical(c) for c in labels.classes(dataset)]


# ------------------------------------------------------------------------------------------ dynamics
def intensity_curve(rng: np.random.Generator, dynamics: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame expression intensity in [0, ~1.1] and per-frame head-motion amplitude, for ``n`` frames."""
    t = np.linspace(0, 1, n)
    motion = np.zeros(n)
    if dynamics == "flat":
        x = np.zeros(n)
    elif dynamics == "onset_hold":
        t0, ramp = rng.uniform(0.0, 0.3), rng.uniform(0.1, 0.3)
        x = np.clip((t - t0) / ramp, 0, 1)
        x *= 1 - rng.uniform(0, 0.25) * np.clip((t - t0 - ramp) / 0.7, 0, 1)  # slow relaxation
    elif dynamics == "sustained":
        t0, ramp = rng.uniform(0.0, 0.15), rng.uniform(0.3, 0.5)
        x = np.clip((t - t0) / ramp, 0, 1) ** 1.5
    elif dynamics == "sudden_decay":
        t0 = rng.uniform(0.1, 0.4)
        step = 1.5 / max(n - 1, 1)                       # 1-2 frames
        x = np.clip((t - t0) / step, 0, 1)
        x *= np.exp(-np.clip(t - t0, 0, None) * rng.uniform(1.0, 2.2))
        motion[(t >= t0) & (t < t0 + 2 * step)] = 1.0   # a startle: head jerks back
    elif dynamics == "slow_tremor":
        t0, ramp = rng.uniform(0.0, 0.2), rng.uniform(0.45, 0.7)
        x = np.clip((t - t0) / ramp, 0, 1)
        freq, phase = rng.uniform(4, 7), rng.uniform(0, 2 * np.pi)
        trem = np.sin(2 * np.pi * freq * t + phase)
        x = np.clip(x * (1 + 0.22 * trem), 0, 1.2)
        motion = 0.6 * x * np.abs(trem)
    elif dynamics == "rise_fall":
        mu, sd = rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.16)
        x = np.exp(-0.5 * ((t - mu) / sd) ** 2)
    elif dynamics == "fidget":
        base = rng.uniform(0.5, 0.8)
        freq, phase = rng.uniform(2, 4), rng.uniform(0, 2 * np.pi)
        x = base * (0.75 + 0.25 * np.sin(2 * np.pi * freq * t + phase))
        motion = 0.5 * (np.sin(2 * np.pi * rng.uniform(1.5, 3) * t + phase) > 0.3)
    elif dynamics == "slump":
        t0 = rng.uniform(0.0, 0.2)
        x = np.clip((t - t0) / rng.uniform(0.4, 0.6), 0, 1)
        motion = -x  # negative = pitch down (handled by the clip planner)
    else:
        raise KeyError(f"unknown dynamics {dynamics!r}; known: {DYNAMICS}")
    return x, motion


def apex_aus(rng: np.random.Generator, emotion: str, intensity: float, jitter: float = 0.25) -> dict[str, float]:
    """Apex AU vector of one clip: catalogue x intensity, each AU jittered by a log-normal factor."""
    return {k: v * intensity * float(np.exp(rng.normal(0, jitter))) for k, v in CATALOGUE[emotion].items()}


def idle_aus(rng: np.random.Generator, scale: float) -> dict[str, float]:
    """Small random AUs every face shows (idiosyncratic mimics), same for a whole clip."""
    from dfer.data.synth.faces import AUS

    return {k: float(rng.normal(0, scale)) for k in AUS if k not in ("asym_smile", "mouth_open")}


def merge_aus(*parts: dict[str, float], weights: list[float] | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, part in enumerate(parts):
        w = 1.0 if weights is None else weights[i]
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + w * v
    return out
