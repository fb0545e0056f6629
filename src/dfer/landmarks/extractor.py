"""``LandmarkFeatures``: the frozen landmark net as a feature extractor (S2D landmark/backbone.py ``Landmark``).

Input is exactly what the video model receives: ImageNet-normalised RGB ``float[N,3,H,W]`` (S2D feeds the
normalised clip, not cunjian's [0,1] BGR crops). Frames are bilinearly resized (``align_corners=True``, as
the official code) to the net's input size when they differ, and the tap features ``float[N,C,14,14]`` come
back. The module stays in eval mode whatever ``.train()`` its parent calls, and never builds a graph.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfer.landmarks.registry import build_landmark_net, landmark_net_config


class LandmarkFeatures(nn.Module):
    def __init__(self, backbone: str = "MobileFaceNet", weights: str | os.PathLike | None = None):
        super().__init__()
        self.config = landmark_net_config(backbone)
        self.backbone_name = backbone
        self.input_size = self.config.input_size
        self.channels = self.config.channels
        self.net = build_landmark_net(backbone, weights)
        for p in self.net.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "LandmarkFeatures":
        # Frozen (official: model2.eval()); BN statistics must not drift when the parent trains.
        return super().train(False)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=True)
        return x

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``float[N,3,H,W]`` (ImageNet-normalised RGB) -> ``float[N,C,14,14]``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LandmarkFeatures expects float[N,3,H,W] frames, got {tuple(x.shape)}; "
                             "flatten clips to (B*T,3,H,W) first")
        return self.net.forward_features(self.resize(x))

    @torch.no_grad()
    def landmarks(self, x: torch.Tensor) -> torch.Tensor:
        """68 landmarks ``float[N,68,2]`` in [0,1] coordinates of the (resized) frame."""
        return self.net(self.resize(x))[0].view(x.shape[0], -1, 2)

    def extra_repr(self) -> str:
        return f"backbone={self.backbone_name}, input_size={self.input_size}, channels={self.channels}"
