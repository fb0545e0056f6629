"""A small CenterNet-style face detector that the workflow trains itself (`dfer train-detector`).

The frame is padded to a square (bottom and right, mid-grey) and resized to ``input_size``, so a face keeps its
shape whatever the frame's aspect (training sees square crops only); a tiny encoder-decoder CNN predicts, on a
stride-4 grid, a face-centre heatmap, the box size (log, in grid cells), the sub-cell centre offset and 5
landmarks (relative to the centre, in box sizes). Peaks of the heatmap (3x3 max-pool) above ``score_threshold``
are faces.
About 0.23 M parameters: trains in a minute or two on a CPU and needs no download.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dfer.align.detectors import (Detection, FaceDetector, check_frame, file_digest, register_detector,
                                  read_weights, weights_error)
from dfer.io import atomic_path

STRIDE = 4
# Output channels: heatmap logit, log w, log h, dx, dy, 5 landmarks x/y.
HEAT, SIZE, OFFSET, LMK = slice(0, 1), slice(1, 3), slice(3, 5), slice(5, 15)
OUT_CHANNELS = 15


@dataclass(frozen=True)
class CenterNetConfig:
    input_size: int = 128
    widths: tuple[int, int, int, int] = (16, 32, 48, 64)   # stride 2, 4, 8, 16


def conv_bn_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


class CenterNetTiny(nn.Module):
    def __init__(self, cfg: CenterNetConfig = CenterNetConfig()):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3, c4 = cfg.widths
        self.stem = conv_bn_relu(3, c1, 2)                                       # /2
        self.down4 = nn.Sequential(conv_bn_relu(c1, c2, 2), conv_bn_relu(c2, c2))  # /4
        self.down8 = nn.Sequential(conv_bn_relu(c2, c3, 2), conv_bn_relu(c3, c3))  # /8
        self.down16 = nn.Sequential(conv_bn_relu(c3, c4, 2), conv_bn_relu(c4, c4), conv_bn_relu(c4, c4))  # /16
        self.lateral8 = nn.Conv2d(c3, c4, 1)
        self.up8 = conv_bn_relu(c4, c3)
        self.lateral4 = nn.Conv2d(c2, c3, 1)
        self.up4 = conv_bn_relu(c3, c3)
        self.head = nn.Sequential(conv_bn_relu(c3, c4), nn.Conv2d(c4, OUT_CHANNELS, 1))
        # Start the heatmap near "no face" everywhere (focal-loss prior), as CenterNet does.
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -2.19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float[N,3,S,S] in [-0.5, 0.5] -> raw maps float[N,15,S/4,S/4]."""
        f4 = self.down4(self.stem(x))
        f8 = self.down8(f4)
        f16 = self.down16(f8)
        u8 = self.up8(self.lateral8(f8) + F.interpolate(f16, size=f8.shape[-2:], mode="nearest"))
        u4 = self.up4(self.lateral4(f4) + F.interpolate(u8, size=f4.shape[-2:], mode="nearest"))
        return self.head(u4)


def letterbox(frame: np.ndarray) -> np.ndarray:
    """The frame padded at the bottom and right to a square of side ``max(h, w)`` (mid-grey, 0 after
    :func:`preprocess`), so that its pixel coordinates stay those of the frame."""
    h, w = frame.shape[:2]
    if h == w:
        return frame
    side = max(h, w)
    out = np.full((side, side, frame.shape[2]), 128, dtype=frame.dtype)
    out[:h, :w] = frame
    return out


def preprocess(frames: np.ndarray | list[np.ndarray], size: int) -> torch.Tensor:
    """RGB uint8 frames (any size) -> float[N,3,size,size] in [-0.5, 0.5], each letterboxed (aspect kept)."""
    import cv2

    arr = np.stack([cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA) if sq.shape[:2] != (size, size)
                    else sq for sq in map(letterbox, frames)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


# ------------------------------------------------------------------------------ targets and loss
def encode_targets(boxes: list[np.ndarray | None], landmarks: list[np.ndarray | None], size: int) -> dict:
    """Training targets on the stride-4 grid for boxes/landmarks given in ``size``-pixel coordinates."""
    g = size // STRIDE
    n = len(boxes)
    heat = np.zeros((n, 1, g, g), np.float32)
    reg = np.zeros((n, 4, g, g), np.float32)          # log w, log h, dx, dy at the centre cell
    lmk = np.zeros((n, 10, g, g), np.float32)
    mask = np.zeros((n, 1, g, g), np.float32)
    lmk_mask = np.zeros((n, 1, g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    for i, (box, lm) in enumerate(zip(boxes, landmarks)):
        if box is None:
            continue
        x0, y0, x1, y1 = np.asarray(box, np.float32) / STRIDE
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1e-2), max(y1 - y0, 1e-2)
        ix, iy = int(cx), int(cy)
        if not (0 <= ix < g and 0 <= iy < g):
            continue
        sigma = max(0.8, 0.12 * min(w, h))
        heat[i, 0] = np.maximum(heat[i, 0], np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2)))
        reg[i, :, iy, ix] = [np.log(w), np.log(h), cx - ix, cy - iy]
        mask[i, 0, iy, ix] = 1.0
        if lm is not None:
            rel = (np.asarray(lm, np.float32) / STRIDE - [cx, cy]) / [w, h]
            lmk[i, :, iy, ix] = rel.reshape(-1)
            lmk_mask[i, 0, iy, ix] = 1.0
    return {k: torch.from_numpy(v) for k, v in
            dict(heat=heat, reg=reg, lmk=lmk, mask=mask, lmk_mask=lmk_mask).items()}


