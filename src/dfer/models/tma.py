"""Temporal-Modeling Adapter (TMA) of S2D (paper §III-C, official ``TMAdapter``).

TMA = T-Adapter (Linear down -> GELU -> temporal MSA -> Linear up) -> LayerNorm -> Vanilla Adapter
(Linear down -> GELU -> Linear up). Neither adapter has an internal skip connection: the TMA output is
added to the tokens by the caller (``x + tma + prompt``). Submodule names (``T_Adapter``, ``norm``,
``S_Adapter``, ``D_fc1``, ``D_fc2``, ``attn``) are the official state-dict names.

``mode`` selects the Table V ablation rows:
  * ``"tma"``      T-Adapter -> LayerNorm -> Vanilla Adapter (official, default)
  * ``"temporal"`` T-Adapter only ("Temporal Adapter")
  * ``"vanilla"``  Vanilla Adapter only, no temporal attention ("Vanilla Adapter [42]")
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention

ADAPTER_MODES = ("none", "vanilla", "temporal", "tma")


class Adapter(nn.Module):
    """Bottleneck adapter: ``D_fc2(attn(GELU(D_fc1(x))))``; ``attn`` is a timm Attention or Identity."""

    def __init__(self, dim: int, ratio: float = 0.25, attention: bool = True, num_heads: int = 8,
                 qkv_bias: bool = False):
        super().__init__()
        hidden = int(dim * ratio)
        self.act = nn.GELU()
        self.D_fc1 = nn.Linear(dim, hidden)
        self.D_fc2 = nn.Linear(hidden, dim)
        self.attn = Attention(hidden, num_heads=num_heads, qkv_bias=qkv_bias) if attention else nn.Identity()
        # The official Adapter zero-inits D_fc2 here, but the enclosing prompt block and the ViT re-initialise
        # every weight afterwards (see S2DVisionTransformer._init_official); kept for the record.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias) if m.bias is not None else None
        nn.init.zeros_(self.D_fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.D_fc2(self.attn(self.act(self.D_fc1(x))))


class TMAdapter(nn.Module):
    """Temporal-Modeling Adapter on patch tokens ``[B*T, N, D]`` -> ``[B*T, N, D]``."""

    def __init__(self, dim: int, num_frames: int, ratio: float = 0.25, mode: str = "tma", num_heads: int = 8):
        super().__init__()
        if mode not in ADAPTER_MODES[1:]:
            raise ValueError(f"adapter mode must be one of {ADAPTER_MODES[1:]}, got {mode!r}")
        self.num_frames = num_frames
        self.mode = mode
        if mode in ("temporal", "tma"):
            self.T_Adapter = Adapter(dim, ratio, attention=True, num_heads=num_heads)
        if mode == "tma":
            self.norm = nn.LayerNorm(dim)  # default eps 1e-5, as official
        if mode in ("vanilla", "tma"):
            self.S_Adapter = Adapter(dim, ratio, attention=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode in ("temporal", "tma"):
            bt, n, d = x.shape
            t = self.num_frames
            # (b t) n d -> (b n) t d: attention runs over the frames of each token position
            xt = x.reshape(bt // t, t, n, d).transpose(1, 2).reshape(-1, t, d)
            xt = self.T_Adapter(xt)
            x = xt.reshape(bt // t, n, t, d).transpose(1, 2).reshape(bt, n, d)
            if self.mode == "temporal":
                return x
            x = self.norm(x)
        return self.S_Adapter(x)
