"""Temporal sampling of the official S2D code (MSA-LMC/S2D's video dataset, inherited from VideoMAE/MAE-DFER).

Training: one 16-frame clip per video; a video with at most ``num_frames * sampling_rate`` frames is
sampled with ``linspace`` and padded by repeating its last frame, a longer one gets a random window.
Test: ``n_temporal`` windows with starts ``k * (N - num_frames) / (n_temporal - 1)`` (0 and N-16 for two
views) over the frames taken every ``sampling_rate``; their predictions are averaged by the evaluator.
"""
from __future__ import annotations

import numpy as np


def train_indices(n_frames: int, num_frames: int = 16, sampling_rate: int = 1,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices (int64[num_frames]) of one training clip of a video with ``n_frames`` frames."""
    if n_frames <= 0:
        raise ValueError(f"cannot sample from a clip with {n_frames} frames")
    rng = rng if rng is not None else np.random.default_rng()
    span = num_frames * sampling_rate
    if n_frames <= span:
        # Official: linspace(0, len, len // sr) (endpoint included, then clipped), padded with the last frame.
        index = np.linspace(0, n_frames, num=n_frames // sampling_rate)
        index = np.concatenate([index, np.full(num_frames - n_frames // sampling_rate, n_frames)])
        return np.clip(index, 0, n_frames - 1).astype(np.int64)
    end = int(rng.integers(span, n_frames))  # numpy randint(span, n): end in [span, n)
    start = end - span
    index = np.linspace(start, end, num=num_frames)
    return np.clip(index, start, end - 1).astype(np.int64)


def test_views(n_frames: int, num_frames: int = 16, n_temporal: int = 2,
               sampling_rate: int = 1) -> list[np.ndarray]:
    """``n_temporal`` index arrays (int64[num_frames] each) of the deterministic test clips.

    Frames are taken every ``sampling_rate``; view k starts at ``int(k * (M - num_frames) / (n_temporal - 1))``
    of those M frames. Clips shorter than ``num_frames`` are padded with their last frame.
    """
    if n_frames <= 0:
        raise ValueError(f"cannot sample from a clip with {n_frames} frames")
    if n_temporal < 1:
        raise ValueError(f"n_temporal must be >= 1, got {n_temporal}")
    pool = np.arange(0, n_frames, sampling_rate, dtype=np.int64)
    step = max((len(pool) - num_frames) / (n_temporal - 1), 0.0) if n_temporal > 1 else 0.0
    views = []
    for k in range(n_temporal):
        start = int(k * step)
        index = pool[start:start + num_frames]
        if len(index) < num_frames:
            index = np.concatenate([index, np.full(num_frames - len(index), index[-1], dtype=np.int64)])
        views.append(index)
    return views


test_views.__test__ = False  # not a pytest test, even when imported into a test module


def interpolated_indices(n_frames: int, num_frames: int) -> np.ndarray:
    """Time interpolation (TI, NR-DFERNet's §4.3 baseline): the whole video resampled to ``num_frames`` frames,
    evenly spaced from the first to the last (nearest frame; a shorter video repeats frames). The same clip in
    training and at test. int64[num_frames]."""
    if n_frames <= 0:
        raise ValueError(f"cannot sample from a clip with {n_frames} frames")
    return np.rint(np.linspace(0, n_frames - 1, num_frames)).astype(np.int64)


def dynamic_indices(n_frames: int, segments: int, per_segment: int,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """NR-DFERNet's dynamic sampling (DS, its §3.2): the whole video cut into ``segments`` equal parts, ``per_segment``
    consecutive frames from each: at a random start inside the part in training (``rng``), from its middle at
    test (``rng=None``). A part shorter than ``per_segment`` repeats its last frame. int64[segments * per_segment]."""
    if n_frames <= 0:
        raise ValueError(f"cannot sample from a clip with {n_frames} frames")
    bounds = np.linspace(0, n_frames, segments + 1)
    out = []
    for k in range(segments):
        lo, hi = int(bounds[k]), max(int(bounds[k + 1]), int(bounds[k]) + 1)
        room = max(hi - lo - per_segment, 0)
        start = lo + (int(rng.integers(0, room + 1)) if rng is not None else room // 2)
        out.append(np.minimum(np.arange(start, start + per_segment), min(hi, n_frames) - 1))
    return np.concatenate(out).astype(np.int64)


def test_clips(n_frames: int, num_frames: int, sampler: str = "dense", n_temporal: int = 2,
               sampling_rate: int = 1, segments: int = 8) -> list[np.ndarray]:
    """The deterministic test clips of a video under a run's ``data.sampler``: ``dense``, the official
    ``n_temporal`` windows (``test_views``); ``interpolate`` (TI) and ``dynamic`` (DS, the middle of each
    segment), one clip over the whole video."""
    if sampler == "dynamic":
        return [dynamic_indices(n_frames, segments, num_frames // segments)]
    if sampler == "interpolate":
        return [interpolated_indices(n_frames, num_frames)]
    return test_views(n_frames, num_frames, n_temporal, sampling_rate)


test_clips.__test__ = False
