"""Building blocks of training and evaluation: model/landmark construction, the epoch sampler, one training
epoch, and view-level inference.

Determinism and resumption: every source of randomness is either the global python/numpy/torch RNG (saved
in the resume checkpoint) or a generator seeded from ``(seed, epoch)`` (the sampler's order and the
DataLoader workers' seeds), so an epoch replays identically after a restart, and a mid-epoch restart skips
the batches already done.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from dfer.engine.progress import Throughput, bar
from dfer.engine.runconfig import RunConfig, resolve_path


# ---- model and landmark net -------------------------------------------------------------------------
def model_kwargs(run: RunConfig) -> dict:
    """``create_model`` kwargs: the config's ``model.kwargs`` plus class count, frames, input size, drop path."""
    from dfer.data.labels import index_of

    kw = dict(run.model["kwargs"])
    kw["num_classes"] = len(run.classes)
    kw.setdefault("num_frames", int(run.data["num_frames"]))
    kw.setdefault("img_size", int(run.data["input_size"]))
    if run.train["drop_path"]:
        kw.setdefault("drop_path_rate", float(run.train["drop_path"]))
    if run.uses_landmarks and "lmk_channels" not in kw:  # e.g. 24 for MobileNetV2_56 (Table III)
        from dfer.landmarks import landmark_net_config

        kw["lmk_channels"] = landmark_net_config(run.landmarks["backbone"]).channels
    if run.method == "nr_dfernet" and "neutral_index" not in kw:
        try:  # the snippet filter suppresses "Neutral"
            kw["neutral_index"] = index_of(run.dataset, "Neutral")
        except KeyError:
            pass
    return kw


def freezes_backbone(freeze: str, task: str, method: str) -> bool:
    """``train.freeze``: ``auto`` is the official DFER rule (only MCP, TMA, temporal embedding, ln_post, head
    train) for S2D DFER runs."""
    if freeze == "auto":
        return task == "dfer" and method == "s2d"
    return freeze == "dfer"


def head_policy(model: Mapping, dataset: str) -> str:
    """What happens to the init's classifier: ``keep`` when it was trained on this run's label set, else the
    config's ``model.head_transfer`` (``fresh``: re-initialised, as the official code; ``remap``: rows copied
    by class name)."""
    return "keep" if model["init_dataset"] == dataset else model["head_transfer"]


def build_model(run: RunConfig, init: bool = True, verbose: bool = True) -> nn.Module:
    """The run's model: registry name + kwargs, initialised from ``model.init``, frozen for S2D DFER."""
    from dfer.models import create_model

    spec = run.model
    model = create_model(spec["name"], **model_kwargs(run))
    path = resolve_path(spec["init"]) if init else None
    if path is not None:
        from dfer.data.labels import classes
        from dfer.models.weights import load_pretrained

        src = spec["init_dataset"]
        if spec["init_format"] == "unilearn":  # S4D's release: `encoder.`-prefixed MAE or fine-tuned
            from dfer.models.unilearn import load_unilearn_pretrained

            load_unilearn_pretrained(model, path, verbose=verbose)
        else:
            load_pretrained(model, path, format=spec["init_format"], verbose=verbose,
                            head=head_policy(spec, run.dataset),
                            classes=(classes(src) if src else None, list(run.classes)))
    if freezes_backbone(run.train["freeze"], run.task, run.method):
        from dfer.models.params import freeze_for_dfer

        freeze_for_dfer(model)
    return model


def build_landmarks(landmarks: Mapping | None) -> nn.Module | None:
    """The frozen landmark net of a run config's ``landmarks`` (None when the model does not fuse landmarks)."""
    if landmarks is None:
        return None
    from dfer.landmarks import LandmarkFeatures

    return LandmarkFeatures(landmarks["backbone"], str(resolve_path(landmarks["weights"])))


