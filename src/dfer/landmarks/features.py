"""`dfer extract-features`: landmark-aware features of every frame of a dataset, computed once and cached.

For every clip/image of the dataset (union of all folds and splits) the frames are read exactly as the
data loader reads them without augmentation (``clip.get(indices, size=(S, S))`` / ``read_image(sample,
(S, S))``, S = ``--input-size``, the video model's input size), ImageNet-normalised, and passed through
:class:`LandmarkFeatures`. So a cached feature equals the on-the-fly feature of the same pixels (to float16
precision). Training that moves pixels (flip, crop, RandAugment) must compute features on the batch instead.

Output ``<out>/<id with '/' -> '__'>.npy``: float16 ``[T_all, C, 14, 14]`` (row k = frame k in the
dataset's frame order), written atomically; ``<out>/index.json``: the fingerprint (backbone, weights hash,
input size, frame order) and one entry per item. A second run recomputes nothing; a changed fingerprint
(new weights, other input size) recomputes everything.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from dfer.cli import add_params_args, command_parser, stage_params
from dfer.data.annotations import FOLDED_DATASETS, IMAGE_DATASETS, Sample, cache_name
from dfer.data.errors import DataError
from dfer.io import atomic_path, file_sha256, write_json
from dfer.landmarks.extractor import LandmarkFeatures

INDEX_NAME = "index.json"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------ samples
def dataset_samples(dataset: str, params: dict | None = None, base: str | os.PathLike | None = None) \
        -> list[Sample]:
    """Every clip/image of ``dataset`` from params.yaml: all folds and splits, each id once."""
    from dfer.config import load_params, project_root
    from dfer.data.annotations import load_dataset_entry, with_aligned_frames

    cfg = params if params is not None else load_params()
    entries = cfg["data"]["datasets"]
    if dataset not in entries:
        raise KeyError(f"dataset {dataset!r} is not in params.yaml data.datasets ({sorted(entries)})")
    # every item (a training subset does not apply here), read from the frames the models read: a dataset the
    # workflow aligns is cached from its aligned crops, not from the raw videos
    entry = with_aligned_frames(dataset, dict(entries[dataset]))
    base = Path(base) if base is not None else project_root()
    folds = (entry["folds"] or [1, 2, 3, 4, 5]) if dataset in FOLDED_DATASETS else [None]
    splits = ("train", "val", "test") if dataset in IMAGE_DATASETS else ("train", "test")
    seen: dict[str, Sample] = {}
    for fold in folds:
        for split in splits:
            try:
                samples = load_dataset_entry(dataset, entry, split, fold,
                                             frame_order=cfg["data"]["frame_order"], base=base)
            except DataError:
                raise
            except ValueError as exc:  # e.g. "RAF-DB has no validation split"
                if "split" in str(exc):
                    continue
                raise
            for s in samples:
                seen.setdefault(s.id, s)
    return list(seen.values())


# ------------------------------------------------------------------------------------ reading
def read_item_frames(sample: Sample, size: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames ``start:stop`` of a clip (or the image) as the data loader reads them: ``uint8[T,S,S,3]``."""
    from dfer.data.clips import open_clip, read_image

    if sample.kind == "image":
        return read_image(sample, (size, size))[None]
    clip = open_clip(sample)
    stop = len(clip) if stop is None else min(stop, len(clip))
    return clip.get(range(start, stop), size=(size, size))


def item_length(sample: Sample) -> int:
    from dfer.data.clips import open_clip

    return 1 if sample.kind == "image" else len(open_clip(sample))


def frames_to_input(frames: np.ndarray) -> torch.Tensor:
    """``uint8[T,H,W,3]`` -> ImageNet-normalised ``float32[T,3,H,W]``: what the video model receives."""
    from dfer.data.transforms import to_normalized_tensor

    return to_normalized_tensor(frames)


# ------------------------------------------------------------------------------------ cache I/O
def feature_path(out_dir: str | os.PathLike, sample_id: str) -> Path:
    return Path(out_dir) / f"{cache_name(sample_id)}.npy"


