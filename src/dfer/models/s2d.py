"""S2D: a ViT with Multi-View Complementary Prompters (MCP) and Temporal-Modeling Adapters (TMA).

Paper: "From Static to Dynamic: Adapting Landmark-Aware Image Models for Facial Expression Recognition in
Videos" (S2D). State-dict compatible with the official release (MSA-LMC/S2D ``model_finetuning.py``):
same parameter names and shapes, same forward computation, so the published checkpoints load with
:func:`dfer.models.weights.load_pretrained` and give the official outputs.

Forward: ``model(x, lmk=None) -> (logits[B, K], feat[B, D])``; ``x`` float ``[B, 3, T, H, W]`` (image models
also take ``[B, 3, H, W]``), ``lmk`` float ``[B*T, C, 14, 14]`` landmark-aware features (None when
``fusion="none"``). ``feat`` is the frame-averaged CLS feature after the head's dropout (the official
``feat`` that SDL consumes; identical to the pre-dropout feature in eval mode).

Per layer (official ``forward_features``):
  input:      x = x + TMA_0(n0(x)) + MCP_0(n0(x), n0(a));  a <- MCP_0 output        (patch tokens only)
  then        x = [cls, x] + pos_embed; x += temporal_embedding[t] (all tokens incl. CLS)
  block i>=1: x_patch += TMA_i(n_{i-1}(x)_patch) + MCP_i(n_{i-1}(x)_patch, n0(a)); a <- MCP_i output
              x = blocks[i](x)
  output:     ln_post -> per-frame CLS -> I3D head (mean over T -> dropout -> fc_cls)
where n_j = prompt_norms[j]; prompt_norms[depth-1] is never used (kept for state-dict compatibility).

Ablation switches (constructor kwargs):
  fusion  = "mcp" (official) | "cap" (concat + Linear projection, Table IV) | "none" (no landmark branch)
  adapter = "tma" (official) | "temporal" (T-Adapter only) | "vanilla" (S-Adapter only) | "none"
With fusion="none" and adapter="none" the model is a plain ViT (+ temporal embedding, I3D head).

Differences from the official code (also listed in the README's differences):
  * Built on timm 1.x ``Block``/``Attention``/``Mlp``/``PatchEmbed`` (the official code needs timm 0.6);
    parameter names are unchanged.
  * Sizes other than ViT-B/16 at 224 px: the landmark map (``lmk_grid``, 14 for MobileFaceNet at 112 px)
    is patch-embedded with a kernel = stride = ``lmk_grid // token_grid`` conv (1x1 at 224/16, as official;
    2x2 stride 2 for the tiny 112/16 model's 7x7 grid).
  * Initialisation follows the official code (``adapter_init="official"``): adapters are *not*
    zero-initialised in practice, because the official ``Adapter`` zero-inits ``D_fc2`` but ``Prompt_block``
    then xavier-inits every >1-D parameter and the ViT then trunc-normal(0.02)-inits every Linear.
    ``adapter_init="zero"`` zeroes each adapter's ``D_fc2`` (TMA output 0 at init) as an option.
  * ``pos_embed`` is fixed (``requires_grad=False``) as in the official code.
  * The image model (SFER, "S2D w/o TMA") is this class with ``num_frames=1, adapter="none"``.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block

from dfer.models.tma import ADAPTER_MODES
from dfer.models.init import init_vit_module
from dfer.models.mcp import FUSIONS, PromptBlock, PromptPatchEmbed
from dfer.models.registry import register_config


class I3DHead(nn.Module):
    """Mean over T -> dropout -> Linear (official ``I3DHead``, key ``head.fc_cls``)."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor):
        feat = self.dropout(x.mean(dim=1))  # x: [B, T, D]
        return self.fc_cls(feat), feat


