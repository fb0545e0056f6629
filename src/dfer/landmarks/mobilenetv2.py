"""MobileNetV2 landmark regressors with a global depthwise-conv head (cunjian's ``MobileNet_GDConv``).

``MobileNetV2`` reproduces torchvision's ``mobilenet_v2`` layout and key names (``features.<i>...``,
``classifier.1``); ``MobileNetGDConv`` wraps it as the official code does (``pretrain_net`` = the whole
MobileNetV2, ``base_net.0`` = the same ``features`` module again, then ``linear7``/``linear1``), so the
official checkpoints' state dicts (both key prefixes, unused 1000-way classifier included) load as is.
That classifier is why Table III lists 3.74 M parameters for these nets.

Variants (Table III): input 224 (MobileNetV2@224 and MobileNetV2_ED: same net, ED = trained with external
data) tap ``features[13]`` = 96 x 14 x 14 (the official tap); input 56 (MobileNetV2@56, 2x2 GDConv) tap
``features[3]`` = 24 x 14 x 14 (the layer that is 14 x 14 at 56 px; the 24 channels S2D's code expects).
``forward`` returns ``(landmarks[B,136], feat)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# (expand ratio t, out channels c, repeats n, first stride s): the MobileNetV2 paper's table
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu6(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv -> BN -> ReLU6 as a plain Sequential (keys ``0.weight``, ``1.*``: torchvision's layout)."""
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [conv_bn_relu6(inp, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's module names; ``features`` has 19 stages."""

    def __init__(self, num_classes: int = 1000, last_channel: int = 1280, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(conv_bn_relu6(inp, last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class GDConvBlock(nn.Module):
    """cunjian's ``ConvBlock``: conv -> BN (-> PReLU unless ``linear``)."""

    def __init__(self, inp: int, oup: int, k, s: int, p: int, dw: bool = False, linear: bool = False):
        super().__init__()
        self.linear = linear
        self.conv = nn.Conv2d(inp, oup, k, s, p, groups=inp if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(oup)
        if not linear:
            self.prelu = nn.PReLU(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.linear else self.prelu(x)


class MobileNetGDConv(nn.Module):
    """``MobileNet_GDConv`` (224 px, 7x7 GDConv, tap 13) / ``MobileNet_GDConv_56`` (56 px, 2x2, tap 3)."""

    def __init__(self, num_classes: int = 136, input_size: int = 224, tap: int | None = None):
        super().__init__()
        if input_size not in (56, 224):
            raise ValueError(f"MobileNetGDConv takes 56 or 224 px input, got {input_size}")
        self.input_size = input_size
        self.tap = tap if tap is not None else (13 if input_size == 224 else 3)
        self.feature_tap = f"features.{self.tap}"
        self.pretrain_net = MobileNetV2()
        # The official code registers the feature extractor a second time; keep it (state-dict keys).
        self.base_net = nn.Sequential(self.pretrain_net.features)
        gd = 7 if input_size == 224 else 2   # spatial size of the last feature map
        self.linear7 = GDConvBlock(1280, 1280, (gd, gd), 1, 0, dw=True, linear=True)
        self.linear1 = GDConvBlock(1280, num_classes, 1, 1, 0, linear=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``features.<tap>`` output alone (feature extraction stops here)."""
        for block in self.base_net[0][:self.tap + 1]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feat = self.forward_features(x)
        for block in self.base_net[0][self.tap + 1:]:
            x = block(x)
        x = self.linear1(self.linear7(x))
        return x.flatten(1), feat