def load_features(out_dir: str | os.PathLike, sample_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
    """Cached float16 ``[T, C, 14, 14]`` features of one item (all frames, or ``indices``)."""
    path = feature_path(out_dir, sample_id)
    if not path.is_file():
        raise DataError(path, f"no cached landmark features for {sample_id}",
                        "run `dfer extract-features` for this dataset")
    arr = np.load(path, mmap_mode="r")
    return np.asarray(arr if indices is None else arr[list(indices)])


def fingerprint(backbone: str, weights, input_size: int, frame_order: str | None) -> dict:
    return {"version": FORMAT_VERSION, "backbone": backbone, "input_size": int(input_size),
            "frame_order": frame_order, "dtype": "float16",
            "weights_sha256": file_sha256(weights) if weights else None}


# ------------------------------------------------------------------------------------ extraction
@dataclass
class _Pending:
    sample: Sample
    n_frames: int
    chunks: list = field(default_factory=list)
    done: int = 0


@dataclass
class ExtractStats:
    items: int = 0
    computed: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0


def _chunks(samples: list[Sample], size: int, chunk: int) -> Iterator[tuple[_Pending, np.ndarray]]:
    for s in samples:
        n = item_length(s)
        pending = _Pending(s, n)
        for start in range(0, n, chunk):
            yield pending, read_item_frames(s, size, start, start + chunk)


def extract_features(samples: Sequence[Sample], out_dir: str | os.PathLike, backbone: str = "MobileFaceNet",
                     weights: str | os.PathLike | None = None, input_size: int | None = None,
                     batch_size: int = 64, device: str = "cpu", progress: bool = True) -> ExtractStats:
    """Compute and cache features for ``samples`` under ``out_dir``; existing up-to-date files are skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extractor = LandmarkFeatures(backbone, weights).to(device)
    size = int(input_size or extractor.input_size)
    orders = sorted({s.frame_order for s in samples if s.kind != "image"})
    fp = fingerprint(backbone, weights, size, orders[0] if len(orders) == 1 else ",".join(orders) or None)
    index_path = out / INDEX_NAME
    old = json.loads(index_path.read_text()) if index_path.is_file() else None
    items: dict[str, dict] = {}
    if old is not None and old.get("fingerprint") == fp:
        items = dict(old.get("items", {}))
    elif old is not None:
        print(f"dfer extract-features: {out} was made with {old.get('fingerprint')}; recomputing every item "
              f"for {fp}", file=sys.stderr)
    # Header first: a killed run leaves files that a rerun with the same fingerprint may keep.
    write_json(index_path, {"fingerprint": fp, "channels": extractor.channels, "items": items}, indent=1,
               sort_keys=True, end="")

    stats = ExtractStats(items=len(samples))
    todo = []
    for s in samples:
        path = feature_path(out, s.id)
        same_fp = old is not None and old.get("fingerprint") == fp
        if same_fp and path.is_file():
            if s.id not in items:  # written by a run that was killed before updating the index
                items[s.id] = {"file": path.name, "frames": int(np.load(path, mmap_mode="r").shape[0])}
            stats.skipped += 1
        else:
            todo.append(s)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"features {backbone}", unit="item", disable=not progress)
    t0 = time.perf_counter()
    buffer: list[tuple[_Pending, np.ndarray]] = []

    def flush() -> None:
        if not buffer:
            return
        x = frames_to_input(np.concatenate([f for _, f in buffer])).to(device)
        feats = extractor(x).to("cpu", torch.float16).numpy()
        offset = 0
        for pending, frames in buffer:
            pending.chunks.append(feats[offset:offset + len(frames)])
            offset += len(frames)
            pending.done += len(frames)
            if pending.done == pending.n_frames:
                arr = np.concatenate(pending.chunks)
                with atomic_path(feature_path(out, pending.sample.id)) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, arr)
                items[pending.sample.id] = {"file": feature_path(out, pending.sample.id).name,
                                            "frames": int(arr.shape[0])}
                stats.computed += 1
                stats.frames += int(arr.shape[0])
                pending.chunks.clear()
                bar.update(1)
        buffer.clear()

    n_buffered = 0
    for pending, frames in _chunks(todo, size, batch_size):
        buffer.append((pending, frames))
        n_buffered += len(frames)
        if n_buffered >= batch_size:
            flush()
            n_buffered = 0
    flush()
    bar.close()
    stats.seconds = time.perf_counter() - t0
    write_json(index_path, {"fingerprint": fp, "channels": extractor.channels, "items": items}, indent=1,
               sort_keys=True, end="")
    return stats


# ------------------------------------------------------------------------------------ CLI
def parse_landmark_args(ap: argparse.ArgumentParser, argv: list[str] | None):
    """The end every landmark command shares (`extract-features`, `train-landmarks`): add ``--device``,
    ``--params`` and ``--set``, parse ``argv``; ``(args, params, base, backbone)``, the backbone from
    ``--backbone`` else params ``landmarks.backbone``."""
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_params_args(ap)
    args = ap.parse_args(argv)
    params, base = stage_params(args)
    return args, params, base, args.backbone or params["landmarks"]["backbone"]


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("extract-features", __doc__)
    ap.add_argument("--dataset", required=True, help="key of params.yaml data.datasets (DFEW, MAFW, ...)")
    ap.add_argument("--backbone", default=None, help="landmark net (default: params landmarks.backbone)")
    ap.add_argument("--weights", default=None,
                    help="landmark checkpoint (official .pth.tar or `dfer train-landmarks` model.pt); "
                         "default: params landmarks.weights[<backbone>]")
    ap.add_argument("--input-size", type=int, default=None,
                    help="frame size the video model reads (run config data.input_size); "
                         "default: params landmarks.features.input_size, else the net's input size")
    ap.add_argument("--out", default=None, help="cache folder (default: results/features/<DATASET>/<BACKBONE>)")
    ap.add_argument("--batch-size", type=int, default=None, help="frames per forward pass")
    args, cfg, base, backbone = parse_landmark_args(ap, argv)
    lcfg = cfg["landmarks"]
    weights = args.weights or lcfg["weights"][backbone]
    input_size = args.input_size or lcfg["features"]["input_size"]
    batch_size = args.batch_size or int(lcfg["features"]["batch_size"])
    out = Path(args.out or f"results/features/{args.dataset}/{backbone}")
    samples = dataset_samples(args.dataset, cfg, base)
    stats = extract_features(samples, out, backbone, weights, input_size, batch_size, args.device)
    fps = stats.frames / stats.seconds if stats.seconds > 0 and stats.frames else 0.0
    print(f"{args.dataset}/{backbone}: {stats.items} items, {stats.computed} computed ({stats.frames} frames, "
          f"{fps:.1f} frames/s), {stats.skipped} already cached -> {out}")
    return 0