def image_input(batch: dict, device: torch.device) -> torch.Tensor:
    """An image set's batch ``[B,3,1,H,W]`` as ``[B,3,H,W]``: the 4-D input that selects a jointly fine-tuned
    model's image head (UniLearn), in training and at test alike."""
    video = batch["video"]
    if video.ndim != 5 or video.shape[2] != 1:
        raise ValueError(f"an image batch is [B,3,1,H,W], got {tuple(video.shape)}")
    return video[:, :, 0].to(device, non_blocking=True)


def landmark_input(batch: dict, video: torch.Tensor, lmk_net: nn.Module | None,
                   use_cache: bool) -> torch.Tensor | None:
    """Landmark features ``[B*T, C, 14, 14]``: from the cache when allowed, else the frozen net on ``video``
    (the possibly mixed clip, as the official code)."""
    if lmk_net is None:
        return None
    if use_cache and "lmk" in batch:
        return batch["lmk"].to(video.device, non_blocking=True).flatten(0, 1)
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    with torch.no_grad(), torch.autocast(device_type=video.device.type, enabled=False):
        return lmk_net(frames.float())


# ---- sampler ----------------------------------------------------------------------------------------
class EpochSampler(Sampler[int]):
    """Shuffled (or class-balanced, with replacement) order drawn from ``(seed, epoch)``, laid out so that every
    process (DDP rank) and every accumulation micro-step of an optimizer step reads its own share.

    The order is split over ``world_size * accum_steps`` virtual ranks (``order[v::V]``, padded so each gets the
    same count); process ``r`` reads, for each step, micro-batch ``a`` of virtual rank ``r * accum_steps + a``.
    So one step covers the same items whether they are spread over GPUs or accumulated on one: 2 processes x 1
    micro-batch and 1 process x 2 micro-batches train on the same batches. ``skip`` drops the first items
    (mid-epoch resume)."""

    def __init__(self, labels: Sequence[int], seed: int, batch_size: int, balanced: bool = False, rank: int = 0,
                 world_size: int = 1, accum_steps: int = 1, shuffle: bool = True):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed, self.balanced, self.shuffle = int(seed), balanced, shuffle
        self.batch_size, self.rank, self.world_size, self.accum_steps = batch_size, rank, world_size, accum_steps
        self.epoch, self.skip = 0, 0
        self.per_virtual_rank = math.ceil(len(self.labels) / (world_size * accum_steps))
        # Whole optimizer steps only (official: len(train) // total_batch), at least one for tiny sets.
        self.steps = max(self.per_virtual_rank // batch_size, 1)
        self.micro_batch = min(batch_size, self.per_virtual_rank)
        self.num_samples = self.steps * accum_steps * self.micro_batch  # items this process reads per epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self) -> np.ndarray:
        n = len(self.labels)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.balanced:  # S2D --use_bds: weight 1 / class count, with replacement
            from dfer.data.datasets import balanced_sampler

            idx = np.fromiter(balanced_sampler(self.labels.tolist(), n, generator=g), dtype=np.int64)
        elif self.shuffle:
            idx = torch.randperm(n, generator=g).numpy()
        else:
            idx = np.arange(n)
        virtual = self.world_size * self.accum_steps
        total = self.per_virtual_rank * virtual
        idx = np.resize(idx, total) if total > n else idx  # pad by repeating from the start
        shards = [idx[v::virtual] for v in range(self.rank * self.accum_steps, (self.rank + 1) * self.accum_steps)]
        b = self.micro_batch
        return np.concatenate([shard[s * b:(s + 1) * b] for s in range(self.steps) for shard in shards])

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.skip:].tolist())

    def __len__(self) -> int:
        return max(self.num_samples - self.skip, 0)


