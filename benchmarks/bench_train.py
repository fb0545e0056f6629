"""Training and inference throughput (clips/s) and peak memory of the S2D engine step, tiny and ViT-B/16.

    .venv/bin/python benchmarks/bench_train.py [--models s2d_tiny s2d_base_patch16_224] [--steps 3]

Synthetic tensors in the run's shapes (16 frames; tiny 112 px, ViT-B 224 px) through the engine's own step
(`dfer.engine.loop.train_one_epoch` with AdamW, warm-up/cosine, the frozen landmark net on the batch) and
the evaluation path (`predict_views`). CUDA (AMP bf16) when available, else CPU.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from dfer.engine.loop import Precision, StepState, make_loader, predict_views, train_one_epoch
from dfer.engine.schedule import build_optimizer, cosine_schedule
from dfer.landmarks import LandmarkFeatures
from dfer.models import create_model
from dfer.models.params import count_parameters, freeze_for_dfer

SIZES = {"s2d_tiny": 112, "s2d_base_patch16_224": 224}


class Clips(Dataset):
    def __init__(self, n: int, t: int, size: int):
        self.n, self.t, self.size = n, t, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"video": torch.randn(3, self.t, self.size, self.size, generator=g), "label": i % 7, "index": i,
                "view": 0}


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(name: str, batch: int, steps: int, device: torch.device) -> None:
    size, t = SIZES.get(name, 224), 16
    model = create_model(name, num_classes=7, num_frames=t).to(device)
    freeze_for_dfer(model)
    total, tunable = count_parameters(model)
    lmk = LandmarkFeatures("MobileFaceNet", None).to(device)
    ds = Clips(batch * (steps + 1), t, size)
    opt = build_optimizer(model, {"weight_decay": 0.05}, 1e-4)
    prec = Precision.from_config({"amp": True}, device)
    scaler = torch.amp.GradScaler("cuda") if prec.needs_scaler else None
    st = StepState(opt, cosine_schedule(1e-4, 1e-6, 1, steps + 1, 0), steps + 1, prec, scaler, lmk, False, None,
                   "onehot", 0.0, 7)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = make_loader(Clips(batch, t, size), batch, None, 0, 0, True, device)
    train_one_epoch(model, warm, st, 0, device, show=False)  # warm-up step
    if device.type == "cuda":
        torch.cuda.synchronize()
    loader = make_loader(Clips(batch * steps, t, size), batch, None, 0, 0, True, device)
    r = train_one_epoch(model, loader, st, 0, device, show=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_rate = r["clips"] / r["seconds"]
    out = predict_views(model, Clips(batch * steps, t, size), device, batch, lmk, prec, show=False)
    print(f"{name:<22} {device.type:<5} batch {batch:>3}  params {total / 1e6:7.2f} M ({tunable / 1e6:.2f} M tunable)  "
          f"train {train_rate:8.2f} clips/s  inference {out.rate:8.2f} clips/s  peak {peak_mb(device):8.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SIZES))
    ap.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 8 on CUDA")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = args.batch or (8 if device.type == "cuda" else 2)
    for name in args.models:
        bench(name, batch, args.steps, device)


if __name__ == "__main__":
    main()
