"""Learning-rate recipe: linear scaling with the total batch, layer-wise decay, step-level warm-up + cosine (or
exponential decay); AdamW or SGD.

Scaling: ``lr = lr * total_batch / lr_reference_batch`` (official S2D ``run_class_finetuning.py``: / 8; MAE
and MAE-SFER: / 256); ``min_lr`` and ``warmup_lr`` are scaled by ``total_batch / min_lr_reference_batch``
(official S2D: / 256; MAE: not scaled, ``null``). Schedule (VideoMAE / MAE ``cosine_scheduler``):
``warmup_epochs * steps`` steps linear from ``warmup_lr`` to ``lr`` (``np.linspace``, both ends included),
then ``min_lr + (lr - min_lr) * (1 + cos(pi * i / n)) / 2`` for the remaining ``n`` steps; a pure function of
the step, so resuming needs only the global step. Layer-wise lr decay (BEiT/MAE ``param_groups_lrd``): a
parameter of layer ``i`` (0 = embeddings, depth + 1 = head) gets ``lr * layer_decay ** (depth + 1 - i)``.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn as nn


def scaled_lrs(train: dict, total_batch: int) -> dict[str, float]:
    """``{"lr", "min_lr", "warmup_lr"}`` for the total (all GPUs, all accumulation steps) batch."""
    if total_batch < 1:
        raise ValueError(f"total batch size must be >= 1, got {total_batch}")
    lr_ref, min_ref = train["lr_reference_batch"], train["min_lr_reference_batch"]
    lr_scale = total_batch / lr_ref if lr_ref else 1.0
    min_scale = total_batch / min_ref if min_ref else 1.0
    return {"lr": float(train["lr"]) * lr_scale, "min_lr": float(train["min_lr"]) * min_scale,
            "warmup_lr": float(train["warmup_lr"]) * min_scale}


def lr_schedule(train: dict, lrs: dict, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """Per-step lr of the run's ``train.schedule``: ``cosine`` (warm-up + half cosine, the official S2D / MAE) or
    ``exponential`` (after the warm-up, ``lr * lr_gamma ** epoch``, stepped per epoch: NR-DFERNet's "decreased at
    an exponential rate")."""
    if train["schedule"] == "exponential":
        return exponential_schedule(lrs["lr"], float(train["lr_gamma"]), epochs, steps_per_epoch,
                                    float(train["warmup_epochs"]), lrs["warmup_lr"])
    return cosine_schedule(lrs["lr"], lrs["min_lr"], epochs, steps_per_epoch, float(train["warmup_epochs"]),
                           lrs["warmup_lr"])


def exponential_schedule(base: float, gamma: float, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0,
                         warmup_start: float = 0.0) -> np.ndarray:
    """Linear warm-up, then ``base * gamma ** k`` in the k-th epoch after it (torch ``ExponentialLR``)."""
    total = epochs * steps_per_epoch
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total)
    head = np.linspace(warmup_start, base, warmup) if warmup > 0 else np.zeros(0)
    k = np.arange(total - warmup) // max(steps_per_epoch, 1)
    return np.concatenate([head, base * gamma ** k]).astype(np.float64)


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


_EMBEDDINGS = ("cls_token", "pos_embed", "patch_embed", "temporal_embedding", "mask_token")
_LAYER = re.compile(r"^(?:blocks|prompt_blocks|prompt_norms)\.(\d+)\.")


def layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for block i (and S2D's MCP/TMA prompt block i), depth + 1 for the rest."""
    if name.startswith(_EMBEDDINGS):
        return 0
    m = _LAYER.match(name)
    return int(m.group(1)) + 1 if m else depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Trainable parameters only; no weight decay for biases, 1-D tensors (norms) and the model's
    ``no_weight_decay()`` names (VideoMAE ``get_parameter_groups``); ``lr_scale`` per layer."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    depth = len(model.blocks) if isinstance(getattr(model, "blocks", None), (nn.Sequential, nn.ModuleList)) else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or name in skip
        lid = layer_id(name, depth) if layer_decay != 1.0 else depth + 1
        g = groups.setdefault((lid, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else weight_decay,
                                                 "lr_scale": layer_decay ** (depth + 1 - lid)})
        g["params"].append(p)
    if not groups:
        raise ValueError("the model has no trainable parameters (check the freezing rule / model.kwargs)")
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, train: dict, lr: float) -> torch.optim.Optimizer:
    """``train.optimizer``: ``adamw`` (betas) or ``sgd`` (``momentum``), over :func:`param_groups`."""
    groups = param_groups(model, float(train["weight_decay"]), float(train["layer_decay"]))
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(train["momentum"]))
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(float(b) for b in train["betas"]))
