"""Landmark networks by name (Table III of S2D), their feature taps, and checkpoint loading.

=================  ======  ======================  ============  ===========  ====================
name               input   feature tap             tap shape     params       official class
=================  ======  ======================  ============  ===========  ====================
MobileFaceNet      112     conv_4                  128 x 14x14   1,007,248    MobileFaceNet([112,112],136)
PFLD               112     block5_6                128 x 14x14     730,472    PFLDInference
MobileNetV2_56      56     features.3               24 x 14x14   3,686,904    MobileNet_GDConv_56
MobileNetV2_224    224     features.13              96 x 14x14   3,744,504    MobileNet_GDConv
MobileNetV2_ED     224     features.13              96 x 14x14   3,744,504    MobileNet_GDConv
=================  ======  ======================  ============  ===========  ====================

Every tap is 14 x 14 at the net's own input size, so no feature resize is needed. ``external_data``: the
cunjian toolkit trained these nets with extra data ("_ExternalData"); `dfer train-landmarks` mirrors that by
adding ``landmarks.train.external_datasets`` to their training set. Checkpoints: the official
``{'state_dict': ...}`` files (``module.`` prefixes stripped) or a bare state dict, always a local path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from dfer.data.errors import DataError
from dfer.landmarks.mobilefacenet import MobileFaceNet
from dfer.landmarks.mobilenetv2 import MobileNetGDConv
from dfer.landmarks.pfld import PFLDInference
from dfer.registry import Registry

NUM_POINTS = 68


@dataclass(frozen=True)
class LandmarkNetConfig:
    name: str
    input_size: int          # the net's square input (px)
    feature_tap: str         # module whose output is the landmark-aware view
    channels: int            # channels of that view (S2D's in_chans_l)
    external_data: bool      # trained with extra data in the toolkit (train-landmarks adds datasets)
    official_file: str       # the toolkit's checkpoint name, for messages
    build: Callable[[], nn.Module]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return (self.channels, 14, 14)


_NETS: Registry[LandmarkNetConfig] = Registry("landmark backbone")
for _config in [
    LandmarkNetConfig("MobileFaceNet", 112, "conv_4", 128, True, "mobilefacenet_model_best.pth.tar",
                      lambda: MobileFaceNet([112, 112], NUM_POINTS * 2)),
    LandmarkNetConfig("PFLD", 112, "block5_6", 128, True, "pfld_model_best.pth.tar",
                      lambda: PFLDInference(NUM_POINTS)),
    LandmarkNetConfig("MobileNetV2_56", 56, "features.3", 24, False, "mobilenet_56_model_best_gdconv.pth.tar",
                      lambda: MobileNetGDConv(NUM_POINTS * 2, 56)),
    LandmarkNetConfig("MobileNetV2_224", 224, "features.13", 96, False, "mobilenet_224_model_best_gdconv.pth.tar",
                      lambda: MobileNetGDConv(NUM_POINTS * 2, 224)),
    LandmarkNetConfig("MobileNetV2_ED", 224, "features.13", 96, True,
                      "mobilenet_224_model_best_gdconv_external.pth.tar",
                      lambda: MobileNetGDConv(NUM_POINTS * 2, 224)),
]:
    _NETS.add(_config.name, _config)


def list_landmark_nets() -> list[str]:
    return _NETS.names()


def landmark_net_config(name: str) -> LandmarkNetConfig:
    return _NETS.get(name)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_landmark_net(name: str, weights: str | os.PathLike | None = None, seed: int = 0) -> nn.Module:
    """A landmark net by name; ``forward(x) -> (landmarks[B,136], feat[B,C,14,14])``.

    ``weights``: local checkpoint path (official ``{'state_dict': ...}`` or a bare state dict); None = random
    init, seeded by ``seed`` (so two builds agree) without touching the global RNG.
    """
    config = landmark_net_config(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = config.build()
    if weights is not None:
        load_landmark_weights(model, weights, name)
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file, ``module.`` prefixes stripped. A missing or unreadable file
    (:class:`~dfer.models.weights.CheckpointError`) or one without a state dict raises a DataError naming the fix."""
    from dfer.models.weights import read_checkpoint

    # Old official .pth.tar files may pickle extra non-tensor entries (epoch, best score): full unpickling.
    ckpt = read_checkpoint(path, trust_pickle=True, what="landmark checkpoint",
                           fix="give the local path of a .pth/.pth.tar file saved by torch.save (landmarks.weights "
                               "in params.yaml), or set it to null to train the net with `dfer train-landmarks`")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "holds no state dict (expected {'state_dict': {name: tensor}} or {name: tensor})",
                        "point to a landmark-network checkpoint such as mobilefacenet_model_best.pth.tar")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_landmark_weights(model: nn.Module, path: str | os.PathLike, name: str = "") -> None:
    """Strictly load a checkpoint; a mismatch raises a DataError listing missing/unexpected/reshaped keys."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
                if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "") or "none"
        what = f"the {name} landmark net" if name else type(model).__name__
        raise DataError(path, f"does not match {what}: missing keys: {show(missing)}; unexpected keys: "
                        f"{show(unexpected)}; shape mismatches: {show(reshaped)}",
                        "use the checkpoint of this backbone (e.g. "
                        f"{_NETS.get(name).official_file if name in _NETS else 'the matching file'}) or change "
                        "--backbone / landmarks.backbone")
    model.load_state_dict(state)
