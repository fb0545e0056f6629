"""Decode throughput of 16-frame clips: frame folders (JPEG, PNG) and H.264 mp4 (decord, PyAV), and what
keeping decoded training frames (``DFER_FRAME_CACHE_MB``) saves per epoch.

Writes a small set of clips to a temporary folder, then times ``open_clip(sample).get(indices)`` for one
training clip (16 frames, official sampling) per item, single process, single thread; then reads the JPEG
clips as a training ``VideoClipDataset`` (``--input-size``) for three epochs with the frame cache off and on
(CPU seconds per epoch: the first epoch decodes, the next ones read kept frames).

    .venv/bin/python benchmarks/bench_decode.py [--clips 24] [--size 224] [--video-frames 64] [--repeats 3]
                                                [--input-size 112]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dfer.data import video
from dfer.data.annotations import Sample
from dfer.data.clips import open_clip
from dfer.data.datasets import FRAME_CACHE_ENV, VideoClipDataset
from dfer.data.sampling import train_indices


def make_clips(tmp: Path, n: int, size: int, video_frames: int) -> dict[str, list[Sample]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[Sample]] = {"frames .jpg (16f folder)": [], "frames .png (16f folder)": [],
                                    "mp4 decord": [], "mp4 PyAV": []}
    for i in range(n):
        # a smooth moving pattern, so the codecs see realistic (compressible) content
        yy, xx = np.mgrid[:size, :size]
        clip = np.stack([np.stack([(np.sin((xx + 3 * t) / 9.0) * 100 + 128),
                                   (np.cos((yy - 2 * t) / 7.0) * 100 + 128),
                                   np.full((size, size), 40.0 + i)], -1) for t in range(video_frames)])
        clip = np.clip(clip + rng.normal(0, 4, clip.shape), 0, 255).astype(np.uint8)
        for ext, key in ((".jpg", "frames .jpg (16f folder)"), (".png", "frames .png (16f folder)")):
            folder = tmp / ext[1:] / f"{i:05d}"
            folder.mkdir(parents=True)
            for t in range(16):
                cv2.imwrite(str(folder / f"{t + 1}{ext}"), cv2.cvtColor(clip[t], cv2.COLOR_RGB2BGR))
            out[key].append(Sample(f"{i:05d}", 0, folder, "frames", "bench", "bench"))
        mp4 = video.write_video(tmp / "mp4" / f"{i:05d}.mp4", clip)
        out["mp4 decord"].append(Sample(f"{i:05d}", 0, mp4, "video", "bench", "bench"))
        out["mp4 PyAV"].append(Sample(f"{i:05d}", 0, mp4, "video", "bench", "bench"))
    return out


def bench(samples: list[Sample], backend: str, repeats: int) -> float:
    rng = np.random.default_rng(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for s in samples:
            clip = open_clip(s, backend=backend)
            frames = clip.get(train_indices(len(clip), 16, 1, rng))
            assert frames.shape[0] == 16
        best = min(best, time.perf_counter() - start)
    return len(samples) / best


def epoch_cpu_seconds(samples: list[Sample], input_size: int, cache_mb: str, epochs: int = 3) -> list[float]:
    """CPU seconds of each epoch of reading ``samples`` as a training set (16 frames, no augmentation)."""
    os.environ[FRAME_CACHE_ENV] = cache_mb
    ds = VideoClipDataset(samples, num_frames=16, input_size=input_size, mode="train")
    times = []
    for _ in range(epochs):
        start = time.process_time()
        for i in range(len(ds)):
            ds[i]
        times.append(time.process_time() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--video-frames", type=int, default=64, help="frames per mp4 (random 16-frame window)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=112, help="training input size of the epoch timing")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        sets = make_clips(Path(tmp), args.clips, args.size, args.video_frames)
        print(f"decode throughput, 16-frame clips, {args.size}x{args.size}, {args.clips} clips, best of "
              f"{args.repeats}, 1 thread")
        print(f"{'source':<28} {'clips/s':>8} {'frames/s':>9}")
        for name, samples in sets.items():
            backend = "pyav" if "PyAV" in name else "decord" if "decord" in name else "auto"
            rate = bench(samples, backend, args.repeats)
            print(f"{name:<28} {rate:8.1f} {rate * 16:9.0f}")
        jpg = sets["frames .jpg (16f folder)"]
        print(f"\ntraining epochs over the {len(jpg)} JPEG clips at {args.input_size} px (CPU s per epoch)")
        for label, mb in (("decoded every epoch", "0"), ("frames kept", "1024")):
            times = epoch_cpu_seconds(jpg, args.input_size, mb)
            print(f"{label:<28} " + "  ".join(f"{t:6.3f}" for t in times))


if __name__ == "__main__":
    main()
