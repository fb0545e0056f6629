"""RetinaFace (Deng et al. 2020), the detector of the S2D paper, with user-provided weights.

Module and parameter names follow the public Pytorch_Retinaface release so its checkpoints
(``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``, saved from ``DataParallel`` with a ``module.`` prefix)
load strictly: ``body`` (backbone up to the last tapped stage), ``fpn``, ``ssh1..3``, ``ClassHead``,
``BboxHead``, ``LandmarkHead`` (2 anchors per location on strides 8/16/32).
Input: BGR float minus the mean (104, 117, 123), no scaling, at the frame's own resolution.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dfer.align.detectors import (Detection, FaceDetector, check_frame, file_digest, register_detector,
                                  read_weights, weights_error)


@dataclass(frozen=True)
class RetinaFaceConfig:
    name: str
    backbone: str                       # mobilenet0.25 | resnet50
    return_layers: tuple[str, ...]      # backbone stages tapped for the FPN (strides 8, 16, 32)
    in_channel: int                     # channels of the first tapped stage / 2
    out_channel: int
    min_sizes: tuple = ((16, 32), (64, 128), (256, 512))
    steps: tuple = (8, 16, 32)
    variance: tuple = (0.1, 0.2)
    official_file: str = ""


CONFIGS = {
    "mobilenet0.25": RetinaFaceConfig("mobilenet0.25", "mobilenet0.25", ("stage1", "stage2", "stage3"), 32, 64,
                                      official_file="mobilenet0.25_Final.pth"),
    "resnet50": RetinaFaceConfig("resnet50", "resnet50", ("layer2", "layer3", "layer4"), 256, 256,
                                 official_file="Resnet50_Final.pth"),
}
BGR_MEAN = (104.0, 117.0, 123.0)


# ---------------------------------------------------------------------------------------- blocks
def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(leaky, inplace=True))


def conv_bn_no_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(leaky, inplace=True))


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN and leaky ReLU (MobileNetV1 block)."""
    return nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                         nn.LeakyReLU(leaky, inplace=True),
                         nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.LeakyReLU(leaky, inplace=True))


