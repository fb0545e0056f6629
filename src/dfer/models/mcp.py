"""Multi-View Complementary Prompter (MCP, paper §III-B3) and the per-layer prompt block of S2D.

One ``PromptBlock`` sits before each transformer block (official ``Prompt_block``). It holds the fusion
prompter (MCP, or CAP for the Table IV ablation) and, as in the official code, the layer's TMA. Given
layer-normed RGB patch tokens ``x`` and landmark tokens ``a`` (both ``[B*T, N, D]``) it returns
``(prompt, temporal)``, each ``[B*T, N, D]`` or None, which the ViT adds to its patch tokens.

MCP (official names): ``conv0_0`` (RGB view D->hidden 1x1 conv), ``conv0_1`` (landmark view D->hidden),
``fovea`` (spatial softmax with a learnable temperature ``smooth`` initialised to 10, times its input),
``conv1x1`` (hidden->D): ``prompt = conv1x1(fovea(conv0_0(x)) + conv0_1(a))``.
CAP ("concatenation and projection", Table IV): ``prompt = cap(cat([x, a], channels))`` with one
Linear(2D -> D), in the same place and with the same residual use as MCP, so only the fusion operator
differs between the two ablation rows.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dfer.models.tma import TMAdapter

FUSIONS = ("none", "mcp", "cap")


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, N, D]`` -> ``[B, D, H, W]`` (row-major token order, as timm's PatchEmbed flattens)."""
    b, n, d = tokens.shape
    return tokens.transpose(1, 2).reshape(b, d, grid[0], grid[1])


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class Fovea(nn.Module):
    """``softmax_over_space(x * smooth) * x`` per channel (paper Eq. 4-5)."""

    def __init__(self, smooth: bool = True):
        super().__init__()
        self.smooth = nn.Parameter(torch.full((1,), 10.0)) if smooth else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w)
        mask = torch.softmax(x * self.smooth if self.smooth is not None else x, dim=-1)
        return (mask * x).reshape(b, c, h, w)


class PromptPatchEmbed(nn.Module):
    """Landmark-feature patch embedding (official ``Prompt_PatchEmbed``, key ``patch_embed_prompt.proj``).

    The official model embeds the 14x14 MobileFaceNet map with a 1x1 conv, matching the 14x14 grid of a
    224/16 ViT. For other grids the conv has kernel = stride = ``lmk_grid // token_grid`` (e.g. 2x2 stride 2
    for the tiny 112/16 -> 7x7 model).
    """

    def __init__(self, in_chans: int, embed_dim: int, lmk_grid: int, token_grid: tuple[int, int]):
        super().__init__()
        if lmk_grid % token_grid[0] or lmk_grid % token_grid[1] or token_grid[0] != token_grid[1]:
            raise ValueError(f"landmark map {lmk_grid}x{lmk_grid} cannot be patch-embedded onto the "
                             f"{token_grid[0]}x{token_grid[1]} token grid; choose img_size/patch_size so that "
                             f"the grid divides {lmk_grid}")
        self.lmk_grid = lmk_grid
        self.in_chans = in_chans
        self.patch = lmk_grid // token_grid[0]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch, stride=self.patch)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.ndim != 4 or a.shape[1:] != (self.in_chans, self.lmk_grid, self.lmk_grid):
            raise ValueError(f"landmark features must be [B*T, {self.in_chans}, {self.lmk_grid}, {self.lmk_grid}], "
                             f"got {list(a.shape)} (set lmk_channels/lmk_grid to the landmark backbone's)")
        return map_to_tokens(self.proj(a))


class PromptBlock(nn.Module):
    """Per-layer fusion prompter (+ the layer's TMA); official ``prompt_blocks.{i}``."""

    def __init__(self, dim: int, grid: tuple[int, int], fusion: str = "mcp", hidden_dim: int = 8,
                 adapter: str = "tma", num_frames: int = 16, adapter_scale: float = 0.25, adapter_heads: int = 8):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.grid = grid
        self.fusion = fusion
        if fusion == "mcp":
            self.conv0_0 = nn.Conv2d(dim, hidden_dim, 1)
            self.conv0_1 = nn.Conv2d(dim, hidden_dim, 1)
            self.conv1x1 = nn.Conv2d(hidden_dim, dim, 1)
            self.fovea = Fovea(smooth=True)
        elif fusion == "cap":
            self.cap = nn.Linear(2 * dim, dim)
        if adapter != "none":
            self.TMA = TMAdapter(dim, num_frames, ratio=adapter_scale, mode=adapter, num_heads=adapter_heads)
        # Official Prompt_block init: xavier_uniform_ on every >1-D parameter (adapters included).
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None):
        temporal = self.TMA(x) if hasattr(self, "TMA") else None
        if self.fusion == "mcp":
            xm, am = tokens_to_map(x, self.grid), tokens_to_map(a, self.grid)
            prompt = map_to_tokens(self.conv1x1(self.fovea(self.conv0_0(xm)) + self.conv0_1(am)))
        elif self.fusion == "cap":
            prompt = self.cap(torch.cat([x, a], dim=-1))
        else:
            prompt = None
        return prompt, temporal
