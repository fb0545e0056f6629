"""Clip transforms: the same random augmentation for every frame of a clip, then ImageNet normalisation.

Training order follows the official S2D loader (MSA-LMC/S2D, inherited from VideoMAE): frames resized
(square, as the official loader does) -> RandAugment -> to tensor, normalise -> RandomResizedCrop ->
horizontal flip -> random erasing (one box for the whole clip). Mixup/CutMix mix whole batches and belong to
the engine (timm ``Mixup``). Test: resize, then ``n`` crops along the long side (identical for square frames,
which is what the official code ends up with).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What "no augmentation" means (test mode, or a partial dict from a caller): every switch off.
NO_AUGMENT = {"hflip": False, "random_resized_crop": False, "rand_augment": None,
                    "mixup": 0.0, "cutmix": 0.0, "random_erasing": 0.0, "color_jitter": 0.0}


def resize_frames(frames: np.ndarray, size: int, mode: str = "square") -> np.ndarray:
    """``uint8[T,H,W,3]`` -> square ``size`` x ``size`` (official) or short side = ``size``."""
    t, h, w, _ = frames.shape
    if mode == "square":
        out_h = out_w = size
    elif mode == "short_side":
        scale = size / min(h, w)
        out_h, out_w = max(size, round(h * scale)), max(size, round(w * scale))
    else:
        raise ValueError(f"unknown resize mode {mode!r}; use square or short_side")
    if (out_h, out_w) == (h, w):
        return frames
    return np.stack([cv2.resize(f, (out_w, out_h), interpolation=cv2.INTER_LINEAR) for f in frames])


def spatial_crops(frames: np.ndarray, size: int, n_crops: int) -> list[np.ndarray]:
    """``n_crops`` ``size`` x ``size`` crops evenly spaced along the long side (official test views)."""
    _, h, w, _ = frames.shape
    long_side = max(h, w)
    step = (long_side - size) / (n_crops - 1) if n_crops > 1 else 0.0
    crops = []
    for k in range(n_crops):
        start = int(k * step)
        crop = frames[:, start:start + size, :size] if h >= w else frames[:, :size, start:start + size]
        crops.append(crop)
    return crops


def to_normalized_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8[T,H,W,3]`` -> ImageNet-normalised ``float32[T,3,H,W]``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crop_params(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0),
                               ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop box (Inception-style sampling, 10 tries)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h  # fallback: central crop with the ratio clamped
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_erase_(x: torch.Tensor, rng: np.random.Generator, area=(0.02, 1 / 3), log_aspect=(0.3, 1 / 0.3)):
    """Erase one box, the same for all frames of ``x: [T,3,H,W]``, with per-pixel normal noise."""
    t, c, h, w = x.shape
    for _ in range(10):
        target = h * w * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(log_aspect[0]), math.log(log_aspect[1])))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            noise = rng.standard_normal((t, c, eh, ew)).astype(np.float32)
            x[:, :, top:top + eh, left:left + ew] = torch.from_numpy(noise)
            return x
    return x


@dataclass
class ClipAugment:
    """Training augmentation applied identically to every frame of a clip.

    ``rand_augment``: a timm config string (``rand-m7-n4-mstd0.5-inc1`` in S2D) or None.
    """

    input_size: int
    hflip: bool = False
    random_resized_crop: bool = False
    rand_augment: str | None = None
    random_erasing: float = 0.0
    color_jitter: float = 0.0   # brightness, contrast and saturation factors in [1 - j, 1 + j], one per clip
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        self._ra = None
        if self.rand_augment:
            from timm.data.auto_augment import rand_augment_transform

            hparams = {"translate_const": int(self.input_size * 0.45),
                       "img_mean": tuple(round(255 * m) for m in IMAGENET_MEAN)}
            self._ra = rand_augment_transform(self.rand_augment, hparams)

    @classmethod
    def from_dict(cls, input_size: int, augment: dict | None) -> "ClipAugment":
        aug = {**NO_AUGMENT, **(augment or {})}
        return cls(input_size, hflip=bool(aug["hflip"]), random_resized_crop=bool(aug["random_resized_crop"]),
                   rand_augment=aug["rand_augment"] or None, random_erasing=float(aug["random_erasing"] or 0.0),
                   color_jitter=float(aug["color_jitter"] or 0.0))

    @property
    def geometric(self) -> bool:
        """True when frames move (flip, crop, RandAugment's rotate/shear/translate): cached landmark
        features of the un-augmented frames would no longer match."""
        return self.hflip or self.random_resized_crop or bool(self.rand_augment)

    def _rand_augment(self, frames: np.ndarray) -> np.ndarray:
        from PIL import Image

        # timm draws ops and magnitudes from the global `random`/`np.random`: replay the same state for
        # every frame so the whole clip gets the same ops with the same magnitudes.
        py_state, np_state = random.getstate(), np.random.get_state()
        out = []
        for f in frames:
            random.setstate(py_state)
            np.random.set_state(np_state)
            out.append(np.asarray(self._ra(Image.fromarray(f)), dtype=np.uint8))
        return np.stack(out)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """``uint8[T,H,W,3]`` (already resized to ``input_size``) -> normalised ``float32[3,T,S,S]``."""
        if self._ra is not None:
            frames = self._rand_augment(frames)
        if self.color_jitter > 0:
            frames = color_jitter(frames, rng, self.color_jitter)
        x = to_normalized_tensor(frames)
        if self.random_resized_crop:
            top, left, ch, cw = random_resized_crop_params(x.shape[2], x.shape[3], rng, self.scale, self.ratio)
            x = x[:, :, top:top + ch, left:left + cw]
        if x.shape[2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        if self.hflip and rng.random() < 0.5:
            x = x.flip(-1)
        if self.random_erasing > 0 and rng.random() < self.random_erasing:
            x = random_erase_(x, rng)
        return x.permute(1, 0, 2, 3).contiguous()


def color_jitter(frames: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """torchvision ``ColorJitter(b, c, s)`` with b = c = s = ``strength``, the same factors for every frame of the
    clip, in a random order: brightness scales the pixels, contrast blends with the clip's mean grey, saturation
    with each frame's grey image. ``uint8[T,H,W,3]`` in and out."""
    x = frames.astype(np.float32)
    for op in rng.permutation(3):
        f = float(rng.uniform(max(0.0, 1 - strength), 1 + strength))
        if op == 0:
            x = x * f
        else:
            grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
            ref = np.full_like(grey, grey.mean()) if op == 1 else grey
            x = ref[..., None] + f * (x - ref[..., None])
        x = np.clip(x, 0, 255)
    return x.round().astype(np.uint8)


class VideoMixup:
    """timm ``Mixup`` for clips ``[B,3,T,H,W]``: timm's CutMix slices dims 2-3 (T and H for a clip), so
    frames are folded into channels first and every frame gets the same CutMix box."""

    def __init__(self, mixup):
        self.mixup = mixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.ndim == 4:
            return self.mixup(x, target)
        b, c, t, h, w = x.shape
        folded, target = self.mixup(x.reshape(b, c * t, h, w), target)
        return folded.reshape(b, c, t, h, w), target


def mixup_fn(augment: dict | None, num_classes: int, label_smoothing: float = 0.1) -> VideoMixup | None:
    """Batch Mixup/CutMix for the engine (``video: [B,3,T,H,W]`` or ``[B,3,H,W]``), None when both are off.

    S2D: mixup 0.8, cutmix 1.0, label smoothing 0.1 (``--ban_mixup`` for FERV39K)."""
    aug = {**NO_AUGMENT, **(augment or {})}
    if not (aug["mixup"] or aug["cutmix"]):
        return None
    from timm.data import Mixup

    return VideoMixup(Mixup(mixup_alpha=float(aug["mixup"]), cutmix_alpha=float(aug["cutmix"]),
                            label_smoothing=label_smoothing, num_classes=num_classes))