class JointBatchSampler(Sampler[list]):
    """Micro-batches of UniLearn's joint fine-tuning over a ``JointDataset`` (clips first, then images): every
    optimizer step is all clips or all images (S4D builds each mini-batch from one dataset). Per epoch, the
    clips' :class:`EpochSampler` order gives the video steps; ``data_rate`` of the image set (S4D
    ``sfer_data_rate``; class-balanced with ``oversample``) gives the image steps; the steps of both run in an
    order drawn from ``(seed, epoch)``, the same on every process. ``skip`` counts items, as EpochSampler's."""

    def __init__(self, videos: EpochSampler, images: EpochSampler, n_videos: int, data_rate: float):
        if videos.micro_batch != images.micro_batch or videos.accum_steps != images.accum_steps:
            raise ValueError("clips and images must share batch size and accumulation")
        self.videos, self.images, self.offset = videos, images, int(n_videos)
        self.image_steps = max(1, int(round(images.steps * float(data_rate))))
        self.micro_batch, self.accum_steps, self.seed = videos.micro_batch, videos.accum_steps, videos.seed
        self.balanced = videos.balanced
        self.steps = videos.steps + self.image_steps
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.videos.set_epoch(epoch)
        self.images.set_epoch(epoch)

    def _steps(self, order: np.ndarray, n_steps: int, offset: int) -> list[list[list[int]]]:
        b, a = self.micro_batch, self.accum_steps
        return [[(order[(s * a + m) * b:(s * a + m + 1) * b] + offset).tolist() for m in range(a)]
                for s in range(n_steps)]

    def micro_batches(self) -> list[list[int]]:
        steps = self._steps(self.videos.order(), self.videos.steps, 0) + \
            self._steps(self.images.order(), self.image_steps, self.offset)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7_919)
        return [mb for i in torch.randperm(len(steps), generator=g).tolist() for mb in steps[i]]

    def __iter__(self):
        return iter(self.micro_batches()[self.skip // self.micro_batch:])

    def __len__(self) -> int:
        return self.steps * self.accum_steps - self.skip // self.micro_batch


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker (base_seed + id) from the loader's generator; derive python/numpy from it.
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler | None, num_workers: int, seed: int,
                drop_last: bool, device: torch.device) -> DataLoader:
    # An explicit generator: without one, creating the iterator draws from the global torch RNG.
    g = torch.Generator().manual_seed(seed)
    if isinstance(sampler, JointBatchSampler):  # it makes the (one-modality) batches itself
        return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=device.type == "cuda",
                          generator=g, worker_init_fn=_seed_worker if num_workers > 0 else None)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      drop_last=drop_last, pin_memory=device.type == "cuda", generator=g,
                      worker_init_fn=_seed_worker if num_workers > 0 else None,
                      persistent_workers=False)


# ---- mixed precision --------------------------------------------------------------------------------
@dataclass
class Precision:
    enabled: bool = False
    dtype: torch.dtype = torch.float32
    device_type: str = "cpu"

    @classmethod
    def from_config(cls, train: Mapping, device: torch.device) -> "Precision":
        if device.type != "cuda" or not train["amp"]:
            return cls(False, torch.float32, device.type)
        want = str(train["amp_dtype"])
        dtype = torch.bfloat16 if want in ("bfloat16", "bf16") and torch.cuda.is_bf16_supported() else torch.float16
        return cls(True, dtype, device.type)

    def autocast(self):
        if not self.enabled:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.enabled and self.dtype == torch.float16


# ---- one training epoch -----------------------------------------------------------------------------
@dataclass
class StepState:
    """What the step loop needs besides the model: schedule, loss pieces, landmark net, precision."""
    optimizer: torch.optim.Optimizer
    lr_schedule: np.ndarray
    steps_per_epoch: int
    precision: Precision
    scaler: torch.amp.GradScaler | None
    lmk_net: nn.Module | None
    use_lmk_cache: bool
    mixup: Callable | None
    loss: str
    label_smoothing: float
    num_classes: int
    accum_steps: int = 1
    sdl: nn.Module | None = None
    sdl_lambda: float = 0.0
    sdl_active: bool = False
    sdl_update: bool = False
    aux_coeff: float = 1e-3
    clip_grad: float | None = None
    stop_requested: Callable[[], bool] = lambda: False
    on_step: Callable[[int], None] | None = None
    image_mixup: Callable | None = None   # joint fine-tuning: Mixup/CutMix over the image classes


