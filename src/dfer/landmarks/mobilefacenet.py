"""MobileFaceNet as a 68-point landmark regressor, as used by S2D (landmark/mobilefacenet.py).

Module names follow the official code so that its ``mobilefacenet_model_best.pth.tar`` loads with
``load_state_dict`` as is (same keys, same shapes): ``conv1``, ``conv2_dw``, ``conv_23``, ``conv_3``,
``conv_34``, ``conv_4``, ``conv_45``, ``conv_5``, ``conv_6_sep``, ``output_layer.{conv_6_dw,linear,bn}``.
``MobileFaceNet([112, 112], 136)`` has 1,007,248 parameters.

``forward`` returns ``(landmarks[B,136], feat[B,128,14,14])``; ``feat`` is the ``conv_4`` output (the
stage S2D taps as its landmark-aware view; cunjian's original returned ``conv_6_sep`` instead).
Landmarks are normalised ``(x0, y0, x1, y1, ...)`` in [0, 1] of the face crop.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ConvBlock(nn.Module):
    """Conv (no bias) -> BN -> PReLU (official ``Conv_block``)."""

    def __init__(self, in_c: int, out_c: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """Conv (no bias) -> BN, no activation (official ``Linear_block``)."""

    def __init__(self, in_c: int, out_c: int, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``groups`` ch -> depthwise kxk -> 1x1 linear projection."""

    def __init__(self, in_c: int, out_c: int, residual: bool = False, kernel=(3, 3), stride=(2, 2),
                 padding=(1, 1), groups: int = 1):
        super().__init__()
        self.conv = ConvBlock(in_c, groups)
        self.conv_dw = ConvBlock(groups, groups, kernel, stride, padding, groups=groups)
        self.project = LinearBlock(groups, out_c)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` residual ``DepthWise`` blocks at constant width (keys ``model.<i>.*``)."""

    def __init__(self, c: int, num_block: int, groups: int, kernel=(3, 3), stride=(1, 1), padding=(1, 1)):
        super().__init__()
        self.model = nn.Sequential(*[DepthWise(c, c, True, kernel, stride, padding, groups)
                                     for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class GDC(nn.Module):
    """Global depthwise conv head: 7x7 depthwise -> flatten -> linear -> BN1d (the 136-d regression)."""

    def __init__(self, embedding_size: int):
        super().__init__()
        self.conv_6_dw = LinearBlock(512, 512, kernel=(7, 7), groups=512)
        self.conv_6_flatten = Flatten()
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_flatten(self.conv_6_dw(x))))


class MobileFaceNet(nn.Module):
    """``MobileFaceNet(input_size=[112, 112], embedding_size=136)``: 68-point landmarks + conv_4 features."""

    feature_tap = "conv_4"

    def __init__(self, input_size=(112, 112), embedding_size: int = 136):
        super().__init__()
        if tuple(input_size)[0] != 112:
            raise ValueError(f"MobileFaceNet takes 112x112 input (the GDC head is 7x7), got {input_size}")
        self.conv1 = ConvBlock(3, 64, (3, 3), (2, 2), (1, 1))                        # 56x56
        self.conv2_dw = ConvBlock(64, 64, (3, 3), (1, 1), (1, 1), groups=64)
        self.conv_23 = DepthWise(64, 64, groups=128)                                   # 28x28
        self.conv_3 = Residual(64, num_block=4, groups=128)
        self.conv_34 = DepthWise(64, 128, groups=256)                                  # 14x14
        self.conv_4 = Residual(128, num_block=6, groups=256)                           # <- S2D's tap
        self.conv_45 = DepthWise(128, 128, groups=512)                                 # 7x7
        self.conv_5 = Residual(128, num_block=2, groups=256)
        self.conv_6_sep = ConvBlock(128, 512)
        self.output_layer = GDC(embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``conv_4`` tap alone (feature extraction stops here: the landmark head is not needed)."""
        return self.conv_4(self.conv_34(self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.forward_features(x)
        x = self.conv_6_sep(self.conv_5(self.conv_45(feat)))
        return self.output_layer(x), feat