def centernet_loss(out: torch.Tensor, t: dict) -> tuple[torch.Tensor, dict]:
    """Penalty-reduced focal loss on the heatmap + L1 on size/offset/landmarks at face centres."""
    pred = torch.sigmoid(out[:, HEAT]).clamp(1e-4, 1 - 1e-4)
    pos = t["heat"].eq(1).float()
    neg_w = (1 - t["heat"]) ** 4
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred ** 2 * neg_w * (1 - pos)).sum()
    num_pos = pos.sum().clamp(min=1.0)
    heat_loss = -(pos_loss + neg_loss) / num_pos
    m = t["mask"]
    reg_loss = (F.l1_loss(out[:, 1:5], t["reg"], reduction="none") * m).sum() / (m.sum() * 4).clamp(min=1.0)
    lm = t["lmk_mask"]
    lmk_loss = (F.l1_loss(out[:, LMK], t["lmk"], reduction="none") * lm).sum() / (lm.sum() * 10).clamp(min=1.0)
    total = heat_loss + reg_loss + lmk_loss
    return total, {"heat": heat_loss.item(), "reg": reg_loss.item(), "lmk": lmk_loss.item()}


def decode(out: torch.Tensor, frame_sizes: list[tuple[int, int]], input_size: int,
           score_threshold: float = 0.3, top_k: int = 5) -> list[list[Detection]]:
    """Heatmap peaks -> detections in each frame's own pixel coordinates (the input was letterboxed: one scale
    for both axes, origin unchanged)."""
    heat = torch.sigmoid(out[:, 0:1])
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).float()
    n, _, g, _ = heat.shape
    scores, idx = peaks.view(n, -1).topk(min(top_k, g * g), dim=1)
    result = []
    for i, (h, w) in enumerate(frame_sizes):
        sx = sy = max(h, w) / input_size * STRIDE   # grid cell -> frame pixel
        dets = []
        for s, k in zip(scores[i].tolist(), idx[i].tolist()):
            if s < score_threshold:
                break
            iy, ix = divmod(k, g)
            lw, lh, dx, dy = out[i, 1:5, iy, ix].tolist()
            cx, cy, bw, bh = ix + dx, iy + dy, float(np.exp(lw)), float(np.exp(lh))
            box = np.array([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy],
                           np.float32)
            rel = out[i, LMK, iy, ix].view(5, 2).cpu().numpy()
            lms = np.stack([(cx + rel[:, 0] * bw) * sx, (cy + rel[:, 1] * bh) * sy], 1).astype(np.float32)
            dets.append(Detection(box, float(s), lms))
        result.append(dets)
    return result


# -------------------------------------------------------------------------------------- detector
def load_checkpoint(path: str | os.PathLike | None) -> tuple[CenterNetTiny, dict]:
    fix = "train it with `dfer train-detector` (writes results/align/detector/model.pt) and pass that path"
    # Our own checkpoint holds plain metadata beside the state dict, hence weights_only=False.
    ckpt = read_weights(path, "synthetic", "detector checkpoint", fix, weights_only=False)
    path = Path(path)
    if not isinstance(ckpt, dict) or ckpt.get("detector") != "synthetic" or "state_dict" not in ckpt:
        raise weights_error(path, "synthetic", "not a `dfer train-detector` checkpoint (no detector='synthetic' "
                            "entry)", fix)
    cfg = CenterNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()})
    model = CenterNetTiny(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise weights_error(path, "synthetic", f"weights do not fit the model: {exc}", fix) from None
    return model.eval(), ckpt


def save_checkpoint(path: str | os.PathLike, model: CenterNetTiny, **extra) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"detector": "synthetic", "config": asdict(model.cfg), "state_dict": model.state_dict(),
                    **extra}, tmp)
    return path


class SyntheticDetector(FaceDetector):
    name = "synthetic"

    def __init__(self, model: CenterNetTiny, device: str = "cpu", score_threshold: float = 0.3,
                 weights: str | None = None, batch_size: int = 32, train_ids: list[str] | None = None):
        self.model = model.to(device).eval()
        self.train_ids = train_ids  # clips seen in training: the stage reports quality on the others too
        self.device = device
        self.score_threshold = score_threshold
        self.weights = weights
        self.batch_size = batch_size

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights, "sha256": file_digest(self.weights),
                "score_threshold": self.score_threshold}

    @torch.no_grad()
    def detect_batch(self, frames) -> list[list[Detection]]:
        frames = [check_frame(f) for f in frames]
        size = self.model.cfg.input_size
        out: list[list[Detection]] = []
        for s in range(0, len(frames), self.batch_size):
            chunk = frames[s:s + self.batch_size]
            maps = self.model(preprocess(chunk, size).to(self.device)).float().cpu()
            out += decode(maps, [f.shape[:2] for f in chunk], size, self.score_threshold)
        return out

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]


@register_detector("synthetic")
def _build(weights=None, device: str = "cpu", score_threshold: float = 0.3, **options) -> SyntheticDetector:
    model, ckpt = load_checkpoint(weights)
    return SyntheticDetector(model, device=device, score_threshold=score_threshold,
                             weights=None if weights is None else str(weights), train_ids=ckpt.get("train_ids"),
                             **options)
