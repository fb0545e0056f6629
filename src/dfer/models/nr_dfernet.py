"""NR-DFERNet: Noise-Robust network for Dynamic Facial Expression Recognition (Li et al., ACM MM 2022).

Paper: Li et al., "NR-DFERNet: Noise-Robust Network for Dynamic Facial Expression Recognition" (arXiv
2206.04975). No public code exists; this is a reproduction from
the text. Three stages (paper Fig. 2):

  spatial   per-frame CNN trunk -> primary maps F_i [C,H,W] (i = 1..T);
            Dynamic-Static Fusion (DSF, §3.3):
              dynamic F_i^D  = F_{i+1} - F_i                     (Eq. 1, i = 1..T-1)
                      F_i^D' = three 3x3 conv blocks(F_i^D)      [C,H/2,W/2]
              static  F_i^S  = Conv-D(F_i) (stride 2)           (Eq. 2) [C,H/2,W/2]
                      F_i^S' = M transformer encoders over the HW/4 positions (+ learnable E_p^S, Eq. 3)
              fused   F_i^DS = F_i^D' + F_i^S'                   (Eq. 4)
  temporal  P_i^DS = flatten(F_i^DS) in R^{CHW/4}; dynamic class token T_d = mean_i P_i^DS (DCT, Eq. 5);
            [T_d, P_1..P_{T-1}] + learnable E_p^T (T positions) -> N transformer encoders
            -> the DCT output -> FC -> logits_seq
  decision  snippet-based filter (SF, §3.5, Eq. 6-7), inference only: N_s = floor((T-L)/S)+1 snippets of L
            frames (window L, stride S) go through the network separately; if any snippet has
            P_MAX > mu1 and P_neutral < mu2 the sequence's neutral probability is set to zero.

Forward: ``model(x, lmk=None) -> (logits[B,K], feat[B,D])`` with ``x`` float ``[B,3,T,H,W]`` (T >= 2),
ImageNet-normalised; ``lmk`` is ignored (``uses_landmarks = False``); ``feat`` is the DCT output after the
final LayerNorm (D = C*H*W/4). In eval mode with ``snippet_filter=True`` the returned logits are the filtered
ones; ``model.last_snippet_filter`` then holds the snippet logits and the per-clip "filter applied" mask.

Choices the paper leaves open (documented here, switchable where it matters):
  * Trunk ("several convolutional layers", §3.1/§3.2): a ResNet-18 (timm ``ResNet``/``BasicBlock``, keys as
    timm/torchvision ``resnet18`` minus ``fc``) up to ``layer4``, so at the paper's 112 px input
    F_i is 512x4x4, Conv-D gives 512x2x2 (HW/4 = 4 static tokens of width C = 512) and the temporal token
    width is CHW/4 = 2048. This is the only (C, HW/4) consistent with Table 3's FLOP deltas: one static
    encoder layer costs 0.13 G and one temporal layer 0.555 G (MACs, 15 frames, 16 tokens): with MLP ratio
    2, 15*4*8*512^2 = 0.126 G and 16*8*2048^2 = 0.537 G. A ResNet-18 at 112 px alone costs ~7.3 GMACs on
    16 frames while the paper reports 6.33 G in total, so the paper's trunk is probably slimmer; we keep the
    standard ResNet-18 (the comparison methods' backbone) and report our measured FLOPs next to 6.33 G.
    ``trunk_pretrained`` takes a local ResNet-18 state dict (the paper does not say how the trunk is
    initialised; default: random).
  * Encoders: pre-norm ViT encoders (timm ``Block``; the paper cites ViT), 4 heads everywhere (§4.2),
    MLP ratio 2 (from the FLOPs above), M = 2 static and N = 4 temporal layers (Table 3). A LayerNorm
    follows the temporal encoders (ViT); the static encoders' output is added to the conv features
    without a final norm.
  * Conv-D: 3x3 conv, stride 2, padding 1, + BatchNorm. Dynamic branch: three 3x3 conv blocks
    (conv-BN-ReLU, conv-BN-ReLU, conv-BN), the first with stride 2 (the paper only says the three blocks
    downsample to H/2 x W/2).
  * Positional embeddings: learnable, trunc-normal(0.02) init; the DCT takes temporal position 0 and the
    frame features positions 1..T-1 (E_p^T has T rows for T-1 frames + the DCT, as in the paper).
  * SF snippets reuse the per-frame trunk/DSF features of the whole clip (the DSF is per frame / per
    adjacent pair, so this equals feeding each snippet separately) and re-run the temporal stage with
    positions 0..L-1, i.e. exactly what ``model(snippet)`` computes. Suppression sets the neutral logit to
    ``SUPPRESSED_LOGIT`` (-1e4: softmax probability 0, finite so losses/averaging over test views stay
    finite, fp16-safe). SF needs ``neutral_index`` (the dataset's "Neutral" position in model order,
    ``dfer.data.labels.index_of(dataset, "Neutral")``); with ``neutral_index=None`` SF is off.
  * Ablation switches (Table 1): ``dsf`` (False = static features only), ``class_token``
    ("dynamic" | "learnable" = ViT class token), ``snippet_filter``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vision_transformer import Block

from dfer.models.registry import register_config

SUPPRESSED_LOGIT = -1.0e4
CLASS_TOKENS = ("dynamic", "learnable")


def snippet_count(num_frames: int, window: int, stride: int) -> int:
    """N_s = floor((T - L) / S) + 1 (paper Eq. 6)."""
    if num_frames < window:
        raise ValueError(f"snippet window {window} is longer than the clip ({num_frames} frames)")
    return (num_frames - window) // stride + 1


def snippet_filter(seq_logits: torch.Tensor, snippet_logits: torch.Tensor, neutral_index: int,
                   mu1: float = 0.7, mu2: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper Eq. 7. ``seq_logits [B,K]``, ``snippet_logits [B,Ns,K]`` -> ``(final_logits [B,K], applied [B])``.

    A clip is filtered iff some snippet has max probability > mu1 and neutral probability < mu2; then its
    neutral probability becomes zero (neutral logit set to ``SUPPRESSED_LOGIT``), the other classes keep
    their relative probabilities.
    """
    probs = snippet_logits.float().softmax(-1)
    confident_non_neutral = (probs.amax(-1) > mu1) & (probs[..., neutral_index] < mu2)
    applied = confident_non_neutral.any(dim=1)
    final = seq_logits.clone()
    final[applied, neutral_index] = SUPPRESSED_LOGIT
    return final, applied


