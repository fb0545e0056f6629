"""UniLearn: ViT with a Mixture of Adapter Experts (MoAE), jointly fine-tuned on static and dynamic FER.

Paper: Chen et al., "UniLearn: Enhancing Dynamic Facial Expression Recognition through Unified Pre-Training and
Fine-Tuning on Images and Videos" (arXiv 2409.06154); released code: MSA-LMC/S4D
(``finetune/s4d/videomae.py``, ``VisionTransformerMoE`` / ``vitmoe_base_patch16_160``). Parameter names
and shapes follow S4D, so S4D fine-tuned checkpoints load as they are and the released MAE pretrain
(``vit_base_voxceleb2+affectnet_100.pt``) loads with :func:`load_unilearn_pretrained`.

Model (``unilearn_base_patch16_160``): VideoMAE ViT-B/16, 160 px, 16 frames, Conv3d tubelet 2x16x16
(``patch_embed.proj``), fixed sinusoidal position table (not in the state dict, as in S4D), pre-norm blocks
with VideoMAE attention (``attn.qkv`` without bias + ``attn.q_bias``/``attn.v_bias``), mean-pooled tokens ->
``fc_norm`` -> dropout -> ``head.image`` (SFER classes) or ``head.video`` (DFER classes).
MoAE layers (``moe_layers``, default the last half 6..11, paper "Later"; S4D ``BlockMoEAdapters``):
    x' = x + Attn(norm1(x));  h = norm2(x');  x_o = x' + Mlp(h) + MoAE(h)          (paper Eq. 9-12)
MoAE = ``SparseMoE``: per-token noisy top-k router (``router.topkroute_linear``, ``router.noise_linear``;
noise = N(0,1) * softplus(noise_linear(h)), Shazeer et al.), softmax over the kept top-k logits, n experts
``experts.{e}.fc1/fc2`` = Mlp(d -> d/4 -> d) (768->192->768), expert capacity
``int(B*N*k/n * capacity_factor)`` tokens (tokens beyond it, in flattened batch order, get nothing from that
expert, as S4D). Defaults n = 8, k = 2, capacity factor 1.0 (S4D ``run.sh``).

Load-balancing loss (Switch Transformer style), per MoAE layer over the B*N tokens of the last forward:
    aux = n * sum_e f_e * P_e,   f_e = fraction of tokens with e among their top-k,
                                 P_e = mean router probability softmax(noisy logits)_e,
summed over layers by ``model.aux_loss()`` (valid after a forward). The engine adds
``loss + aux_loss_coef * model.aux_loss()`` with ``UniLearnViT.default_aux_loss_coef = 1e-3`` (S4D).

Joint image + video fine-tuning (paper Eq. 13, alpha in {0,1} per mini-batch): batches are homogeneous, each
drawn from the SFER (AffectNet-7, images) or the DFER dataset. ``model(x)`` picks the head from the input:
``[B,3,H,W]`` -> ``head.image`` (the image is repeated to 2 frames = one tubelet; it uses the first temporal
slice of the position table), ``[B,3,T,H,W]`` -> ``head.video``; ``task="image"|"video"`` overrides. The loss
is plain cross-entropy on the selected head's logits (+ the aux loss). The paper uses the SFER data at 50%
of its size (``sfer_data_rate 0.5`` in S4D) and reports DFER metrics from ``head.video``.

Differences from S4D (also listed in the README's differences):
  * The router adds noise only in training mode (S4D also adds it at evaluation, which makes test
    predictions random); ``eval_noise=True`` restores S4D's behaviour.
  * S4D's aux loss averages the *raw* noisy logits (``get_layer_loss(noisy_logits)``) where Switch uses
    router probabilities; we use the probabilities (a loss that can go negative does not balance load).
    S4D computes it only when the input requires grad; we compute it on every forward.
  * Experts are S4D's ``Mlp`` without the adapter's inner skip (paper Eq. 7 writes ``x + W2 GELU(W1 x)``;
    inside the block the residual x' is already added once). ``expert_skip=True`` gives Eq. 7.
  * ``forward`` returns ``(logits, feat)`` (our DFER contract; feat = ``fc_norm`` output, pre-dropout).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

from dfer.models.init import init_vit_module
from dfer.models.registry import register_model

TASKS = ("image", "video")


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """Fixed sin-cos position table [1, n_position, dim] (VideoMAE / S4D ``get_sinusoid_encoding_table``)."""
    pos = np.arange(n_position)[:, None]
    i = np.arange(dim)[None, :]
    angle = pos / np.power(10000, 2 * (i // 2) / dim)
    table = np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (keys ``fc1``, ``fc2``); ``skip=True`` adds the input (adapter Eq. 7)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, skip: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.fc2(self.act(self.fc1(x))))
        return x + y if self.skip else y


class Attention(nn.Module):
    """VideoMAE attention: ``qkv`` without bias plus separate ``q_bias``/``v_bias`` (k has no bias)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2],
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class NoisyTopkRouter(nn.Module):
    """Noisy top-k gating (Shazeer et al. 2017; S4D ``NoisyTopkRouter``).

    ``forward(h [..., d]) -> (gates [..., n], indices [..., k], probs [..., n])``: gates are the softmax over
    the k kept noisy logits (zero elsewhere); probs the softmax over all n noisy logits (aux loss).
    """

    def __init__(self, dim: int, num_experts: int, top_k: int, eval_noise: bool = False):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in 1..num_experts={num_experts}, got {top_k}")
        self.num_experts, self.top_k, self.eval_noise = num_experts, top_k, eval_noise
        self.topkroute_linear = nn.Linear(dim, num_experts)
        self.noise_linear = nn.Linear(dim, num_experts)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.topkroute_linear(h)
        if self.training or self.eval_noise:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise_linear(h))
        top_logits, indices = logits.topk(self.top_k, dim=-1)
        sparse = torch.full_like(logits, float("-inf")).scatter(-1, indices, top_logits)
        return sparse.softmax(-1), indices, logits.softmax(-1)


