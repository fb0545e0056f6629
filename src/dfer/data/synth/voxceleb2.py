"""``VoxCeleb2``: unlabelled talking-face clips, the synthetic stand-in for VoxCeleb2's dev set (UniLearn's
video pre-training data).

VoxCeleb2 dev (Chung et al. 2018) holds face-centred 224x224 MP4 clips of people speaking in interviews, laid out
``dev/mp4/<speaker id>/<YouTube id>/<clip>.mp4`` (``id00012/21Uxsk56VDQ/00001.mp4``). The stand-in keeps that
layout: every clip shows one synthetic face, aligned as VoxCeleb2's crops are, always speaking (speech-like mouth
motion), mostly neutral with the occasional expression (a broad prior, not a dataset's labels: nothing reads
them), with the generator's pose drift, occlusion and clutter. Ground truth (``_groundtruth/``) records the
rendered expression and landmarks, for evaluation only. Item ``i`` draws from its own seeded RNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATASET = "VoxCeleb2"
# Interviews: mostly neutral talking, some smiling, the rest rare.
PRIOR = {"neutral": 0.55, "happiness": 0.25, "surprise": 0.06, "sadness": 0.05, "anger": 0.04, "disgust": 0.03,
         "fear": 0.02}


def clip_path(speaker: int, video: int, clip: int) -> str:
    """``dev/mp4/id00001/<11-character video id>/00001.mp4`` (VoxCeleb2's naming)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    rng = np.random.default_rng(speaker * 1000 + video)
    yt = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))
    return f"dev/mp4/id{speaker:05d}/{yt}/{clip:05d}.mp4"


def write_voxceleb2(tmp: Path, final: Path, cfg: dict, diff: dict, seed: int, progress) -> dict:
    """Writer of the ``VoxCeleb2`` folder (signature of ``dfer.data.synth.writers``)."""
    from dfer.data.synth.clips import render_clip
    from dfer.data.synth.writers import _n, _write_mp4, item_rng, write_clip_groundtruth, write_lines

    speakers = _n(cfg, "speakers", cfg["scale"], 2)
    videos, clips_per_video = int(cfg["videos_per_speaker"]), int(cfg["clips_per_video"])
    size, (lo, hi), fps = int(cfg["size"]), cfg["frames"], int(cfg["fps"])
    talking = {**diff, "speech": 1.0}
    names, probs = list(PRIOR), np.array(list(PRIOR.values()))
    items = [(s, v, c) for s in range(1, speakers + 1) for v in range(1, videos + 1)
             for c in range(1, clips_per_video + 1)]
    gt_dir = tmp / "_groundtruth"
    lines, counts, n_frames = [], {n: 0 for n in names}, 0
    for i in progress(range(len(items)), desc=DATASET):
        r_ = item_rng(seed, DATASET, i)
        emotion = names[int(r_.choice(len(names), p=probs / probs.sum()))]
        T = int(r_.integers(lo, hi + 1))
        r = render_clip(r_, emotion, T, (size, size), "aligned", talking)
        rel = clip_path(*items[i])
        _write_mp4(tmp / rel, r.frames, fps)
        write_clip_groundtruth(gt_dir, rel[: -len(".mp4")], r, "unlabelled", {"fps": fps})
        lines.append(rel)
        counts[emotion] += 1
        n_frames += T
    write_lines(tmp / "dev" / "clips.txt", [ln[len("dev/"):] for ln in lines])
    return {"items": len(items), "frames": n_frames, "speakers": speakers, "counts": {"rendered": counts},
            "label_noise": 0.0}