def classification_loss(logits: torch.Tensor, target: torch.Tensor, st: StepState) -> torch.Tensor:
    """Mixed (soft) targets -> SoftTargetCrossEntropy; hard labels -> CE (with smoothing for
    ``label_smoothing``). timm's Mixup already smooths its soft targets."""
    if target.ndim == 2:
        return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
    smoothing = st.label_smoothing if st.loss == "label_smoothing" else 0.0
    return F.cross_entropy(logits.float(), target, label_smoothing=smoothing)


def micro_step_loss(model: nn.Module, batch: dict, st: StepState, device: torch.device) -> torch.Tensor:
    """Forward one micro-batch and return its loss (classification + lambda * SDL + MoAE aux); updates the SDL
    anchors from a no-grad forward of the un-mixed clip (official ``model(ori_samples, a)``)."""
    labels = batch["label"].to(device, non_blocking=True)
    if "task" in batch and int(batch["task"][0]) == 1:  # joint fine-tuning: an image batch, the image head
        return image_step_loss(model, image_input(batch, device), labels, st)
    clean = batch["video"].to(device, non_blocking=True)
    video, target = st.mixup(clean, labels) if st.mixup is not None else (clean, labels)
    lmk = landmark_input(batch, video, st.lmk_net, st.use_lmk_cache and st.mixup is None)
    with st.precision.autocast():
        logits, feat = model(video, lmk)
        loss = classification_loss(logits, target, st)
        if st.sdl is not None and st.sdl_active:
            from dfer.models.sdl import sdl_loss

            soft = st.sdl.soft_targets(feat, logits)
            loss = loss + st.sdl_lambda * sdl_loss(logits.float(), soft.float())
        aux = _aux_loss(model)
        if aux is not None:
            loss = loss + st.aux_coeff * aux
    if st.sdl is not None and st.sdl_update:
        if st.mixup is not None:  # anchors come from the clean clip, never the mixed one
            with torch.no_grad(), st.precision.autocast():
                logits, feat = model(clean, landmark_input(batch, clean, st.lmk_net, st.use_lmk_cache))
        st.sdl.update(feat.detach().float(), logits.detach().float(), labels)
    return loss


def image_step_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, st: StepState) -> torch.Tensor:
    """Joint fine-tuning's SFER micro-batch ``[B,3,H,W]``: image Mixup/CutMix, the model's image head (UniLearn
    picks it from the 4-D input), cross-entropy (+ MoAE aux); no SDL (a DFER loss)."""
    x, target = st.image_mixup(images, labels) if st.image_mixup is not None else (images, labels)
    with st.precision.autocast():
        logits, _ = model(x, None)
        loss = classification_loss(logits, target, st)
        aux = _aux_loss(model)
        if aux is not None:
            loss = loss + st.aux_coeff * aux
    return loss


def optimizer_step(st: StepState, params: list[torch.Tensor]) -> None:
    if st.scaler is not None:
        if st.clip_grad:
            st.scaler.unscale_(st.optimizer)
            torch.nn.utils.clip_grad_norm_(params, st.clip_grad)
        st.scaler.step(st.optimizer)
        st.scaler.update()
    else:
        if st.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, st.clip_grad)
        st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)


