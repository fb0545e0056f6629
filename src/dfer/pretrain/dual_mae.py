"""UniLearn's dual-modal masked autoencoder: one ViT encoder pre-trained on images and videos (paper 003, Eq. 2).

UniLearn (arXiv 2409.06154, code MSA-LMC/S4D) pre-trains its ViT OmniMAE-style: every input is cut into 2x16x16
tubelets by the same Conv3d; an image is repeated to one tubelet (2 frames); a random subset of the tokens is
masked per sample (90 % of an image's, 95 % of a video's; a video's as VideoMAE tubes, the same spatial
positions in every temporal slice, as S4D's pre-training config), the encoder sees the visible tokens only, a light
decoder reconstructs every token and the loss is the mean squared error on the masked tubelets (per-patch
normalised pixels, as VideoMAE). Batches are homogeneous (all images or all videos); the stage interleaves them.

Parameter names follow VideoMAE / S4D's pre-training checkpoint (``vit_base_voxceleb2+affectnet_100.pt``):
  encoder  ``encoder.patch_embed.proj.*``, ``encoder.blocks.{i}.*`` (VideoMAE attention ``qkv`` + ``q_bias`` /
           ``v_bias``), ``encoder.norm.*``; fixed sinusoidal positions, not in the state dict;
  decoder  ``encoder_to_decoder.weight``, ``mask_token``, ``decoder.blocks.{i}.*``, ``decoder.norm.*``,
           ``decoder.head.*``.
So its ``model.pt`` loads into :class:`dfer.models.unilearn.UniLearnViT` with
:func:`dfer.models.unilearn.load_unilearn_pretrained` (init ``format: unilearn``), exactly as S4D's release.

The encoder is built from the registered UniLearn model it initialises (:func:`dual_mae_for`), without its MoAE
layers (the experts are new at fine-tuning, as in S4D), so names and shapes always match. The token-level
pieces (patchify, random masking, the masked loss) are the image MAE's (:mod:`dfer.pretrain.mae`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dfer.models.unilearn import Block, PatchEmbed3D, sinusoid_table
from dfer.pretrain.mae import (Masking, _init_linear_and_norm, masked_patch_loss, num_visible, patchify,
                              random_masking)


def tube_masking(tokens: torch.Tensor, slices: int, mask_ratio: float,
                 generator: torch.Generator | None = None) -> Masking:
    """VideoMAE's tube masking of ``tokens [N, T*S, D]`` (``slices`` = T temporal slices of S spatial tokens): the
    same ``int(S * (1 - ratio))`` spatial positions stay visible in every slice."""
    n, length, d = tokens.shape
    if length % slices:
        raise ValueError(f"{length} tokens are not {slices} equal temporal slices")
    per = length // slices
    keep = num_visible(per, mask_ratio)
    noise = torch.rand(n, per, device=tokens.device, generator=generator)
    order = torch.argsort(noise, dim=1)                                   # spatial positions, kept first
    offsets = (torch.arange(slices, device=tokens.device) * per).view(1, slices, 1)
    kept = (order[:, None, :keep] + offsets).reshape(n, -1)
    dropped = (order[:, None, keep:] + offsets).reshape(n, -1)
    ids_shuffle = torch.cat([kept, dropped], dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    visible = torch.gather(tokens, 1, kept.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(n, length, device=tokens.device, dtype=tokens.dtype)
    mask[:, :kept.shape[1]] = 0
    return Masking(visible, torch.gather(mask, 1, ids_restore), ids_restore, kept)

MODALITIES = ("image", "video")


class DualModalEncoder(nn.Module):
    """VideoMAE encoder on the visible tokens: tubelet embedding + fixed positions, ViT blocks, final norm."""

    def __init__(self, patch_embed: PatchEmbed3D, blocks: nn.ModuleList, embed_dim: int, num_positions: int):
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = blocks
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.register_buffer("pos_embed", sinusoid_table(num_positions, embed_dim), persistent=False)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens with their positions (an image takes the first temporal slice, as the fine-tuned model)."""
        t = self.patch_embed(x)
        if t.shape[1] > self.pos_embed.shape[1]:
            raise ValueError(f"{t.shape[1]} tokens but the position table has {self.pos_embed.shape[1]}")
        return t + self.pos_embed[:, :t.shape[1]].to(t.dtype)

    def forward(self, visible: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            visible = blk(visible)
        return self.norm(visible)


class DualModalDecoder(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, out_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class DualModalMAE(nn.Module):
    """``forward(x)``: ``x`` ``[B,3,H,W]`` (image) or ``[B,3,T,H,W]`` (video) -> ``(loss, pred [B,L,P], mask [B,L])``,
    ``P = tubelet * patch * patch * 3``; the mask ratio is the modality's unless given."""

    def __init__(self, encoder: DualModalEncoder, decoder_embed_dim: int = 384, decoder_depth: int = 4,
                 decoder_num_heads: int = 6, mlp_ratio: float = 4.0, image_mask_ratio: float = 0.9,
                 video_mask_ratio: float = 0.95, norm_pix_loss: bool = True, tube_masking: bool = True):
        super().__init__()
        self.tube_masking = bool(tube_masking)
        for ratio in (image_mask_ratio, video_mask_ratio):
            num_visible(1, ratio)  # validates
        self.encoder = encoder
        pe = encoder.patch_embed
        self.patch = (pe.tubelet_size, pe.patch_size, pe.patch_size)
        embed_dim = encoder.norm.normalized_shape[0]
        self.mask_ratio = {"image": float(image_mask_ratio), "video": float(video_mask_ratio)}
        self.norm_pix_loss = bool(norm_pix_loss)
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder = DualModalDecoder(decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio,
                                        out_dim=self.patch[0] * self.patch[1] * self.patch[2] * 3)
        self.register_buffer("decoder_pos_embed", sinusoid_table(encoder.pos_embed.shape[1], decoder_embed_dim),
                             persistent=False)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in [self.encoder_to_decoder, *self.decoder.modules(), self.encoder.norm]:
            _init_linear_and_norm(m)  # the new parts; the encoder keeps the UniLearn model's init

    @staticmethod
    def modality(x: torch.Tensor) -> str:
        return "image" if x.ndim == 4 or x.shape[2] == 1 else "video"

    def as_tubelets(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,T,H,W]`` pixels the tokens cover (an image repeated to one tubelet, as the embedding does)."""
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.patch[0], -1, -1)
        return x

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        modality = self.modality(x)
        ratio = self.mask_ratio[modality] if mask_ratio is None else float(mask_ratio)
        tokens = self.encoder.tokens(x)
        slices = self.as_tubelets(x).shape[2] // self.patch[0]
        if modality == "video" and self.tube_masking and slices > 1:
            m: Masking = tube_masking(tokens, slices, ratio, generator)
        else:
            m = random_masking(tokens, ratio, generator)
        latent = self.encoder_to_decoder(self.encoder(m.kept))
        n, length = m.mask.shape
        pos = self.decoder_pos_embed[:, :length].to(latent.dtype).expand(n, -1, -1)
        d = latent.shape[-1]
        # Visible tokens and mask tokens, each with its own position, back in the original order.
        full = torch.cat([latent, self.mask_token.expand(n, length - latent.shape[1], -1)], dim=1)
        full = torch.gather(full, 1, m.ids_restore.unsqueeze(-1).expand(-1, -1, d)) + pos
        pred = self.decoder(full)
        loss = masked_patch_loss(pred, patchify(self.as_tubelets(x), self.patch), m.mask, self.norm_pix_loss)
        return loss, pred, m.mask

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The ``encoder.*`` tensors (what a fine-tuned UniLearn model receives)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("encoder.")}


def dual_mae_for(model_name: str, decoder_embed_dim: int | None = None, decoder_depth: int = 4,
                 decoder_num_heads: int | None = None, image_mask_ratio: float = 0.9,
                 video_mask_ratio: float = 0.95, norm_pix_loss: bool = True, **model_kwargs) -> DualModalMAE:
    """The dual-modal MAE whose encoder initialises ``create_model(model_name, **model_kwargs)`` (a registered
    UniLearn model: ``unilearn_tiny``, ``unilearn_base_patch16_160``). Decoder defaults: half the encoder width
    (VideoMAE-B: 384), 4 blocks, 64-dim heads."""
    from dfer.models import create_model

    vit = create_model(model_name, moe_layers=(), **model_kwargs)
    embed_dim = vit.embed_dim
    encoder = DualModalEncoder(vit.patch_embed, vit.blocks, embed_dim, vit.pos_embed.shape[1])
    dec_dim = int(decoder_embed_dim or embed_dim // 2)
    heads = int(decoder_num_heads or max(1, dec_dim // 64))
    mlp_ratio = vit.blocks[0].mlp.fc1.out_features / embed_dim
    return DualModalMAE(encoder, dec_dim, decoder_depth, heads, mlp_ratio, image_mask_ratio, video_mask_ratio,
                        norm_pix_loss)
