"""Tiny real datasets and run configs for the engine tests (DFEW layout of the official S2D release)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

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


# A tiny S2D for CPU seconds (the registry's s2d_tiny, narrower and shallower).
TINY = {"model.kwargs.embed_dim": 32, "model.kwargs.depth": 2, "model.kwargs.num_heads": 2,
        "model.kwargs.adapter_heads": 2, "model.kwargs.patch_size": 16}
# No landmark branch: the fastest model (most engine tests need no landmark net).
FAST = {"model.kwargs.fusion": "none", "landmarks": None}


def run_config(data_root: Path, out: Path, set_: dict | None = None) -> dict:
    """The real run config of S2D on DFEW fold 1 (params.yaml, synthetic preset, as the planner makes it),
    shrunk for a CPU test: the tiny DFEW at ``data_root``, 4-frame 32 px clips, a tiny model, 2 epochs of
    batch 4, no init, landmark features computed on the fly. ``set_``: dotted overrides, as a table cell's
    ``set:`` in workflow/tables.yaml."""
    from dfer.config import load_params, set_path
    from dfer.engine.runconfig import check
    from dfer.workflow.plan import method_run_config

    cfg = method_run_config(load_params(ROOT / "params.yaml"), "s2d", "DFEW", fold=1)
    shrink = {"name": "test/s2d/DFEW/fold1", "output_dir": str(out), "data.root": str(data_root),
              "data.frames": "Clip/clip_224x224_16f", "data.features": None, "data.num_frames": 4,
              "data.input_size": 32, "model.init": None, "model.init_dataset": None, **TINY,
              "train.epochs": 2, "train.gpus": 1, "train.batch_size": 4, "train.total_batch": 4, "train.lr": 1.0e-3,
              "train.min_lr": 1.0e-6, "train.warmup_epochs": 1, "train.loss": "onehot", "train.sdl.queue_size": 4,
              "train.augment.hflip": True, "train.freeze": "none", "tracking.tracking_uri": "sqlite:///unused.db"}
    for key, value in {**shrink, **(set_ or {})}.items():
        set_path(cfg, key.split("."), value)
    check(cfg, source="engine_helpers.run_config")  # valid; the dict is returned for the tests to edit and write
    return cfg


def landmark_weights(folder: Path, backbone: str = "MobileNetV2_56") -> dict:
    """A run config's ``landmarks`` entry with small weights the test makes itself (a seeded, untrained net in
    the official checkpoint format: ``{'state_dict': ...}``)."""
    import torch

    from dfer.landmarks.registry import build_landmark_net

    path = Path(folder) / f"{backbone}.pth.tar"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": build_landmark_net(backbone, None, seed=0).state_dict()}, path)
    return {"backbone": backbone, "weights": str(path)}


def write_config(cfg: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def write_rafdb(root: Path, n_train: int = 28, n_test: int = 7, size: int = 32, seed: int = 1) -> Path:
    """RAF-DB's official layout: ``basic/EmoLabel/list_patition_label.txt`` (1-based codes) and
    ``basic/Image/aligned/<name>_aligned.jpg``; one colour per class as in :func:`write_dfew`."""
    from dfer.data import labels

    rng = np.random.default_rng(seed)
    # RAF-DB's codes: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            code = i % 7 + 1
            name = f"{split}_{i + 1:05d}"
            img = np.clip(PALETTE[code - 1] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            path = root / "basic" / "Image" / "aligned" / f"{name}_aligned.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img[:, :, ::-1])
            rows.append(f"{name}.jpg {code}")
    f = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(rows) + "\n")
    assert len(labels.classes("RAF-DB")) == 7
    return root
