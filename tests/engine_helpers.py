"""Tiny real datasets and run configs for the engine tests (DFEW layout of the official S2D release)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

# One colour per class: a learnable signal for a tiny model in a few steps.
PALETTE = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40], [220, 40, 220],
                    [40, 220, 220], [130, 130, 130]], dtype=np.float32)


def write_dfew(root: Path, n_train: int = 28, n_test: int = 14, frames: int = 6, size: int = 32,
               fold: int = 1, seed: int = 0) -> Path:
    """``root/Clip/clip_224x224_16f/<id>/<k>.jpg`` + ``EmoLabel_DataSplit/{train,test}(single-labeled)``."""
    rng = np.random.default_rng(seed)
    clip_root = root / "Clip" / "clip_224x224_16f"
    rows = {"train": [], "test": []}
    cid = 1
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 7
            name = f"{cid:05d}"
            cid += 1
            d = clip_root / name
            d.mkdir(parents=True)
            for k in range(frames):
                img = np.clip(PALETTE[label] * (0.6 + 0.4 * k / frames) + rng.normal(0, 25, (size, size, 3)), 0,
                              255).astype(np.uint8)
                cv2.imwrite(str(d / f"{k + 1}.jpg"), img[:, :, ::-1])
            rows[split].append(f"{name},{label}")
    for split in rows:
        f = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"{split}_set_{fold}.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("video_name,label\n" + "\n".join(rows[split]) + "\n")
    return root


def run_config(data_root: Path, out: Path, **over) -> dict:
    """A complete run config for the tiny S2D model on the tiny DFEW (landmark net on the fly, random init)."""
    cfg = {
        "name": "test/s2d/DFEW/fold1", "task": "dfer", "method": "s2d", "dataset": "DFEW", "fold": 1,
        "eval_datasets": [], "seed": 0,
        "data": {"root": str(data_root), "format": "s2d", "frames": "Clip/clip_224x224_16f",
                 "frame_order": "natural", "subset": None, "num_frames": 4, "sampling_rate": 1,
                 "input_size": 32, "test_views": {"temporal": 2, "spatial": 2}, "oversample": False,
                 "features": None},
        "model": {"name": "s2d_tiny", "kwargs": {"fusion": "mcp", "adapter": "tma", "embed_dim": 32, "depth": 2,
                                                 "num_heads": 2, "adapter_heads": 2, "patch_size": 16},
                  "init": None, "init_format": "dfer"},
        "landmarks": {"backbone": "MobileFaceNet", "weights": None},
        "train": {"epochs": 2, "batch_size": 4, "lr": 1.0e-3, "min_lr": 1.0e-6, "warmup_lr": 1.0e-6,
                  "warmup_epochs": 1, "weight_decay": 0.05, "betas": [0.9, 0.999], "loss": "onehot",
                  "label_smoothing": 0.1, "sdl": {"k": 2, "queue_size": 4, "schedule": "paper", "update": "paper"},
                  "augment": {"hflip": True, "random_resized_crop": False, "rand_augment": None, "mixup": 0.0,
                              "cutmix": 0.0, "random_erasing": 0.0},
                  "amp": True, "num_workers": 0, "freeze": "none"},
        "evaluate": {"select": "last"},
        "output_dir": str(out),
    }
    for key, value in over.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
