"""S2D / SFER model family: shapes, parameter counts, ablation switches, freezing, init quirk."""
import pytest
import torch

from dfer.models import create_model, list_models
from dfer.models.params import count_parameters, freeze_for_dfer
from dfer.models.s2d import S2DVisionTransformer

torch.set_num_threads(1)

T, B, IMG, LMK_C = 4, 2, 112, 128
D, DEPTH = 96, 4  # s2d_tiny
HID, BOT = 8, 24  # MCP hidden channels, adapter bottleneck (96 * 0.25)


def tiny(**kw):
    torch.manual_seed(0)
    kw.setdefault("num_frames", T)
    return create_model("s2d_tiny", num_classes=7, **kw).eval()


def inputs(t=T, b=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, IMG, IMG, generator=g), torch.randn(b * t, LMK_C, 14, 14, generator=g)


# per-module parameter counts of the tiny configuration, from the layer shapes
MCP_PER_BLOCK = 2 * (D * HID + HID) + (HID * D + D) + 1                # conv0_0, conv0_1, conv1x1, fovea
CAP_PER_BLOCK = 2 * D * D + D
T_ADAPTER = (D * BOT + BOT) + (BOT * D + D) + BOT * 3 * BOT + (BOT * BOT + BOT)
S_ADAPTER = (D * BOT + BOT) + (BOT * D + D)
TMA = T_ADAPTER + 2 * D + S_ADAPTER
PROMPT_EMBED = LMK_C * D * 2 * 2 + D                                    # 2x2 stride-2 conv, 14x14 -> 7x7


def test_registry_names():
    assert {"s2d_base_patch16_224", "s2d_tiny", "sfer_base_patch16_224", "sfer_tiny"} <= set(list_models())


def test_vit_base_shapes_and_official_tunable_count():
    torch.manual_seed(0)
    m = create_model("s2d_base_patch16_224", num_classes=7)
    assert m.pos_embed.shape == (1, 197, 768) and m.temporal_embedding.shape == (1, 16, 768)
    assert m.patch_embed_prompt.proj.weight.shape == (768, 128, 1, 1)
    assert m.prompt_blocks[0].TMA.T_Adapter.attn.qkv.weight.shape == (576, 192)
    total, _ = count_parameters(m)
    freeze_for_dfer(m)
    assert count_parameters(m) == (total, 9_258_451)  # the official model's count (notes §1.4)
    assert total - 9_258_451 == 85_797_120  # frozen ViT-B/16 (patch embed, cls, pos, blocks)
    m.reset_classifier(11)
    assert count_parameters(m)[1] == 9_261_527
    # forward at the official size: one 16-frame clip
    m.eval()
    with torch.no_grad():
        logits, feat = m(torch.randn(1, 3, 16, 224, 224), torch.randn(16, 128, 14, 14))
    assert logits.shape == (1, 11) and feat.shape == (1, 768) and torch.isfinite(logits).all()


def test_tiny_shapes_counts_and_image_variant():
    m = tiny()
    x, a = inputs()
    logits, feat = m(x, a)
    assert logits.shape == (B, 7) and feat.shape == (B, D)
    assert m.grid == (7, 7) and m.patch_embed_prompt.proj.weight.shape == (D, LMK_C, 2, 2)
    vit = D * 16 * 16 * 3 + D + D + 50 * D + DEPTH * (4 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * (4 * D * D) + 4 * D + D)
    expected = vit + PROMPT_EMBED + T * D + DEPTH * (MCP_PER_BLOCK + TMA + 2 * D) + 2 * D + (7 * D + 7)
    total, tunable = count_parameters(m)
    assert total == expected
    assert tunable == total - 50 * D  # pos_embed is fixed, as official
    s = create_model("sfer_tiny", num_classes=8).eval()
    assert s.num_frames == 1 and not hasattr(s.prompt_blocks[0], "TMA")
    img = torch.randn(3, 3, IMG, IMG)
    lmk = torch.randn(3, LMK_C, 14, 14)
    l4, f4 = s(img, lmk)
    l5, f5 = s(img.unsqueeze(2), lmk)
    assert l4.shape == (3, 8) and torch.equal(l4, l5) and torch.equal(f4, f5)
    assert count_parameters(m)[0] - count_parameters(s)[0] == DEPTH * TMA + (T - 1) * D - (D + 1)  # TMAs, frames, 7 vs 8 classes


@pytest.mark.parametrize("fusion,per_block,embed", [("none", 0, 0), ("cap", CAP_PER_BLOCK, PROMPT_EMBED)])
def test_fusion_switch(fusion, per_block, embed):
    ref, m = tiny(), tiny(fusion=fusion)
    diff = count_parameters(ref)[0] - count_parameters(m)[0]
    assert diff == DEPTH * (MCP_PER_BLOCK - per_block) + PROMPT_EMBED - embed
    blk = m.prompt_blocks[0]
    assert not hasattr(blk, "conv0_0") and not hasattr(blk, "fovea") and hasattr(blk, "TMA")
    assert hasattr(blk, "cap") == (fusion == "cap")
    assert hasattr(m, "patch_embed_prompt") == (fusion != "none")
    x, a = inputs()
    if fusion == "none":
        out = m(x)[0]
        assert torch.equal(out, m(x, a)[0])  # landmarks ignored
        with pytest.raises(ValueError, match="landmark"):
            ref(x)  # mcp needs them
    else:
        assert not torch.allclose(m(x, a)[0], m(x, torch.randn_like(a))[0])  # landmarks used


