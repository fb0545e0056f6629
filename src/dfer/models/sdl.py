"""Emotion-Anchors based Self-Distillation Loss (SDL, S2D paper §III-D; official ``SDL.py``).

Per class c the SDL keeps two FIFO queues of ``queue_size`` anchors: features ``Q[c] [S, D]`` and softmax
probabilities ``P[c] [S, K]``. For a sample with feature f, the cosine similarity to every anchor is
computed, the top-``k`` anchors of each class are kept (similarities s_cj, j <= k), and the soft label is

    p_soft = sum_{c,j} s_cj * P[c, idx_cj] / sum_{c,j} s_cj          (paper Eq. 16-18)

The loss is ``L = CE(logits, y) + lambda * BCEWithLogits(logits, p_soft)`` (Eq. 19-21), lambda rising from 0
to 1 over training. Queues are updated with the features/probabilities of the current mini-batch under
their ground-truth labels (oldest anchors dropped).

Paper vs official code (also in the README's differences; the paper is the default, the official behaviour is a
named option):
  * lambda schedule. ``schedule="paper"``: "gradually increased from 0 to 1" -> linear,
    lambda = epoch / (total_epochs - 1). ``schedule="official"``: the step function of the official
    ``utils/loss.py`` (0 before epoch 30, 0.01 before 50, 0.1 before 60, 0.5 before 80, then 1), and the SDL
    term is only computed after epoch 20; the thresholds are given for 100 epochs and are scaled by
    ``total_epochs / 100`` (identical at 100 epochs).
  * queue updates. ``update="paper"``: every training step, from the current mini-batch.
    ``update="official"``: only in epochs with ``epoch % update_freq == 0 and epoch > 20`` (after the
    official 100-epoch scale), from a second no-grad forward on the un-mixed clip. With the official
    FERV39K setting (``update_freq=100``, 100 epochs, epochs 0..99) the queues are never updated and the
    soft labels come from the random initial queues; with ``update_freq=40`` updates happen in epochs 40
    and 80 only. ``update_freq`` is in official epochs: a shorter run updates in the epochs that cover an
    official epoch j with ``j % update_freq == 0 and j > 20``.
  * where SDL is used. The official DFEW and MAFW scripts do not pass ``--sdl`` (SDL off); only the
    FERV39K script enables it. The paper uses SDL on all DFER datasets (Table VII). The run config's
    ``train.loss`` (onehot | onehot_sdl) chooses.
  * queue initialisation. Paper: anchors "randomly selected from the training set". Official and here:
    ``torch.rand`` (uniform [0, 1)) features and probabilities; with ``update="paper"`` they are replaced by
    real samples after ``queue_size`` samples of each class.
  * The official queues are per-DDP-rank; ours are per process (buffers, saved in ``state_dict``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SCHEDULES = ("paper", "official")
UPDATES = ("paper", "official")
_OFFICIAL_STEPS = ((30, 0.0), (50, 0.01), (60, 0.1), (80, 0.5))  # (epoch below, weight) at 100 epochs
_OFFICIAL_START = 20  # SDL term and updates only for epoch > 20 (at 100 epochs)


@dataclass(frozen=True)
class SDLConfig:
    k: int = 2
    queue_size: int = 16
    schedule: str = "paper"     # paper | official
    update: str = "paper"       # paper | official
    update_freq: int = 40       # only for update="official" (the official scripts: 40 DFEW/MAFW, 100 FERV39K)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"SDL schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.update not in UPDATES:
            raise ValueError(f"SDL update must be one of {UPDATES}, got {self.update!r}")


def _official_epoch(epoch: int, total_epochs: int) -> float:
    return epoch * 100.0 / max(total_epochs, 1)


def _official_epochs_in(epoch: int, total_epochs: int) -> range:
    """The official (100-epoch scale) integer epochs that our ``epoch`` covers."""
    start = _official_epoch(epoch, total_epochs)
    end = _official_epoch(epoch + 1, total_epochs)
    return range(math.ceil(start - 1e-9), math.ceil(end - 1e-9))


def sdl_weight(epoch: int, total_epochs: int, schedule: str = "paper") -> float:
    """lambda for 0-based ``epoch`` of ``total_epochs``."""
    if schedule == "paper":
        return min(1.0, epoch / max(total_epochs - 1, 1))
    if schedule == "official":
        e = _official_epoch(epoch, total_epochs)
        if e <= _OFFICIAL_START:
            return 0.0
        for below, w in _OFFICIAL_STEPS:
            if e < below:
                return w
        return 1.0
    raise ValueError(f"SDL schedule must be one of {SCHEDULES}, got {schedule!r}")


def sdl_active(epoch: int, total_epochs: int, schedule: str = "paper") -> bool:
    """Whether the SDL term is computed this epoch (official: only after epoch 20)."""
    if schedule == "official":
        return any(j > _OFFICIAL_START for j in _official_epochs_in(epoch, total_epochs))
    return sdl_weight(epoch, total_epochs, schedule) > 0


def should_update(epoch: int, total_epochs: int, cfg: SDLConfig) -> bool:
    """Whether the anchor queues are updated during this epoch.

    official: ``j % update_freq == 0 and j > 20`` for an official epoch j this epoch covers (exact at 100).
    """
    if cfg.update == "paper":
        return True
    return any(j % cfg.update_freq == 0 and j > _OFFICIAL_START for j in _official_epochs_in(epoch, total_epochs))


def sdl_loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """BCEWithLogits(logits, soft targets), mean over batch and classes (official)."""
    return F.binary_cross_entropy_with_logits(logits, soft_targets.detach())


class SDL(nn.Module):
    """Emotion-anchor queues: ``soft_targets(feat, logits)`` and ``update(feat, logits, labels)``."""

    def __init__(self, num_classes: int, dim: int, k: int = 2, queue_size: int = 16):
        super().__init__()
        if not 1 <= k <= queue_size:
            raise ValueError(f"SDL needs 1 <= k <= queue_size, got k={k}, queue_size={queue_size}")
        self.num_classes, self.dim, self.k, self.queue_size = num_classes, dim, k, queue_size
        self.register_buffer("queue", torch.rand(num_classes, queue_size, dim))          # official Queue
        self.register_buffer("probs", torch.rand(num_classes, queue_size, num_classes))  # official Probe

    @torch.no_grad()
    def soft_targets(self, feat: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Soft labels ``[B, K]`` for features ``[B, D]`` (``logits`` only fix dtype/device, as official)."""
        feat = feat.detach().float()
        sim = torch.einsum("bd,csd->bcs", F.normalize(feat, dim=-1), F.normalize(self.queue.float(), dim=-1))
        top, idx = sim.topk(self.k, dim=-1)                                   # [B, C, k]
        anchors = self.probs.float()[torch.arange(self.num_classes, device=idx.device)[None, :, None], idx]
        soft = (top.unsqueeze(-1) * anchors).sum(dim=(1, 2)) / top.sum(dim=(1, 2)).unsqueeze(-1)
        return soft.to(logits.dtype) if logits is not None else soft

    @torch.no_grad()
    def update(self, feat: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """FIFO-push each sample's feature and softmax probabilities into its ground-truth class's queues."""
        probs = torch.softmax(logits.detach().float(), dim=1)
        feat = feat.detach().to(self.queue.dtype)
        for f, p, y in zip(feat, probs, labels.tolist()):
            self.queue[y] = torch.cat([self.queue[y, 1:], f[None]], dim=0)
            self.probs[y] = torch.cat([self.probs[y, 1:], p[None].to(self.probs.dtype)], dim=0)