class MobileNetV1x025(nn.Module):
    """MobileNetV1 at width 0.25, only the three stages RetinaFace taps (no classifier)."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn(3, 8, 2, leaky=0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2),
                                    conv_dw(32, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))


class Body(nn.ModuleDict):
    """A backbone's children up to its last tapped stage; forward returns the tapped stages' outputs."""

    def __init__(self, backbone: nn.Module, return_layers: tuple[str, ...]):
        layers = OrderedDict()
        for name, module in backbone.named_children():
            layers[name] = module
            if name == return_layers[-1]:
                break
        super().__init__(layers)
        self.return_layers = return_layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out.append(x)
        return out


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn1x1(in_channels[0], out_channels, leaky)
        self.output2 = conv_bn1x1(in_channels[1], out_channels, leaky)
        self.output3 = conv_bn1x1(in_channels[2], out_channels, leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches concatenated."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        assert out_channel % 4 == 0
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4)  # lower-case x: official name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7_2 = self.conv7X7_2(c5_1)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], dim=1))


class Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor; output [N, H*W*anchors, values]."""

    def __init__(self, in_channels: int, num_anchors: int, values: int):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    def __init__(self, cfg: RetinaFaceConfig, num_anchors: int = 2):
        super().__init__()
        self.cfg = cfg
        if cfg.backbone == "mobilenet0.25":
            backbone = MobileNetV1x025()
        elif cfg.backbone == "resnet50":
            import torchvision

            backbone = torchvision.models.resnet50(weights=None)
        else:
            raise ValueError(f"unknown RetinaFace backbone {cfg.backbone!r}")
        self.body = Body(backbone, cfg.return_layers)
        c = cfg.in_channel
        self.fpn = FPN([c * 2, c * 4, c * 8], cfg.out_channel)
        self.ssh1 = SSH(cfg.out_channel, cfg.out_channel)
        self.ssh2 = SSH(cfg.out_channel, cfg.out_channel)
        self.ssh3 = SSH(cfg.out_channel, cfg.out_channel)
        self.ClassHead = nn.ModuleList([Head(cfg.out_channel, num_anchors, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([Head(cfg.out_channel, num_anchors, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([Head(cfg.out_channel, num_anchors, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (box deltas [N,P,4], class probabilities [N,P,2], landmark deltas [N,P,10])."""
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        ldm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), ldm


# ------------------------------------------------------------------------------ anchors & decoding
def prior_boxes(cfg: RetinaFaceConfig, height: int, width: int) -> torch.Tensor:
    """Anchors [P,4] (cx, cy, w, h) normalised to the image, in the heads' output order."""
    out = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ys, xs = torch.meshgrid(torch.arange(fh, dtype=torch.float32), torch.arange(fw, dtype=torch.float32),
                                indexing="ij")
        cx = ((xs + 0.5) * step / width).reshape(-1, 1)
        cy = ((ys + 0.5) * step / height).reshape(-1, 1)
        per_size = [torch.cat([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], 1)
                    for s in sizes]
        out.append(torch.stack(per_size, 1).reshape(-1, 4))  # location-major, then anchor size
    return torch.cat(out, 0)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variance=(0.1, 0.2)) -> torch.Tensor:
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variance[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variance=(0.1, 0.2)) -> torch.Tensor:
    pts = pre.view(-1, 5, 2)
    return priors[:, None, :2] + pts * variance[0] * priors[:, None, 2:]


# --------------------------------------------------------------------------------------- loading
def load_retinaface_weights(model: RetinaFace, path: str | os.PathLike | None) -> RetinaFace:
    """Strictly load an official (or dfer-saved) checkpoint; clear errors for a missing or wrong file."""
    cfg = model.cfg
    fix = (f"download {cfg.official_file} from the Pytorch_Retinaface release, put it on this machine and "
           "pass its path (--weights / align.detector.weights); `--backbone` must match the file")
    state = read_weights(path, "retinaface", "RetinaFace weights file", fix, weights_only=True)
    path = Path(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise weights_error(path, "retinaface", "checkpoint is not a state dict", fix)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape = [k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shape:
        detail = "; ".join(part for part in [
            f"{len(missing)} missing keys (e.g. {missing[:3]})" if missing else "",
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})" if unexpected else "",
            f"{len(shape)} shape mismatches (e.g. {sorted(shape)[:3]})" if shape else ""] if part)
        raise weights_error(path, "retinaface", f"not a RetinaFace-{cfg.name} checkpoint: {detail}", fix)
    model.load_state_dict(state, strict=True)
    return model


class RetinaFaceDetector(FaceDetector):
    name = "retinaface"

    def __init__(self, weights: str | os.PathLike | None, backbone: str = "resnet50", device: str = "cpu",
                 score_threshold: float = 0.8, nms_threshold: float = 0.4, max_side: int | None = 640):
        if backbone not in CONFIGS:
            raise KeyError(f"unknown RetinaFace backbone {backbone!r}; choose one of {sorted(CONFIGS)}")
        self.cfg = CONFIGS[backbone]
        self.model = load_retinaface_weights(RetinaFace(self.cfg), weights).to(device).eval()
        self.weights = str(weights)
        self.device = device
        self.score_threshold, self.nms_threshold, self.max_side = score_threshold, nms_threshold, max_side

    def describe(self) -> dict:
        return {"name": self.name, "backbone": self.cfg.name, "weights": self.weights,
                "sha256": file_digest(self.weights),
                "score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "max_side": self.max_side}

    @torch.no_grad()
    def detect_batch(self, frames) -> list[list[Detection]]:
        import cv2
        from torchvision.ops import nms

        frames = [check_frame(f) for f in frames]
        if not frames:
            return []
        if len({f.shape for f in frames}) > 1:
            return [d for f in frames for d in self.detect_batch([f])]
        h, w = frames[0].shape[:2]
        # Large frames are downscaled (as the official test scripts' resize) and boxes scaled back.
        scale = min(1.0, self.max_side / max(h, w)) if self.max_side else 1.0
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        batch = np.stack([cv2.resize(f, (sw, sh), interpolation=cv2.INTER_LINEAR) if scale < 1 else f
                          for f in frames]).astype(np.float32)[..., ::-1] - np.array(BGR_MEAN, np.float32)
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
        loc, conf, ldm = self.model(x)
        priors = prior_boxes(self.cfg, sh, sw).to(self.device)
        to_px = torch.tensor([w, h], dtype=torch.float32, device=self.device)
        out = []
        for i in range(len(frames)):
            scores = conf[i, :, 1]
            keep = scores > self.score_threshold
            boxes = decode_boxes(loc[i][keep], priors[keep], self.cfg.variance) * to_px.repeat(2)
            lms = decode_landmarks(ldm[i][keep], priors[keep], self.cfg.variance) * to_px
            scores = scores[keep]
            order = nms(boxes, scores, self.nms_threshold)
            out.append([Detection(boxes[j].cpu().numpy().astype(np.float32), float(scores[j]),
                                  lms[j].cpu().numpy().astype(np.float32)) for j in order.tolist()])
        return out

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]


@register_detector("retinaface")
def _build(weights=None, device: str = "cpu", **options) -> RetinaFaceDetector:
    return RetinaFaceDetector(weights, device=device, **options)
