"""PFLD (compressed, cunjian's ``PFLDInference``; S2D landmark/pfld_compressed.py) at 112x112.

Module names follow the official code (``conv1``, ``dw_pool``, ``conv3_1``, ``block3_2`` ... ``conv8``, ``fc``)
so an official ``pfld_model_best.pth.tar`` state dict loads as is. ``forward`` returns
``(landmarks[B,136], feat[B,128,14,14])`` with ``feat`` the ``block5_6`` output (the official tap).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn(inp: int, oup: int, kernel: int, stride: int, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, padding, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear (keys ``conv.{0..7}``), optional identity shortcut."""

    def __init__(self, inp: int, oup: int, stride: int, use_res_connect: bool, expand_ratio: int = 6):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class PFLDInference(nn.Module):
    feature_tap = "block5_6"

    def __init__(self, num_points: int = 68):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)                              # 56x56
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.dw_pool = nn.Conv2d(64, 64, 3, 1, 1, groups=64, bias=False)               # depthwise "pooling"
        self.dw_bn = nn.BatchNorm2d(64)
        self.conv1_extra = nn.Conv2d(64, 64, 1, 1, 0, bias=False)
        self.conv3_1 = InvertedResidual(64, 64, 2, False, 1)                             # 28x28
        self.block3_2 = InvertedResidual(64, 64, 1, True, 1)
        self.block3_3 = InvertedResidual(64, 64, 1, True, 1)
        self.block3_4 = InvertedResidual(64, 64, 1, True, 1)
        self.block3_5 = InvertedResidual(64, 64, 1, True, 1)
        self.conv4_1 = InvertedResidual(64, 128, 2, False, 1)                            # 14x14
        self.conv5_1 = InvertedResidual(128, 128, 1, False, 2)
        self.block5_2 = InvertedResidual(128, 128, 1, True, 2)
        self.block5_3 = InvertedResidual(128, 128, 1, True, 2)
        self.block5_4 = InvertedResidual(128, 128, 1, True, 2)
        self.block5_5 = InvertedResidual(128, 128, 1, True, 2)
        self.block5_6 = InvertedResidual(128, 128, 1, True, 2)                           # <- feature tap
        self.conv6_1 = InvertedResidual(128, 16, 1, False, 1)
        self.conv7 = conv_bn(16, 32, 3, 2)                                               # 7x7
        self.conv8 = nn.Conv2d(32, 128, 7, 1, 0)                                         # 1x1
        self.bn8 = nn.BatchNorm2d(128)  # present in the official checkpoint, unused in its forward
        self.avg_pool1 = nn.AvgPool2d(14)
        self.avg_pool2 = nn.AvgPool2d(7)
        self.fc = nn.Linear(16 + 32 + 128, num_points * 2)                               # multi-scale head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``block5_6`` tap alone (feature extraction stops here: the landmark head is not needed)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.conv1_extra(self.dw_bn(self.dw_pool(x))))
        x = self.conv3_1(x)
        x = self.block3_5(self.block3_4(self.block3_3(self.block3_2(x))))
        x = self.conv5_1(self.conv4_1(x))
        return self.block5_6(self.block5_5(self.block5_4(self.block5_3(self.block5_2(x)))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.forward_features(x)
        x = self.conv6_1(feat)
        s1 = self.avg_pool1(x).flatten(1)
        x = self.conv7(x)
        s2 = self.avg_pool2(x).flatten(1)
        s3 = self.relu(self.conv8(x)).flatten(1)
        return self.fc(torch.cat([s1, s2, s3], 1)), feat
