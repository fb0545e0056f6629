"""One MAE pre-training epoch (facebookresearch/mae ``engine_pretrain.py`` recipe).

* learning rate set per step from the fractional epoch ``epoch + step / steps_per_epoch`` (MAE
  ``util/lr_sched.adjust_learning_rate``): linear warm-up from 0 over ``warmup_epochs``, then a half-cycle
  cosine from ``lr`` to ``min_lr``; updated at every optimizer step (every ``accum_iter`` batches);
* gradient accumulation over ``accum_iter`` batches (effective batch = batch x accum_iter x GPUs);
* optional mixed precision on CUDA (``dfer.engine.loop.Precision``; fp16 uses a GradScaler);
* AdamW betas (0.9, 0.95), weight decay 0.05 on >1-D tensors only (:func:`build_optimizer`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from dfer.engine.loop import Precision
from dfer.engine.progress import Throughput, bar

MAE_BETAS = (0.9, 0.95)
LR_REFERENCE_BATCH = 256   # MAE: lr = blr * effective batch / 256


def absolute_lr(blr: float, effective_batch: int) -> float:
    """MAE's linear scaling rule."""
    return float(blr) * int(effective_batch) / LR_REFERENCE_BATCH


def lr_at(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: int) -> float:
    """MAE's schedule at the fractional ``epoch``: linear warm-up from 0, then half-cycle cosine to ``min_lr``."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """timm ``param_groups_weight_decay`` as MAE calls it: no decay on biases and 1-D tensors (norms); frozen
    tensors (the fixed position embeddings) are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": float(weight_decay)}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.05,
                    betas: tuple[float, float] = MAE_BETAS) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(float(b) for b in betas))


@dataclass
class Schedule:
    """What :func:`train_one_epoch` needs to set the learning rate."""
    lr: float
    min_lr: float
    warmup_epochs: float
    epochs: int
    steps_per_epoch: int          # batches per epoch
    accum_iter: int = 1

    def lr_for(self, epoch: int, step: int) -> float:
        return lr_at(epoch + step / self.steps_per_epoch, self.lr, self.min_lr, self.warmup_epochs, self.epochs)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, epoch: int,
                    schedule: Schedule, device: torch.device, precision: Precision | None = None,
                    scaler: torch.amp.GradScaler | None = None, mask_ratio: float | None = None,
                    start_step: int = 0, show: bool = True,
                    stop_requested: Callable[[], bool] = lambda: False) -> dict:
    """Train over ``loader`` (already positioned at batch ``start_step``). Batches are dicts with ``video``
    ``[B, 3, H, W]`` (or ``[B, 3, 1, H, W]``). Returns ``loss_sum``, ``steps``, ``step`` (next batch to run),
    ``images``, ``seconds``, ``losses`` (per batch) and ``stopped`` (``stop_requested()`` was honoured at an
    optimizer-step boundary)."""
    precision = precision or Precision()
    accum = max(int(schedule.accum_iter), 1)
    model.train()
    meter = Throughput()
    loss_sum, n, step, stopped = 0.0, 0, start_step, False
    losses: list[float] = []
    lr = schedule.lr_for(epoch, step)
    pbar = bar(schedule.steps_per_epoch, f"mae epoch {epoch + 1}", enabled=show, initial=start_step)
    optimizer.zero_grad(set_to_none=True)
    for batch in loader:
        imgs = batch["video"] if isinstance(batch, dict) else batch
        if imgs.ndim == 5:  # [B, 3, 1, H, W] from an image dataset
            imgs = imgs.squeeze(2)
        imgs = imgs.to(device, non_blocking=True)
        if step % accum == 0:
            lr = schedule.lr_for(epoch, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
        with precision.autocast():
            loss, _, _ = model(imgs, mask_ratio)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"MAE loss is {value} at epoch {epoch + 1} step {step + 1}; lower "
                                     "pretrain.blr or disable pretrain.amp")
        scaled = loss / accum
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        step += 1
        if step % accum == 0 or step == schedule.steps_per_epoch:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += value
        losses.append(value)
        n += 1
        meter.update(int(imgs.shape[0]))
        pbar.set_postfix(loss=f"{loss_sum / n:.4f}", lr=f"{lr:.2e}", img_s=f"{meter.rate:.1f}", refresh=False)
        pbar.update(1)
        # Checked at an optimizer-step boundary, before the loader draws (and augments) the next batch.
        if step < schedule.steps_per_epoch and step % accum == 0 and stop_requested():
            stopped = True
            break
    pbar.close()
    return {"loss_sum": loss_sum, "steps": n, "step": step, "images": meter.clips, "seconds": meter.seconds,
            "losses": losses, "stopped": stopped}