def train_one_epoch(model: nn.Module, loader: DataLoader, st: StepState, epoch: int, device: torch.device,
                    start_step: int = 0, show: bool = True) -> dict:
    """Train over ``loader`` (already positioned at ``start_step``): ``accum_steps`` micro-batches per optimizer
    step (gradients of DDP ranks are synchronised on the last one only). Returns loss/throughput figures and
    ``stopped`` (a preemption signal was honoured at a step boundary: ``step`` is the next step to run)."""
    model.train()
    meter = Throughput()
    loss_sum, n_steps, step, micro = 0.0, 0, start_step, 0
    stopped = False
    params = [p for g in st.optimizer.param_groups for p in g["params"]]
    pbar = bar(st.steps_per_epoch, f"epoch {epoch + 1}", enabled=show, initial=start_step)
    st.optimizer.zero_grad(set_to_none=True)
    for batch in loader:
        global_step = epoch * st.steps_per_epoch + step
        lr = float(st.lr_schedule[min(global_step, len(st.lr_schedule) - 1)])
        for group in st.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        micro += 1
        last_micro = micro == st.accum_steps
        sync = nullcontext() if last_micro or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss = micro_step_loss(model, batch, st, device)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1}; lower "
                                         "train.lr or disable train.amp")
            scaled = loss / st.accum_steps
            (st.scaler.scale(scaled) if st.scaler is not None else scaled).backward()
        loss_sum += float(loss.detach()) / st.accum_steps
        meter.update(int(batch["video"].shape[0]))
        if not last_micro:
            continue
        optimizer_step(st, params)
        micro = 0
        n_steps += 1
        step += 1
        pbar.set_postfix(loss=f"{loss_sum / n_steps:.4f}", lr=f"{lr:.2e}", clips_s=f"{meter.rate:.1f}",
                         refresh=False)
        pbar.update(1)
        if st.on_step is not None:
            st.on_step(step)
        # Checked after the step, before the loader draws the next batch (whose augmentation would advance
        # the RNG past the state the checkpoint saves).
        if step < st.steps_per_epoch and st.stop_requested():
            stopped = True
            break
    pbar.close()
    return {"loss_sum": loss_sum, "steps": n_steps, "step": step, "clips": meter.clips,
            "seconds": meter.seconds, "stopped": stopped}


def _aux_loss(model: nn.Module) -> torch.Tensor | None:
    inner = model.module if hasattr(model, "module") else model
    if hasattr(inner, "aux_loss"):
        return inner.aux_loss()
    return None


# ---- inference over views ---------------------------------------------------------------------------
@dataclass
class ViewOutputs:
    probs: np.ndarray          # [N_items, K] softmax per view
    feats: np.ndarray          # [N_items, D] pooled features per view
    sample_index: np.ndarray   # [N_items] sample of each view
    view: np.ndarray           # [N_items]
    clips: int = 0
    seconds: float = 0.0
    filtered: int | None = None  # views whose prediction NR-DFERNet's snippet filter changed (None: no filter)

    @property
    def rate(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0


@torch.no_grad()
def predict_views(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int,
                  lmk_net: nn.Module | None = None, precision: Precision | None = None, num_workers: int = 0,
                  desc: str = "test", show: bool = True, indices: Sequence[int] | None = None,
                  image_head: bool = False) -> ViewOutputs:
    """Softmax probabilities and features of every item (view) of a test-mode dataset.

    ``indices``: a subset of item indices (a DDP rank's shard); default every item. ``image_head``: the dataset
    is an image set scored by a jointly fine-tuned model's image head (4-D input, as its training fed it).
    """
    precision = precision or Precision()
    model.eval()
    subset = list(range(len(dataset))) if indices is None else list(indices)
    loader = make_loader(torch.utils.data.Subset(dataset, subset), batch_size, None, num_workers, 0, False,
                         device)
    use_cache = bool(getattr(dataset, "uses_feature_cache", False))
    probs, feats, sidx, views = [], [], [], []
    t0 = time.perf_counter()
    clips, filtered = 0, None
    pbar = bar(len(loader), desc, enabled=show)
    for batch in loader:
        if image_head:
            video, lmk = image_input(batch, device), None
        else:
            video = batch["video"].to(device, non_blocking=True)
            lmk = landmark_input(batch, video, lmk_net, use_cache)
        with precision.autocast():
            logits, feat = model(video, lmk)
        probs.append(torch.softmax(logits.float(), dim=-1).cpu())
        feats.append(feat.float().cpu())
        fired = getattr(model, "last_snippet_filter", None)
        if fired is not None:
            filtered = (filtered or 0) + int(fired["applied"].sum())
        sidx.append(torch.as_tensor(batch["index"]))
        views.append(torch.as_tensor(batch["view"]))
        clips += int(video.shape[0])
        pbar.update(1)
    pbar.close()
    cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros((0,))  # noqa: E731
    return ViewOutputs(cat(probs), cat(feats), cat(sidx).astype(np.int64), cat(views).astype(np.int64),
                       clips, time.perf_counter() - t0, filtered)
