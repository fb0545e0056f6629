"""Weight initialisation shared by the ViT-based models (S2D, UniLearn)."""
import torch.nn as nn
from timm.layers import trunc_normal_


def init_vit_module(m: nn.Module) -> None:
    """The ViT-wide init both official codebases apply last: trunc-normal(0.02) Linears, LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
