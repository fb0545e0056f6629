"""Learning-rate recipe of the official S2D code: linear scaling with the batch, step-level warm-up + cosine.

Official (``run_class_finetuning.py``): ``lr = lr * total_batch / 8``; ``min_lr`` and ``warmup_lr`` are
scaled by ``total_batch / 256``; then VideoMAE's ``cosine_scheduler``: ``warmup_epochs * steps`` steps
linear from ``warmup_lr`` to ``lr`` (``np.linspace``, both ends included), then
``min_lr + (lr - min_lr) * (1 + cos(pi * i / n)) / 2`` for the remaining ``n`` steps. The schedule is a
pure function of the step, so resuming needs only the global step.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

LR_REFERENCE_BATCH = 8         # official: args.lr * total_batch_size / 8
MIN_LR_REFERENCE_BATCH = 256   # official: min_lr, warmup_lr * total_batch_size / 256


def scaled_lrs(train: dict, total_batch: int) -> dict[str, float]:
    """``{"lr", "min_lr", "warmup_lr"}`` for the total (all GPUs) batch size, scaled as the official code."""
    if total_batch < 1:
        raise ValueError(f"total batch size must be >= 1, got {total_batch}")
    return {"lr": float(train["lr"]) * total_batch / LR_REFERENCE_BATCH,
            "min_lr": float(train.get("min_lr", 1e-8)) * total_batch / MIN_LR_REFERENCE_BATCH,
            "warmup_lr": float(train.get("warmup_lr", 1e-7)) * total_batch / MIN_LR_REFERENCE_BATCH}


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0,
                    warmup_start: float = 0.0) -> np.ndarray:
    """Per-step values ``[epochs * steps_per_epoch]``: linear warm-up, then half-cosine to ``final``."""
    total = epochs * steps_per_epoch
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total)
    head = np.linspace(warmup_start, base, warmup) if warmup > 0 else np.zeros(0)
    n = total - warmup
    i = np.arange(n)
    tail = final + 0.5 * (base - final) * (1 + np.cos(math.pi * i / max(n, 1)))
    return np.concatenate([head, tail]).astype(np.float64)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters only; no weight decay for biases, 1-D tensors (norms) and the model's
    ``no_weight_decay()`` names (VideoMAE ``get_parameter_groups``)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (check the freezing rule / model.kwargs)")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, train: dict, lr: float) -> torch.optim.AdamW:
    betas = tuple(float(b) for b in train.get("betas", (0.9, 0.999)))
    return torch.optim.AdamW(param_groups(model, float(train.get("weight_decay", 0.05))), lr=lr, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
