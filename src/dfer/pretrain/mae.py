"""Masked autoencoder (MAE, He et al. 2022) whose encoder is our S2D/SFER ViT.

Recipe of facebookresearch/mae (``models_mae.py``): patchify, per-sample random masking by shuffling
(``ratio`` of the tokens dropped, default 0.75), the encoder sees only the visible tokens (+ CLS), a light
decoder gets the encoded tokens plus a shared ``mask_token`` at every masked position, adds its own fixed
sin-cos position embedding and predicts the pixels of every patch; the loss is the mean squared error on the
masked patches only, against per-patch normalised pixels (``norm_pix_loss``).

Parameter names (what a checkpoint holds):
  encoder  ``patch_embed.proj.*``, ``cls_token``, ``pos_embed`` (fixed 2-D sin-cos, ``requires_grad=False``),
           ``blocks.{i}.*`` (timm ``Block``), ``norm.*`` -- the names and shapes of
           :class:`dfer.models.s2d.S2DVisionTransformer` (its ``ln_post`` is MAE's ``norm``), so
           ``load_pretrained(model, path, format="mae")`` loads every encoder tensor into it;
  decoder  ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.{i}.*``, ``decoder_norm``,
           ``decoder_pred`` -- dropped by that loader.

``mae_for(name)`` builds the MAE for a registered S2D/SFER model from the model's own registry entry
(``dfer.models.s2d.ARCHITECTURES``), so the encoder always matches what it initialises.

The token-level pieces (``patchify``/``unpatchify``, ``random_masking``, ``masked_patch_loss``) are plain
functions of the patch size / token grid, not of images: a dual-modal (image + video) MAE such as UniLearn's
OmniMAE-style pre-training (tubelets 2x16x16, 90 % of image and 95 % of video tokens masked) can call them with a
3-D patch ``(2, 16, 16)`` and its own ratio per modality.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

# MAE's decoder for ViT-B/L/H (``mae_vit_*_dec512d8b``); the tiny CPU models get a proportionally light one.
MAE_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
TINY_DECODER = dict(decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4)
DEFAULT_DECODERS = {"s2d_base_patch16_224": MAE_DECODER, "sfer_base_patch16_224": MAE_DECODER,
                    "s2d_tiny": TINY_DECODER, "sfer_tiny": TINY_DECODER}
ENCODER_KEYS = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias")


# ---- token-level functions (images: patch (p, p); videos: patch (t, p, p)) ------------------------------
def token_grid(shape: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """Token grid of an input with spatial/temporal ``shape`` (``(H, W)`` or ``(T, H, W)``) cut into ``patch``."""
    if len(shape) != len(patch):
        raise ValueError(f"input dims {tuple(shape)} and patch {tuple(patch)} differ in length")
    bad = [(s, p) for s, p in zip(shape, patch) if s % p]
    if bad:
        raise ValueError(f"input {tuple(shape)} is not divisible by the patch {tuple(patch)}")
    return tuple(s // p for s, p in zip(shape, patch))


def patchify(x: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """``[N, C, *dims]`` -> ``[N, L, prod(patch) * C]``; tokens in grid order (t, h, w), each patch's values in
    (pt, ph, pw, C) order (MAE's ``nhwpqc`` for images, VideoMAE's for tubelets)."""
    n, c, *dims = x.shape
    grid = token_grid(dims, patch)
    k = len(grid)
    x = x.reshape(n, c, *[v for g, p in zip(grid, patch) for v in (g, p)])
    # axes: 0 n, 1 c, then (g_i, p_i) pairs at 2 + 2i, 3 + 2i
    order = [0, *[2 + 2 * i for i in range(k)], *[3 + 2 * i for i in range(k)], 1]
    return x.permute(order).reshape(n, int(torch.tensor(grid).prod()), -1)


def unpatchify(x: torch.Tensor, patch: Sequence[int], grid: Sequence[int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[N, L, prod(patch) * C]`` on ``grid`` -> ``[N, C, *dims]``."""
    n = x.shape[0]
    k = len(grid)
    x = x.reshape(n, *grid, *patch, channels)
    # axes: 0 n, 1..k grid, k+1..2k patch, 2k+1 c -> n, c, (g_0, p_0), (g_1, p_1), ...
    order = [0, 2 * k + 1, *[v for i in range(k) for v in (1 + i, 1 + k + i)]]
    return x.permute(order).reshape(n, channels, *[g * p for g, p in zip(grid, patch)])


class Masking(NamedTuple):
    kept: torch.Tensor         # [N, L_keep, D] the visible tokens, in shuffled order
    mask: torch.Tensor         # [N, L] 0 = visible, 1 = masked (in the original token order)
    ids_restore: torch.Tensor  # [N, L] position of each original token in the shuffled order
    ids_keep: torch.Tensor     # [N, L_keep] original indices of the visible tokens


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept by :func:`random_masking` (MAE: ``int(L * (1 - ratio))``, at least one)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return max(1, int(num_tokens * (1 - mask_ratio)))