def load_balancing_loss(indices: torch.Tensor, probs: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch-style ``n * sum_e f_e * P_e`` over tokens; ``indices [T,k]``, ``probs [T,n]``."""
    chosen = F.one_hot(indices, num_experts).amax(dim=-2).float()   # [T, n]: e among the token's top-k
    return num_experts * (chosen.mean(0) * probs.float().mean(0)).sum()


class SparseMoE(nn.Module):
    """Mixture of Adapter Experts with a per-expert capacity (S4D ``SparseMoEWithCapacity``).

    After a forward: ``last_aux_loss`` (scalar), ``last_indices [B,N,k]``, ``last_dispatch [B*N, n]``
    (True where the token was processed by the expert, i.e. routed there and within capacity).
    """

    def __init__(self, dim: int, hidden: int, num_experts: int = 8, top_k: int = 2,
                 capacity_factor: float = 1.0, drop: float = 0.0, expert_skip: bool = False,
                 eval_noise: bool = False):
        super().__init__()
        self.num_experts, self.top_k, self.capacity_factor = num_experts, top_k, capacity_factor
        self.router = NoisyTopkRouter(dim, num_experts, top_k, eval_noise)
        self.experts = nn.ModuleList([Mlp(dim, hidden, drop, skip=expert_skip) for _ in range(num_experts)])
        self.last_aux_loss: torch.Tensor | None = None
        self.last_indices: torch.Tensor | None = None
        self.last_dispatch: torch.Tensor | None = None

    def capacity(self, num_tokens: int) -> int:
        return int(num_tokens * self.top_k / self.num_experts * self.capacity_factor)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gates, indices, probs = self.router(h)
        flat_h = h.reshape(-1, h.shape[-1])
        flat_gates = gates.reshape(-1, self.num_experts)
        flat_idx = indices.reshape(-1, self.top_k)
        cap = self.capacity(flat_h.shape[0])
        out = torch.zeros_like(flat_h)
        dispatch = torch.zeros(flat_h.shape[0], self.num_experts, dtype=torch.bool, device=h.device)
        for e, expert in enumerate(self.experts):
            tokens = (flat_idx == e).any(-1).nonzero().squeeze(-1)[:cap]   # first come, first served
            if tokens.numel() == 0:
                continue
            dispatch[tokens, e] = True
            y = expert(flat_h[tokens]) * flat_gates[tokens, e].unsqueeze(-1).to(flat_h.dtype)
            out = out.index_add(0, tokens, y.to(out.dtype))
        self.last_aux_loss = load_balancing_loss(flat_idx, probs.reshape(-1, self.num_experts), self.num_experts)
        self.last_indices, self.last_dispatch = indices.detach(), dispatch
        return out.view_as(h)


MOE_KINDS = ("adapter", "ffn")
MOE_POSITIONS = ("early", "middle", "later", "alternate")


def moe_layer_indices(moe_layers, depth: int) -> tuple[int, ...]:
    """The blocks that hold a mixture: explicit indices, or a position of the paper's Table 5 (right) for any
    depth: ``early`` (the first half), ``middle`` (the central half), ``later`` (the last half: the default,
    S4D's layers 6..11 of 12), ``alternate`` (every other block, 1, 3, ..; the paper does not say which half)."""
    half = depth // 2
    if moe_layers is None:
        moe_layers = "later"
    if isinstance(moe_layers, str):
        starts = {"early": 0, "middle": (depth - half) // 2, "later": depth - half}
        if moe_layers == "alternate":
            return tuple(range(1, depth, 2))
        if moe_layers not in starts:
            raise ValueError(f"moe_layers must be block indices or one of {MOE_POSITIONS}, got {moe_layers!r}")
        return tuple(range(starts[moe_layers], starts[moe_layers] + half))
    layers = tuple(int(i) for i in moe_layers)
    if any(not 0 <= i < depth for i in layers):
        raise ValueError(f"moe_layers {layers} outside the model's {depth} blocks")
    return layers


class Block(nn.Module):
    """Pre-norm ViT block. ``moe`` with ``moe_kind="adapter"``: the MoAE runs in parallel to the FFN (S4D
    ``BlockMoEAdapters``, UniLearn); ``moe_kind="ffn"``: the FFN itself is replaced by a mixture of full-size FFN
    experts (V-MoE, Riquelme et al. 2021: UniLearn's "ViT-MoE" baseline, its Table 3)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, moe: bool = False,
                 num_experts: int = 8, top_k: int = 2, capacity_factor: float = 1.0, expert_ratio: float = 0.25,
                 expert_skip: bool = False, eval_noise: bool = False, moe_kind: str = "adapter"):
        super().__init__()
        if moe_kind not in MOE_KINDS:
            raise ValueError(f"moe_kind must be one of {MOE_KINDS}, got {moe_kind!r}")
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        ffn_experts = moe and moe_kind == "ffn"
        self.mlp = None if ffn_experts else Mlp(dim, int(dim * mlp_ratio), drop)
        hidden = int(dim * mlp_ratio) if ffn_experts else int(dim * expert_ratio)
        self.moe_layer = (SparseMoE(dim, hidden, num_experts, top_k, capacity_factor, drop,
                                    expert_skip and not ffn_experts, eval_noise) if moe else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        h = self.norm2(x)
        y = self.mlp(h) if self.mlp is not None else 0
        if self.moe_layer is not None:
            y = y + self.moe_layer(h)
        return x + self.drop_path(y)


class PatchEmbed3D(nn.Module):
    """Conv3d tubelet embedding; images ``[B,3,H,W]`` (or T=1) are repeated to one tubelet (PadIm2Video).

    ``conv_stem`` (widths, e.g. ``(8, 16, 32, 64)``): per-frame 3x3 stride-2 convolutions + BatchNorm + ReLU
    before the tubelet projection, which then covers the remaining ``patch / 2^len`` pixels (Xiao et al., "Early
    Convolutions Help Transformers See Better", NeurIPS 2021). Not in UniLearn/S4D, empty by default; set
    ``model.kwargs.conv_stem`` to use it: on the synthetic AffectNet-7 a tiny ViT with it learns from pixels where
    the patch-linear one stays at chance (docs/calibration.md, "UniLearn").
    """

    def __init__(self, img_size: int, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int,
                 conv_stem: tuple[int, ...] = ()):
        super().__init__()
        self.img_size, self.patch_size, self.tubelet_size = img_size, patch_size, tubelet_size
        if patch_size % 2 ** len(conv_stem):
            raise ValueError(f"patch_size {patch_size} is not divisible by the conv stem's stride 2^{len(conv_stem)}")
        layers, c = [], in_chans
        for width in conv_stem:
            layers += [nn.Conv3d(c, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
                       nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
            c = width
        self.stem = nn.Sequential(*layers) if layers else None
        p = patch_size // 2 ** len(conv_stem)
        self.proj = nn.Conv3d(c, embed_dim, (tubelet_size, p, p), stride=(tubelet_size, p, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.tubelet_size, -1, -1)
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"input {tuple(x.shape[-2:])} px, the model was built for {self.img_size} px")
        if x.shape[2] % self.tubelet_size:
            raise ValueError(f"T={x.shape[2]} is not a multiple of the tubelet size {self.tubelet_size}")
        if self.stem is not None:
            x = self.stem(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class UniLearnViT(nn.Module):
    uses_landmarks = False
    default_aux_loss_coef = 1.0e-3

    def __init__(self, num_classes: int = 7, num_image_classes: int = 7, num_frames: int = 16,
                 img_size: int = 160, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, moe_layers: tuple[int, ...] | None = None, num_experts: int = 8,
                 top_k: int = 2, capacity_factor: float = 1.0, expert_ratio: float = 0.25, moe_kind: str = "adapter",
                 expert_skip: bool = False, eval_noise: bool = False, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, fc_drop_rate: float = 0.0,
                 conv_stem: tuple[int, ...] = ()):
        super().__init__()
        self.num_classes = num_classes
        self.num_frames, self.img_size, self.tubelet_size = num_frames, img_size, tubelet_size
        self.num_features = self.embed_dim = embed_dim
        self.moe_layers = moe_layer_indices(moe_layers, depth)
        self.patch_embed = PatchEmbed3D(img_size, patch_size, tubelet_size, in_chans, embed_dim, tuple(conv_stem))
        self.grid = img_size // patch_size
        n_pos = (num_frames // tubelet_size) * self.grid * self.grid
        self.register_buffer("pos_embed", sinusoid_table(n_pos, embed_dim), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i],
                  moe=i in self.moe_layers, num_experts=num_experts, top_k=top_k, capacity_factor=capacity_factor,
                  expert_ratio=expert_ratio, expert_skip=expert_skip, eval_noise=eval_noise, moe_kind=moe_kind)
            for i in range(depth)])
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_dropout = nn.Dropout(fc_drop_rate) if fc_drop_rate > 0 else nn.Identity()
        self.head = nn.ModuleDict({"image": nn.Linear(embed_dim, num_image_classes),
                                   "video": nn.Linear(embed_dim, num_classes)})
        # S4D: kaiming init of the experts is overwritten by this ViT-wide trunc-normal(0.02) init.
        self.apply(init_vit_module)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def moe_modules(self) -> list[SparseMoE]:
        return [b.moe_layer for b in self.blocks if b.moe_layer is not None]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        n = tokens.shape[1]
        if n > self.pos_embed.shape[1]:
            raise ValueError(f"{n} tokens but the position table has {self.pos_embed.shape[1]} "
                             f"(built for num_frames={self.num_frames})")
        # an image (one tubelet) takes the first temporal slice of the table, as S4D's interpolation does
        x = self.pos_drop(tokens + self.pos_embed[:, :n].to(tokens.dtype))
        for blk in self.blocks:
            x = blk(x)
        return self.fc_norm(x.mean(1))

    def forward(self, x: torch.Tensor, lmk: torch.Tensor | None = None,
                task: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B,3,T,H,W] (video head) or [B,3,H,W] (image head); ``task`` overrides; ``lmk`` ignored."""
        task = task or ("image" if x.ndim == 4 else "video")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        feat = self.forward_features(x)
        return self.head[task](self.fc_dropout(feat)), feat

    def aux_loss(self) -> torch.Tensor:
        """Sum of the MoAE layers' load-balancing losses of the last forward (0 without MoAE layers)."""
        losses = [m.last_aux_loss for m in self.moe_modules() if m.last_aux_loss is not None]
        if not losses:
            return self.fc_norm.weight.new_zeros(())
        return torch.stack(losses).sum()


def active_parameters(model: nn.Module) -> int:
    """Parameters one token uses at inference: all but the (n - k) unselected experts per MoAE / MoE layer
    (the paper's "test" count, Table 3: 90 M of 101 M at ViT-B, n=8, k=2); all of them for other models."""
    if not isinstance(model, UniLearnViT):
        return sum(p.numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    for moe in model.moe_modules():
        per_expert = sum(p.numel() for p in moe.experts[0].parameters())
        total -= (moe.num_experts - moe.top_k) * per_expert
    return total


def load_unilearn_pretrained(model: UniLearnViT, path, verbose: bool = True, trust_pickle: bool = False):
    """Initialise from the released S4D/UniLearn MAE pretrain or an S4D fine-tuned checkpoint (local path).

    Rules (S4D ``run_class_finetuning.py``): state dict under ``model`` or ``module`` (else the file itself);
    ``encoder.``/``backbone.`` prefixes stripped; MAE decoder keys, ``mask_token`` and the position table
    (fixed sinusoidal, rebuilt here) dropped; heads with another class count dropped (re-initialised);
    load non-strict and print a report. MoAE experts and routers are new: they stay randomly initialised.
    ViT-MoE blocks (``moe_kind="ffn"``, no dense FFN) start every FFN expert from the pretrained FFN (sparse
    upcycling; the UniLearn paper does not say how its ViT-MoE baseline was initialised).
    (S4D also writes the pretrained FFN into ``blocks.{l}.mlp.experts.{e}.*`` keys, which match no
    parameter (the model's experts are ``blocks.{l}.moe_layer.experts.{e}``) and could not fit anyway
    (3072 vs 192 hidden units); the FFN itself, ``blocks.{l}.mlp``, is loaded from the pretrain.)
    Raises ``CheckpointError`` naming the file when no ViT block matches or shapes clash.
    """
    from dfer.models.weights import CheckpointError, LoadReport, read_checkpoint

    report = LoadReport(path=str(path), format="unilearn")
    obj = read_checkpoint(path, trust_pickle)
    if isinstance(obj, dict):
        for key in ("model", "module", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "holds no state dict (expected a dict of tensors, or one under 'model')")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        for prefix in ("module.", "encoder.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        sd[k] = v
    own = model.state_dict()
    for i, blk in enumerate(model.blocks):   # ViT-MoE: the pretrained FFN initialises each FFN expert
        if blk.mlp is None and blk.moe_layer is not None:
            for name in [k for k in sd if k.startswith(f"blocks.{i}.mlp.")]:
                tensor = sd.pop(name)
                for e in range(blk.moe_layer.num_experts):
                    sd[name.replace(".mlp.", f".moe_layer.experts.{e}.")] = tensor
    for k in list(sd):
        why = None
        if k.startswith("decoder") or k in ("mask_token", "encoder_to_decoder.weight"):
            why = "MAE decoder"
        elif k == "pos_embed":
            why = "fixed sinusoidal table, rebuilt by the model"
        elif k.startswith("head.") and (k not in own or sd[k].shape != own[k].shape):
            why = f"classifier {tuple(sd[k].shape)} does not match the model's heads: re-initialised"
        if why:
            report.dropped[k] = why
            del sd[k]
    matched = [k for k in sd if k in own]
    if not any(k.startswith("blocks.") for k in matched):
        raise CheckpointError(path, f"none of its keys matches the UniLearn ViT blocks (checkpoint keys e.g. "
                                    f"{list(sd)[:5]}); pass the S4D/UniLearn ViT checkpoint")
    clashes = [f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
               for k in matched if sd[k].shape != own[k].shape]
    if clashes:
        raise CheckpointError(path, f"{len(clashes)} tensor shape(s) do not match ({'; '.join(clashes[:5])}); "
                                    f"build the model with the checkpoint's size (unilearn_base_patch16_160)")
    result = model.load_state_dict(sd, strict=False)
    report.loaded = matched
    report.missing, report.unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if verbose:
        print(report)
    return report


def _create(num_classes: int, cfg: dict, kwargs: dict, pretrained: str | None) -> UniLearnViT:
    cfg.update(kwargs)
    model = UniLearnViT(num_classes=num_classes, **cfg)
    if pretrained:
        load_unilearn_pretrained(model, pretrained)
    return model


@register_model
def unilearn_base_patch16_160(num_classes: int = 7, pretrained: str | None = None, **kwargs) -> UniLearnViT:
    """Paper size (S4D ``vitmoe_base_patch16_160`` with ``moe_adapters``, layers 6..11, 8 experts, top-2)."""
    cfg = dict(img_size=160, patch_size=16, num_frames=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
               num_experts=8, top_k=2)
    return _create(num_classes, cfg, kwargs, pretrained)


@register_model
def unilearn_tiny(num_classes: int = 7, pretrained: str | None = None, **kwargs) -> UniLearnViT:
    """CPU-seconds size: 64 px, 4 blocks of width 64 (MoAE in the last 2), 8 experts, top-2."""
    cfg = dict(img_size=64, patch_size=16, num_frames=4, embed_dim=64, depth=4, num_heads=4, mlp_ratio=4.0,
               num_experts=8, top_k=2)
    return _create(num_classes, cfg, kwargs, pretrained)


@register_model
def unilearn_tiny_convstem(num_classes: int = 7, pretrained: str | None = None, **kwargs) -> UniLearnViT:
    """``unilearn_tiny`` with a conv stem (8, 16, 32, 64) before its tubelet projection: the synthetic preset's
    UniLearn. Not in UniLearn/S4D: on the synthetic benchmark the patch-linear tiny ViT stays at chance and this
    one learns from pixels (docs/calibration.md, "UniLearn")."""
    return unilearn_tiny(num_classes, pretrained, **{"conv_stem": (8, 16, 32, 64), **kwargs})