class S2DVisionTransformer(nn.Module):
    def __init__(
        self,
        # the ViT (ViT-B/16 by default) and the clip
        num_classes: int = 7, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
        embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
        num_frames: int = 16,
        # S2D's additions: landmark fusion (Table IV), temporal adapter (Table V), the landmark features' shape
        fusion: str = "mcp", adapter: str = "tma", hidden_dim: int = 8, adapter_scale: float = 0.25,
        adapter_heads: int = 8, adapter_init: str = "official", lmk_channels: int = 128, lmk_grid: int = 14,
        # regularisation
        head_dropout: float = 0.5, drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if adapter not in ADAPTER_MODES:
            raise ValueError(f"adapter must be one of {ADAPTER_MODES}, got {adapter!r}")
        if adapter_init not in ("official", "zero"):
            raise ValueError(f"adapter_init must be 'official' or 'zero', got {adapter_init!r}")
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.fusion = fusion
        self.adapter = adapter
        self.num_features = self.embed_dim = embed_dim
        self.lmk_channels = lmk_channels
        self.lmk_grid = lmk_grid

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        self.grid = tuple(self.patch_embed.grid_size)
        num_patches = self.patch_embed.num_patches
        if fusion != "none":
            self.patch_embed_prompt = PromptPatchEmbed(lmk_channels, embed_dim, lmk_grid, self.grid)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        if fusion != "none" or adapter != "none":
            self.prompt_blocks = nn.Sequential(*[
                PromptBlock(embed_dim, self.grid, fusion=fusion, hidden_dim=hidden_dim, adapter=adapter,
                            num_frames=num_frames, adapter_scale=adapter_scale, adapter_heads=adapter_heads)
                for _ in range(depth)])
            self.prompt_norms = nn.Sequential(*[norm_layer(embed_dim) for _ in range(depth)])
        else:
            self.prompt_blocks = None
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = nn.Sequential(*[
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  proj_drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(depth)])
        self.ln_post = norm_layer(embed_dim)
        self.head = I3DHead(num_classes, embed_dim, dropout_ratio=head_dropout)
        self._init_official()
        if adapter_init == "zero":
            for name, m in self.named_modules():
                if name.endswith("D_fc2"):
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)

    def _init_official(self) -> None:
        # Official VisionTransformer: trunc_normal(.02) on every Linear (this overrides the prompt blocks'
        # xavier init of adapter Linears), LayerNorm 1/0; convs keep their xavier / default init.
        self.apply(init_vit_module)
        for p in (self.cls_token, self.pos_embed, self.temporal_embedding):
            trunc_normal_(p, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "temporal_embedding", "cls_token"}

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head
        self.head = I3DHead(num_classes, self.embed_dim, dropout_ratio=getattr(old.dropout, "p", 0.0))
        trunc_normal_(self.head.fc_cls.weight, std=0.02)
        nn.init.zeros_(self.head.fc_cls.bias)
        self.num_classes = num_classes

    def _prompt(self, i: int, x_normed: torch.Tensor, a: torch.Tensor | None):
        a_normed = self.prompt_norms[0](a) if a is not None else None  # official: always prompt_norms[0]
        prompt, temporal = self.prompt_blocks[i](x_normed, a_normed)
        delta = None
        for term in (temporal, prompt):  # official summation order: x + x1(TMA) + x_feat(prompt)
            if term is not None:
                delta = term if delta is None else delta + term
        return delta, (prompt if prompt is not None else a)

    def forward_features(self, x: torch.Tensor, lmk: torch.Tensor | None) -> torch.Tensor:
        """``x [B*T, 3, H, W]``, ``lmk [B*T, C, g, g]`` -> tokens after ``ln_post`` ``[B*T, 1+N, D]``."""
        x = self.patch_embed(x)
        a = self.patch_embed_prompt(lmk) if self.fusion != "none" else None
        if self.prompt_blocks is not None:
            delta, a = self._prompt(0, self.prompt_norms[0](x), a)
            x = x + delta
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.pos_drop(x)
        bt, n, d = x.shape
        x = (x.reshape(bt // self.num_frames, self.num_frames, n, d)
             + self.temporal_embedding.unsqueeze(2)).reshape(bt, n, d)
        for i, blk in enumerate(self.blocks):
            if i >= 1 and self.prompt_blocks is not None:
                delta, a = self._prompt(i, self.prompt_norms[i - 1](x)[:, 1:], a)
                x = torch.cat([x[:, :1], x[:, 1:] + delta], dim=1)
            x = blk(x)
        return self.ln_post(x)

    def forward(self, x: torch.Tensor, lmk: torch.Tensor | None = None):
        if x.ndim == 4:  # image batch [B, 3, H, W] -> clips of one frame
            x = x.unsqueeze(2)
        if x.ndim != 5:
            raise ValueError(f"expected x [B, 3, T, H, W] (or [B, 3, H, W] for T=1), got {list(x.shape)}")
        b, c, t, h, w = x.shape
        if t != self.num_frames:
            raise ValueError(f"model built for num_frames={self.num_frames}, input has T={t}")
        if self.fusion != "none":
            if lmk is None:
                raise ValueError(f"fusion={self.fusion!r} needs landmark features lmk [B*T, C, 14, 14]")
            if lmk.ndim == 5:  # [B, T, C, h, w] -> [B*T, C, h, w]
                lmk = lmk.flatten(0, 1)
            if lmk.shape[0] != b * t:
                raise ValueError(f"lmk has {lmk.shape[0]} maps, expected B*T = {b * t}")
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.forward_features(x, lmk)
        cls = x[:, 0].reshape(b, t, -1)
        return self.head(cls)


# ---- registry ---------------------------------------------------------------------------------------
# ViT-B/16 as the official ``s2d_base_patch16_224``; the tiny configuration (112 px, 7x7 tokens) trains a
# 16-frame clip batch on a CPU in a fraction of a second. Every factory takes ``num_classes``, any
# constructor kwarg (ablation switches) and an optional local ``pretrained`` checkpoint path.

_BASE = dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)
_TINY = dict(img_size=112, patch_size=16, embed_dim=96, depth=4, num_heads=4, mlp_ratio=4.0, adapter_heads=4)
_IMAGE = dict(num_frames=1, adapter="none")