def _conv_bn(cin: int, cout: int, stride: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DynamicBranch(nn.Module):
    """Three 3x3 conv blocks on the frame-difference maps; the first halves H and W (F^D -> F^D')."""

    def __init__(self, channels: int):
        super().__init__()
        self.blocks = nn.Sequential(_conv_bn(channels, channels, 2, True), _conv_bn(channels, channels, 1, True),
                                    _conv_bn(channels, channels, 1, False))

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        return self.blocks(diff)


class StaticBranch(nn.Module):
    """Conv-D (stride 2) then M transformer encoders over the H/2*W/2 positions (F -> F^S')."""

    def __init__(self, channels: int, num_tokens: int, depth: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.conv_d = _conv_bn(channels, channels, 2, False)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, channels))
        self.blocks = nn.Sequential(*[Block(channels, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        s = self.conv_d(fmap)                                   # [N, C, h, w]
        n, c, h, w = s.shape
        tokens = s.flatten(2).transpose(1, 2) + self.pos_embed  # [N, hw, C]
        return self.blocks(tokens).transpose(1, 2).reshape(n, c, h, w)


class TemporalTransformer(nn.Module):
    """N encoders over [class token, P_1..P_{T-1}]; returns the class token's output after LayerNorm."""

    def __init__(self, dim: int, num_positions: int, depth: int, num_heads: int, mlp_ratio: float,
                 class_token: str):
        super().__init__()
        if class_token not in CLASS_TOKENS:
            raise ValueError(f"class_token must be one of {CLASS_TOKENS}, got {class_token!r}")
        self.class_token = class_token
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token == "learnable" else None
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def class_token_for(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, n, D] frame features -> [B, 1, D]: the DCT (their mean, Eq. 5) or the learned token."""
        if self.class_token == "dynamic":
            return frames.mean(dim=1, keepdim=True)
        return self.cls_token.expand(frames.shape[0], -1, -1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1] + 1
        if n > self.pos_embed.shape[1]:
            raise ValueError(f"{frames.shape[1] + 1} frames given, the model was built for at most "
                             f"{self.pos_embed.shape[1]} (num_frames)")
        tokens = torch.cat([self.class_token_for(frames), frames], dim=1) + self.pos_embed[:, :n]
        return self.norm(self.blocks(tokens))[:, 0]


class NRDFERNet(nn.Module):
    uses_landmarks = False

    def __init__(self, num_classes: int = 7, num_frames: int = 16, img_size: int = 112,
                 trunk_layers: tuple[int, ...] = (2, 2, 2, 2),
                 trunk_channels: tuple[int, ...] = (64, 128, 256, 512),
                 stem_width: int = 64, spatial_depth: int = 2, temporal_depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 2.0, dsf: bool = True, class_token: str = "dynamic",
                 snippet_filter: bool = True, sf_window: int = 3, sf_stride: int = 2, sf_mu1: float = 0.7,
                 sf_mu2: float = 0.05, neutral_index: int | None = None, drop_rate: float = 0.0,
                 trunk_pretrained: str | None = None):
        super().__init__()
        if num_frames < 2:
            raise ValueError("NR-DFERNet needs at least 2 frames (its dynamic features are frame differences)")
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.img_size = img_size
        self.dsf = dsf
        self.snippet_filter_enabled = snippet_filter
        self.sf_window, self.sf_stride, self.sf_mu1, self.sf_mu2 = sf_window, sf_stride, sf_mu1, sf_mu2
        self.neutral_index = neutral_index
        if neutral_index is not None and not 0 <= neutral_index < num_classes:
            raise ValueError(f"neutral_index {neutral_index} out of range for {num_classes} classes")

        self.trunk = ResNet(BasicBlock, tuple(trunk_layers), num_classes=0, global_pool="",
                            channels=tuple(trunk_channels), stem_width=stem_width)
        channels = trunk_channels[-1]
        grid = -(-img_size // 32)           # trunk output (stride 32)
        half = (grid + 1) // 2              # Conv-D / dynamic-branch output
        self.static = StaticBranch(channels, half * half, spatial_depth, num_heads, mlp_ratio)
        self.dynamic = DynamicBranch(channels) if dsf else None
        self.num_features = channels * half * half   # C*H*W/4
        self.temporal = TemporalTransformer(self.num_features, num_frames, temporal_depth, num_heads, mlp_ratio,
                                            class_token)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.last_snippet_filter: dict[str, torch.Tensor] | None = None
        if trunk_pretrained:
            load_trunk_weights(self, trunk_pretrained)

    # -- stages ------------------------------------------------------------------------------------------
    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,T,H,W] -> dynamic-static features P^DS [B, T-1, C*H*W/4] (spatial stage)."""
        if x.ndim != 5:
            raise ValueError(f"NR-DFERNet takes video clips [B,3,T,H,W]; got shape {tuple(x.shape)} "
                             f"(it has no image mode: its dynamic features need T >= 2 frames)")
        b, c, t, h, w = x.shape
        if t < 2:
            raise ValueError(f"NR-DFERNet needs T >= 2 frames, got T={t}")
        fmap = self.trunk.forward_features(x.transpose(1, 2).reshape(b * t, c, h, w))
        fmap = fmap.view(b, t, *fmap.shape[1:])
        static = self.static(fmap[:, :-1].flatten(0, 1))          # first T-1 frames (§3.2)
        if self.dynamic is not None:
            fused = static + self.dynamic((fmap[:, 1:] - fmap[:, :-1]).flatten(0, 1))
        else:
            fused = static
        return fused.reshape(b, t - 1, -1)

    def classify(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal + FC on P^DS [B, n, D] -> (logits, class-token feature)."""
        feat = self.temporal(frames)
        return self.head(self.head_drop(feat)), feat

    def snippet_logits(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Logits of the N_s sliding-window snippets [B, N_s, K]; snippet j = frames [jS, jS+L)."""
        ns = snippet_count(num_frames, self.sf_window, self.sf_stride)
        starts = [j * self.sf_stride for j in range(ns)]
        # a snippet of L frames has L-1 dynamic-static features: P[s .. s+L-2]
        snippets = torch.stack([frames[:, s:s + self.sf_window - 1] for s in starts], dim=1)
        logits, _ = self.classify(snippets.flatten(0, 1))
        return logits.view(frames.shape[0], ns, -1)

    INFERENCE_SETTINGS = ("snippet_filter", "sf_window", "sf_stride", "sf_mu1", "sf_mu2")

    def inference_settings(self, **settings) -> dict:
        """Change the decision-stage settings (the snippet filter: on/off, L, S, mu1, mu2), which act at inference
        only, so one trained model is scored under several of them (Tables 1 and 2: ``evaluate.variants``).
        Returns the previous values, to restore them."""
        unknown = sorted(set(settings) - set(self.INFERENCE_SETTINGS))
        if unknown:
            raise ValueError(f"NR-DFERNet has no inference setting {unknown} (it has {list(self.INFERENCE_SETTINGS)})")
        attrs = {"snippet_filter": "snippet_filter_enabled"}
        previous = {k: getattr(self, attrs.get(k, k)) for k in settings}
        for k, v in settings.items():
            setattr(self, attrs.get(k, k), v)
        return previous

    def forward(self, x: torch.Tensor, lmk: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.frame_features(x)
        logits, feat = self.classify(frames)
        self.last_snippet_filter = None
        if (not self.training and self.snippet_filter_enabled and self.neutral_index is not None
                and x.shape[2] >= self.sf_window):
            snip = self.snippet_logits(frames, x.shape[2])
            logits, applied = snippet_filter(logits, snip, self.neutral_index, self.sf_mu1, self.sf_mu2)
            self.last_snippet_filter = {"snippet_logits": snip.detach(), "applied": applied.detach()}
        return logits, feat


def load_trunk_weights(model: NRDFERNet, path) -> list[str]:
    """Initialise the ResNet-18 trunk from a local timm/torchvision ``resnet18`` state dict (``fc`` ignored).

    Returns the loaded keys; raises ``CheckpointError`` naming the file when nothing matches.
    """
    from dfer.models.weights import CheckpointError, extract_state_dict, read_checkpoint

    sd = extract_state_dict(read_checkpoint(path), path)
    own = model.trunk.state_dict()
    matched = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
    if not matched:
        raise CheckpointError(path, "no tensor matches the NR-DFERNet ResNet trunk (expected resnet18 keys "
                                    "such as conv1.weight, layer1.0.conv1.weight); pass a ResNet-18 state dict")
    model.trunk.load_state_dict(matched, strict=False)
    return sorted(matched)


nr_dfernet = register_config(
    "nr_dfernet", "Paper size: ResNet-18 trunk at 112 px, T = 16 (U=8, V=2), M = 2, N = 4, 4 heads, SF L=3 S=2.",
    NRDFERNet, num_classes=7, num_frames=16, img_size=112, trunk_layers=(2, 2, 2, 2),
    trunk_channels=(64, 128, 256, 512), stem_width=64, spatial_depth=2, temporal_depth=4, num_heads=4, mlp_ratio=2.0)
nr_dfernet_tiny = register_config(
    "nr_dfernet_tiny", "CPU-seconds size for tests and the synthetic benchmark (same structure, narrow and shallow).",
    NRDFERNet, num_classes=7, num_frames=8, img_size=64, trunk_layers=(1, 1, 1, 1), trunk_channels=(8, 16, 32, 32),
    stem_width=8, spatial_depth=1, temporal_depth=1, num_heads=4, mlp_ratio=2.0)
