"""Training and inference throughput (clips/s) and peak memory of the S2D engine step, tiny and ViT-B/16;
side by side with the official S2D code's step.

    .venv/bin/python benchmarks/bench_train.py [--models s2d_tiny s2d_base_patch16_224] [--steps 3]
    .venv/bin/python benchmarks/bench_train.py --models s2d_base_patch16_224 --official-repo PATH/TO/S2D

Synthetic tensors in the run's shapes (16 frames; tiny 112 px, ViT-B 224 px) through the engine's own step
(`dfer.engine.loop.train_one_epoch` with the paper preset's AdamW recipe, warm-up/cosine, the frozen landmark
net on the batch, the freezing rule) and the evaluation path (`predict_views`); CUDA (AMP bf16) when available,
else CPU. ``--official-repo`` times the official training step on the same batch from a checkout of
MSA-LMC/S2D (its ``model_finetuning.py`` + ``landmark/`` imported from there, nothing copied; it needs the
official environment's timm 0.6): ``torch.cuda.amp.autocast()`` (fp16) + GradScaler, landmarks on the fly,
SoftTargetCrossEntropy, AdamW on the official trainable parameters, as ``engine_for_finetuning.py``.
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


def paper_recipe() -> dict:
    from dfer.config import load_params

    return load_params(overrides=["preset=paper"])["train"]


def bench(name: str, batch: int, steps: int, device: torch.device) -> float:
    size, t = SIZES.get(name, 224), 16
    recipe = paper_recipe()
    model = create_model(name, num_classes=7, num_frames=t).to(device)
    freeze_for_dfer(model)
    total, tunable = count_parameters(model)
    lmk = LandmarkFeatures("MobileFaceNet", None).to(device)
    opt = build_optimizer(model, recipe, 1e-4)
    prec = Precision.from_config(recipe, device)
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
    return train_rate


def official_step_rate(repo: str, batch: int, steps: int, device: torch.device) -> float:
    """clips/s of the official S2D training step (MSA-LMC/S2D ``engine_for_finetuning.train_one_epoch``'s body)."""
    import sys

    sys.path.insert(0, repo)
    import model_finetuning  # noqa: F401 - registers s2d_base_patch16_224 with the official timm
    from landmark import Landmark
    from timm.loss import SoftTargetCrossEntropy
    from timm.models import create_model as official_create

    model = official_create("s2d_base_patch16_224", pretrained=False, num_classes=7, adapter_scale=0.25,
                            head_dropout_ratio=0.5, num_frames=16, in_chans_l=128).to(device)
    for n, p in model.named_parameters():  # run_class_finetuning.py's freezing rule
        p.requires_grad = any(k in n for k in ("temporal_embedding", "temporal_attn", "cls_token_t", "ln_post",
                                               "cls_head", "Adapter", "head", "prompt"))
    lmk = Landmark("MobileFaceNet").to(device).eval()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.05)
    scaler = torch.cuda.amp.GradScaler()
    criterion = SoftTargetCrossEntropy()
    x = torch.randn(batch, 3, 16, 224, 224, device=device)
    y = torch.softmax(torch.randn(batch, 7, device=device), -1)

    def step():
        with torch.cuda.amp.autocast():
            a = lmk(x)
            out, _ = model(x, a)
            loss = criterion(out, y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - t0)
    print(f"{'official S2D step':<22} {device.type:<5} batch {batch:>3}  train {rate:8.2f} clips/s (fp16 autocast + "
          "GradScaler)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SIZES))
    ap.add_argument("--batch", type=int, default=None, help="default: 2 on CPU, 8 on CUDA")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--official-repo", default=None, help="a checkout of MSA-LMC/S2D: time its step too (CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = args.batch or (8 if device.type == "cuda" else 2)
    rates = {name: bench(name, batch, args.steps, device) for name in args.models}
    if args.official_repo:
        if device.type != "cuda":
            raise SystemExit("--official-repo needs a CUDA device (the official step uses torch.cuda.amp)")
        official = official_step_rate(args.official_repo, batch, args.steps, device)
        ours = rates.get("s2d_base_patch16_224")
        if ours:
            print(f"ours / official: {ours / official:.2f}x")


if __name__ == "__main__":
    main()