# The constructor config of every registered S2D/SFER model. MAE pre-training
# (``dfer.pretrain.mae.mae_for(name)``) builds its encoder from the same entry, so the pre-trained weights
# always fit the model they initialise.
ARCHITECTURES: dict[str, dict] = {
    "s2d_base_patch16_224": _BASE,
    "s2d_tiny": _TINY,
    "sfer_base_patch16_224": {**_BASE, **_IMAGE},
    "sfer_tiny": {**_TINY, **_IMAGE},
}


def architecture(name: str) -> dict:
    """A copy of the constructor config of the registered S2D/SFER model ``name``."""
    if name not in ARCHITECTURES:
        raise KeyError(f"no S2D/SFER architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return dict(ARCHITECTURES[name])


def _create(pretrained: str | None = None, pretrained_format: str = "official_s2d",
            **kwargs) -> S2DVisionTransformer:
    model = S2DVisionTransformer(**kwargs)
    if pretrained:
        from dfer.models.weights import load_pretrained

        load_pretrained(model, pretrained, format=pretrained_format)
    return model


def _register(name: str, doc: str):
    """``name(pretrained=None, pretrained_format="official_s2d", **kwargs)``: the model of ``ARCHITECTURES[name]``."""
    return register_config(name, doc, _create, **ARCHITECTURES[name])


s2d_base_patch16_224 = _register("s2d_base_patch16_224", "Official S2D: ViT-B/16 + MCP + TMA, 16 frames, "
                                                         "MobileFaceNet landmark features (128 ch).")
s2d_tiny = _register("s2d_tiny", "Tiny S2D for CPU runs: 112 px, patch 16 (7x7 tokens), dim 96, depth 4, 4 heads.")
sfer_base_patch16_224 = _register("sfer_base_patch16_224", 'SFER image model "S2D w/o TMA": ViT-B/16 + MCP, T=1.')
sfer_tiny = _register("sfer_tiny", "Tiny SFER image model (112 px, T=1).")