def random_masking(tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None) -> Masking:
    """Per-sample random masking by per-sample shuffling (argsort of uniform noise) of ``tokens [N, L, D]``."""
    n, length, d = tokens.shape
    keep = num_visible(length, mask_ratio)
    noise = torch.rand(n, length, device=tokens.device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)          # small noise = kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(n, length, device=tokens.device, dtype=tokens.dtype)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masking(kept, mask, ids_restore, ids_keep)


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalised pixels (MAE ``norm_pix_loss``): zero mean, unit (unbiased) variance per patch."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
    """Mean over masked patches of the per-patch MSE; ``pred``/``target`` ``[N, L, P]``, ``mask [N, L]``."""
    if norm_pix:
        target = normalize_patches(target)
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[M] -> [M, dim]``: sin of the positions times ``1 / 10000^(2i/dim)`` then cos (MAE / Transformer)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_2d(dim: int, grid: Sequence[int], cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``[1, (1+) gh*gw, dim]`` (MAE ``get_2d_sincos_pos_embed``): the first
    half of the channels encodes the column, the second half the row; the CLS token gets zeros."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding dim must be a multiple of 4, got {dim}")
    gh, gw = grid
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols.reshape(-1)), sincos_1d(dim // 2, rows.reshape(-1))], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)


# ---- the model ----------------------------------------------------------------------------------------
class MaskedAutoencoderViT(nn.Module):
    """MAE with the S2D ViT encoder's parameter names (see the module docstring)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 decoder_embed_dim: int = 512, decoder_depth: int = 8, decoder_num_heads: int = 16,
                 norm_pix_loss: bool = True, mask_ratio: float = 0.75):
        super().__init__()
        num_visible(1, mask_ratio)  # validates the ratio
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # as S2D's ViT and MAE
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.in_chans = in_chans
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                           decoder_num_heads=decoder_num_heads, norm_pix_loss=norm_pix_loss, mask_ratio=mask_ratio)
        # encoder (= S2DVisionTransformer's ViT part)
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        self.patch = tuple(self.patch_embed.patch_size)
        self.grid = tuple(self.patch_embed.grid_size)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                           qkv_bias=qkv_bias, norm_layer=norm_layer) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(dim=decoder_embed_dim, num_heads=decoder_num_heads,
                                                   mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                                             for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch[0] * self.patch[1] * in_chans, bias=True)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's init: fixed sin-cos position embeddings, patch projection xavier-uniform as a Linear,
        CLS / mask token normal(0.02), every Linear xavier-uniform with zero bias, LayerNorm 1/0."""
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid))
        self.decoder_pos_embed.data.copy_(sincos_pos_embed_2d(self.decoder_pos_embed.shape[-1], self.grid))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_linear_and_norm)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()  # MAE pre-training decays every >1-D tensor (timm param_groups_weight_decay, no list)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        return patchify(imgs, self.patch)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.patch, self.grid, self.in_chans)

    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, Masking]:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        m = random_masking(x, mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, m.kept], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), m

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        n, kept1, d = x.shape
        length = ids_restore.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(n, length + 1 - kept1, -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))  # unshuffle
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_patch_loss(pred, self.patchify(imgs), mask, self.norm_pix_loss)

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None):
        """``imgs [N, C, H, W]`` -> ``(loss, pred [N, L, p*p*C], mask [N, L])`` (MAE's return)."""
        latent, m = self.forward_encoder(imgs, self.mask_ratio if mask_ratio is None else mask_ratio, generator)
        pred = self.forward_decoder(latent, m.ids_restore)
        return self.forward_loss(imgs, pred, m.mask), pred, m.mask

    def encoder_keys(self) -> list[str]:
        """State-dict keys of the encoder (what a fine-tuned model receives)."""
        return [k for k in self.state_dict() if not (k.startswith("decoder") or k == "mask_token")]


def _init_linear_and_norm(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def mae_config(model_name: str, **overrides) -> dict:
    """Constructor kwargs of the MAE for the registered S2D/SFER model ``model_name``: its encoder entries
    (``dfer.models.s2d.ARCHITECTURES``), the model's default decoder, then ``overrides`` (decoder size,
    ``mask_ratio``, ``norm_pix_loss``; encoder keys too, for a shrunk model built with the same kwargs)."""
    from dfer.models.s2d import architecture

    arch = architecture(model_name)
    cfg = {k: arch[k] for k in ENCODER_KEYS if k in arch}
    cfg.update(DEFAULT_DECODERS.get(model_name, MAE_DECODER))
    allowed = set(ENCODER_KEYS) | set(MAE_DECODER) | {"norm_pix_loss", "mask_ratio"}
    unknown = set(overrides) - allowed
    if unknown:
        raise KeyError(f"unknown MAE setting(s) {sorted(unknown)}; known: {sorted(allowed)}")
    cfg.update(overrides)
    return cfg


def mae_for(model_name: str, **overrides) -> MaskedAutoencoderViT:
    """The MAE whose encoder initialises ``create_model(model_name)`` (e.g. ``sfer_tiny``,
    ``s2d_base_patch16_224``); see :func:`mae_config` for ``overrides``."""
    return MaskedAutoencoderViT(**mae_config(model_name, **overrides))