def test_landmarks_change_mcp_output():
    m = tiny()
    x, a = inputs()
    with torch.no_grad():
        assert not torch.allclose(m(x, a)[0], m(x, a.flip(0))[0])
        assert torch.equal(m(x, a)[0], m(x, a.reshape(B, T, LMK_C, 14, 14))[0])  # [B,T,C,h,w] accepted


@pytest.mark.parametrize("adapter,params", [("none", 0), ("vanilla", S_ADAPTER), ("temporal", T_ADAPTER),
                                            ("tma", TMA)])
def test_adapter_switch(adapter, params):
    m = tiny(adapter=adapter)
    assert count_parameters(tiny(adapter="none"))[0] + DEPTH * params == count_parameters(m)[0]
    tma = getattr(m.prompt_blocks[0], "TMA", None)
    assert (tma is None) == (adapter == "none")
    if tma is not None:
        assert hasattr(tma, "T_Adapter") == (adapter in ("temporal", "tma"))
        assert hasattr(tma, "S_Adapter") == (adapter in ("vanilla", "tma"))
    # temporal modelling: perturbing frame 0 reaches frame 1's tokens only through temporal attention
    x, a = inputs()
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        tok = m.forward_features(x.transpose(1, 2).flatten(0, 1), a).reshape(B, T, -1, D)
        tok2 = m.forward_features(x2.transpose(1, 2).flatten(0, 1), a).reshape(B, T, -1, D)
    assert not torch.allclose(tok[:, 0], tok2[:, 0])
    assert torch.allclose(tok[:, 1:], tok2[:, 1:]) == (adapter in ("none", "vanilla"))


def test_plain_vit_when_everything_off_and_switch_validation():
    m = tiny(fusion="none", adapter="none")
    assert m.prompt_blocks is None and not any("prompt" in k for k in m.state_dict())
    assert m(inputs()[0])[0].shape == (B, 7)
    with pytest.raises(ValueError, match="fusion"):
        tiny(fusion="concat")
    with pytest.raises(ValueError, match="adapter"):
        tiny(adapter="st")
    with pytest.raises(ValueError, match="num_frames"):
        tiny()(*inputs(t=T + 1))


def test_official_init_quirk_and_zero_option():
    m = tiny()
    tma = m.prompt_blocks[1].TMA
    # official: adapters end up trunc-normal(0.02), not zero; MCP convs xavier; fovea temperature 10
    assert tma.S_Adapter.D_fc2.weight.abs().sum() > 0 and tma.T_Adapter.D_fc2.weight.std() < 0.03
    assert m.prompt_blocks[1].fovea.smooth.item() == 10.0
    assert not m.pos_embed.requires_grad
    z = tiny(adapter_init="zero")
    x, a = inputs()
    with torch.no_grad():
        tokens = z.prompt_norms[0](z.patch_embed(x.transpose(1, 2).flatten(0, 1)))
        assert torch.count_nonzero(z.prompt_blocks[0].TMA(tokens)) == 0


def test_dfer_freezing_trains_only_prompts_adapters_head():
    m = tiny()
    m.train()
    names = freeze_for_dfer(m)
    assert all(("prompt" in n or "temporal_embedding" in n or "ln_post" in n or "head" in n) for n in names)
    assert "blocks.0.attn.qkv.weight" not in names and "patch_embed_prompt.proj.weight" in names
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    x, a = inputs()
    logits, feat = m(x, a)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    opt.step()
    after = m.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert "head.fc_cls.weight" in changed and "prompt_blocks.1.TMA.T_Adapter.D_fc1.weight" in changed
    assert not any(k.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed")) for k in changed)


def test_head_dropout_and_feature():
    m = tiny(head_dropout=0.5)
    x, a = inputs()
    with torch.no_grad():
        logits, feat = m(x, a)
        tokens = m.forward_features(x.transpose(1, 2).flatten(0, 1), a)
        cls_mean = tokens[:, 0].reshape(B, T, D).mean(1)
    assert torch.allclose(feat, cls_mean, atol=1e-6)  # eval: feat = mean over T of the per-frame CLS
    assert torch.allclose(logits, m.head.fc_cls(cls_mean), atol=1e-5)
    m.train()
    torch.manual_seed(0)
    _, ftrain = m(x, a)
    assert (ftrain == 0).float().mean() > 0.3  # post-dropout feature in training, as official
    assert isinstance(m, S2DVisionTransformer)
