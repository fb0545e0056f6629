"""Official-format checkpoints: reference-forward equality, round trips, SFER -> DFER and MAE init, bad files."""
import pytest
import timm
import torch
import torch.nn.functional as F

from dfer.models import create_model
from dfer.models.weights import CheckpointError, load_pretrained, save_checkpoint

torch.set_num_threads(1)

T, B = 4, 2
CFG = dict(embed_dim=64, depth=3, num_heads=4, adapter_heads=4, num_frames=T)  # shrunk s2d_tiny


# ---- independent reference forward of the official S2D algorithm on an official-format state dict -------
# Written from the algorithm (notes §1.2 / official model_finetuning.py), with functional ops only.

def _ln(x, sd, p, eps):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _lin(x, sd, p):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))


def _msa(x, sd, p, heads):
    b, n, c = x.shape
    q, k, v = _lin(x, sd, p + ".qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    att = (torch.einsum("bhnd,bhmd->bhnm", q, k) * (c // heads) ** -0.5).softmax(-1)
    return _lin(torch.einsum("bhnm,bhmd->bhnd", att, v).transpose(1, 2).reshape(b, n, c), sd, p + ".proj")


def _adapter(x, sd, p, heads=None):
    h = F.gelu(_lin(x, sd, p + ".D_fc1"))
    if heads:
        h = _msa(h, sd, p + ".attn", heads)
    return _lin(h, sd, p + ".D_fc2")


def _tma(x, sd, p, t, heads):  # official: T_Adapter over frames per token, LayerNorm(1e-5), S_Adapter
    bt, n, d = x.shape
    xt = x.reshape(bt // t, t, n, d).permute(0, 2, 1, 3).reshape(-1, t, d)
    xt = _adapter(xt, sd, p + ".T_Adapter", heads)
    x = xt.reshape(bt // t, n, t, d).permute(0, 2, 1, 3).reshape(bt, n, d)
    return _adapter(_ln(x, sd, p + ".norm", 1e-5), sd, p + ".S_Adapter")


def _conv1x1(x, sd, p):  # tokens [BT, N, Cin] -> [BT, N, Cout]
    return torch.einsum("bnc,oc->bno", x, sd[p + ".weight"][:, :, 0, 0]) + sd[p + ".bias"]


def _mcp(x, a, sd, p):
    x0 = _conv1x1(x, sd, p + ".conv0_0")
    x0 = torch.softmax(x0 * sd[p + ".fovea.smooth"], dim=1) * x0  # Fovea: softmax over space per channel
    return _conv1x1(x0 + _conv1x1(a, sd, p + ".conv0_1"), sd, p + ".conv1x1")


def reference_forward(sd, x, lmk, heads, adapter_heads, lmk_patch):
    b, _, t, h, w = x.shape
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    pe = sd["patch_embed.proj.weight"]
    x = F.conv2d(x.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w), pe, sd["patch_embed.proj.bias"], stride=pe.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    a = F.conv2d(lmk, sd["patch_embed_prompt.proj.weight"], sd["patch_embed_prompt.proj.bias"], stride=lmk_patch)
    a = a.flatten(2).transpose(1, 2)

    def prompt(i, xn, a):
        an = _ln(a, sd, "prompt_norms.0", 1e-6)
        p = _mcp(xn, an, sd, f"prompt_blocks.{i}")
        return _tma(xn, sd, f"prompt_blocks.{i}.TMA", t, adapter_heads) + p, p

    delta, a = prompt(0, _ln(x, sd, "prompt_norms.0", 1e-6), a)
    x = x + delta
    x = torch.cat([sd["cls_token"].expand(b * t, -1, -1), x], 1) + sd["pos_embed"]
    n, d = x.shape[1:]
    x = (x.reshape(b, t, n, d) + sd["temporal_embedding"][0][None, :, None, :]).reshape(b * t, n, d)
    for i in range(depth):
        if i >= 1:
            delta, a = prompt(i, _ln(x, sd, f"prompt_norms.{i - 1}", 1e-6)[:, 1:], a)
            x = torch.cat([x[:, :1], x[:, 1:] + delta], 1)
        x = x + _msa(_ln(x, sd, f"blocks.{i}.norm1", 1e-6), sd, f"blocks.{i}.attn", heads)
        y = F.gelu(_lin(_ln(x, sd, f"blocks.{i}.norm2", 1e-6), sd, f"blocks.{i}.mlp.fc1"))
        x = x + _lin(y, sd, f"blocks.{i}.mlp.fc2")
    x = _ln(x, sd, "ln_post", 1e-6)
    feat = x[:, 0].reshape(b, t, d).mean(1)
    return _lin(feat, sd, "head.fc_cls"), feat


def random_official_state_dict(model, seed=0):
    """An official-format state dict with every tensor random (LayerNorms around 1, temperature around 10)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        r = torch.randn(v.shape, generator=g)
        if k.endswith("smooth"):
            sd[k] = 10.0 + r
        elif ("norm" in k or "ln_post" in k) and k.endswith("weight"):
            sd[k] = 1.0 + 0.1 * r
        else:
            sd[k] = 0.1 * r
    return sd


def inputs(img=112, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, T, img, img, generator=g), torch.randn(B * T, 128, 14, 14, generator=g)


def official_file(sd, path, key="model"):
    """Write ``sd`` the way the official release stores it: ``norm.*`` naming and landmark-net keys."""
    out = dict(sd)
    out["norm.weight"], out["norm.bias"] = out.pop("ln_post.weight"), out.pop("ln_post.bias")
    out["landmark.backbone.conv1.weight"] = torch.randn(64, 3, 3, 3)
    torch.save({key: out, "epoch": 99}, path)
    return path


@pytest.mark.parametrize("img,lmk_patch", [(112, 2), (224, 1)])  # 2x2 prompt embed (tiny) and 1x1 (official)
def test_matches_reference_forward_of_official_checkpoint(tmp_path, img, lmk_patch):
    torch.manual_seed(0)
    model = create_model("s2d_tiny", num_classes=7, img_size=img, **CFG).eval()
    sd = random_official_state_dict(model)
    path = official_file(sd, tmp_path / "official.pth", key="model_state_dict")
    report = load_pretrained(model, path, format="official_s2d", verbose=False)
    assert report.missing == [] and report.unexpected == []
    assert "landmark.backbone.conv1.weight" in report.dropped and "norm.weight" in report.adapted
    x, lmk = inputs(img)
    with torch.no_grad():
        logits, feat = model(x, lmk)
        ref_logits, ref_feat = reference_forward(sd, x, lmk, heads=4, adapter_heads=4, lmk_patch=lmk_patch)
    assert torch.allclose(feat, ref_feat, atol=1e-4, rtol=1e-4)
    assert torch.allclose(logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits[0], logits[1])  # not a degenerate constant output


def test_round_trip_official_format_and_our_format(tmp_path):
    torch.manual_seed(0)
    a = create_model("s2d_tiny", num_classes=11, **CFG).eval()
    torch.manual_seed(1)
    b = create_model("s2d_tiny", num_classes=11, **CFG).eval()
    c = create_model("s2d_tiny", num_classes=11, **CFG).eval()
    x, lmk = inputs()
    with torch.no_grad():
        out_a = a(x, lmk)[0]
        assert not torch.allclose(out_a, b(x, lmk)[0])
        load_pretrained(b, official_file(a.state_dict(), tmp_path / "official.pth"), verbose=False)
        assert torch.equal(out_a, b(x, lmk)[0])
        path = save_checkpoint(a, tmp_path / "run" / "model.pt", meta={"name": "s2d_tiny", "epoch": 3})
        report = load_pretrained(c, path, format="dfer", verbose=False)
        assert report.missing == [] and report.unexpected == [] and torch.equal(out_a, c(x, lmk)[0])
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "meta"} and raw["meta"]["epoch"] == 3


def test_official_rules_channels_and_classifier(tmp_path, capsys):
    torch.manual_seed(0)
    src = create_model("s2d_tiny", num_classes=7, lmk_channels=96, **CFG)   # MobileNet landmark features
    dst = create_model("s2d_tiny", num_classes=11, **CFG)                    # MobileFaceNet, MAFW classes
    path = official_file(src.state_dict(), tmp_path / "mobilenet.pth")
    report = load_pretrained(dst, path)
    printed = capsys.readouterr().out
    assert "missing_keys" in printed and str(path) in printed
    assert set(report.missing) == {"patch_embed_prompt.proj.weight", "head.fc_cls.weight", "head.fc_cls.bias"}
    assert "in-channels" in report.dropped["patch_embed_prompt.proj.weight"]
    assert torch.equal(dst.patch_embed_prompt.proj.bias, src.patch_embed_prompt.proj.bias)  # official: bias kept
    assert torch.equal(dst.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_sfer_checkpoint_initialises_dfer_model(tmp_path):
    torch.manual_seed(0)
    sfer = create_model("sfer_tiny", num_classes=7, embed_dim=64, depth=3, num_heads=4).eval()
    path = save_checkpoint(sfer, tmp_path / "sfer.pt")
    dfer = create_model("s2d_tiny", num_classes=11, adapter_init="zero", **CFG).eval()
    own_temporal = dfer.temporal_embedding.detach().clone()
    report = load_pretrained(dfer, path, format="dfer", verbose=False)
    # official: the SFER model has no temporal module, so the DFER temporal embedding keeps its own init
    assert "one-frame" in report.dropped["temporal_embedding"]
    assert torch.equal(dfer.temporal_embedding, own_temporal)
    assert {k for k in report.missing if "TMA" not in k} == {"head.fc_cls.weight", "head.fc_cls.bias",
                                                             "temporal_embedding"}
    assert any("TMA.T_Adapter" in k for k in report.missing)
    # zero-initialised TMAs and the SFER temporal embedding in every frame: a clip of one repeated image gives
    # the SFER model's feature for that image (the image and video models compute the same function)
    with torch.no_grad():
        dfer.temporal_embedding.copy_(sfer.temporal_embedding.expand_as(dfer.temporal_embedding))
    img, lmk = torch.randn(B, 3, 112, 112), torch.randn(B, 128, 14, 14)
    clip = img.unsqueeze(2).expand(-1, -1, T, -1, -1)
    with torch.no_grad():
        f_img = sfer(img, lmk)[1]
        f_clip = dfer(clip, lmk.unsqueeze(1).expand(-1, T, -1, -1, -1))[1]
    assert torch.allclose(f_img, f_clip, atol=1e-5)


def test_mae_weights_initialise_sfer_and_match_timm_vit(tmp_path):
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=224, patch_size=16, embed_dim=64, depth=3, num_heads=4, num_classes=0, global_pool="token").eval()
    sd = dict(vit.state_dict())
    sd["mask_token"] = torch.zeros(1, 1, 32)
    sd["decoder_embed.weight"] = torch.zeros(32, 64)
    torch.save({"model": sd}, tmp_path / "mae.pth")
    model = create_model("sfer_tiny", num_classes=7, fusion="none", embed_dim=64, depth=3, num_heads=4).eval()
    report = load_pretrained(model, tmp_path / "mae.pth", format="mae", verbose=False)
    assert report.adapted["pos_embed"] == "resized from 14x14 to 7x7 tokens"
    assert {"mask_token", "decoder_embed.weight"} <= set(report.dropped)
    assert torch.equal(model.ln_post.weight, vit.norm.weight)
    # at the MAE's own grid the plain-ViT path equals timm's ViT (temporal embedding set to zero)
    same = create_model("sfer_tiny", num_classes=7, fusion="none", img_size=224, embed_dim=64, depth=3, num_heads=4)
    load_pretrained(same.eval(), tmp_path / "mae.pth", format="mae", verbose=False)
    with torch.no_grad():
        same.temporal_embedding.zero_()
        img = torch.randn(2, 3, 224, 224)
        assert torch.allclose(same(img)[1], vit(img), atol=1e-5)


def test_wrong_checkpoints_name_the_file(tmp_path):
    model = create_model("s2d_tiny", num_classes=7, **CFG)
    resnet = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", num_classes=7).state_dict(), resnet)
    with pytest.raises(CheckpointError, match="resnet.pth.*not a checkpoint of this architecture"):
        load_pretrained(model, resnet)
    other = tmp_path / "wider.pth"
    torch.save({"model": create_model("s2d_tiny", num_classes=7, embed_dim=96, depth=3, num_frames=T).state_dict()}, other)
    with pytest.raises(CheckpointError, match=r"wider.pth.*shape.*s2d_tiny vs s2d_base"):
        load_pretrained(model, other)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth.*cannot be read"):
        load_pretrained(model, junk)
    with pytest.raises(CheckpointError, match="absent.pth.*not found"):
        load_pretrained(model, tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="format"):
        load_pretrained(model, resnet, format="caffe")


def test_factory_loads_pretrained_path(tmp_path):
    torch.manual_seed(0)
    a = create_model("s2d_tiny", num_classes=7, **CFG).eval()
    path = save_checkpoint(a, tmp_path / "m.pt")
    b = create_model("s2d_tiny", num_classes=7, pretrained=str(path), **CFG).eval()
    x, lmk = inputs()
    with torch.no_grad():
        assert torch.equal(a(x, lmk)[0], b(x, lmk)[0])


@pytest.mark.parametrize("policy", ["fresh", "remap"])
def test_classifier_transfer_keeps_class_identity(tmp_path, policy):
    """An AffectNet-7 head (Neutral, Happy, Sad, ...) must not initialise the DFEW head (Happy, Sad, Neutral, ...)
    row for row: `fresh` re-initialises it, `remap` copies each row to the class of the same name."""
    from dfer.data.labels import classes

    torch.manual_seed(0)
    sfer = create_model("sfer_tiny", num_classes=7, embed_dim=64, depth=3, num_heads=4)
    path = save_checkpoint(sfer, tmp_path / "sfer.pt")
    src, dst = classes("AffectNet-7"), classes("DFEW")
    assert src != dst and sorted(map(str.lower, src)) != sorted(map(str.lower, dst))  # same emotions, other order
    dfer = create_model("s2d_tiny", num_classes=7, **CFG)
    before = dfer.head.fc_cls.weight.detach().clone()
    report = load_pretrained(dfer, path, format="dfer", verbose=False, head=policy, classes=(src, dst))
    w_src, w_dst = sfer.head.fc_cls.weight.detach(), dfer.head.fc_cls.weight.detach()
    if policy == "fresh":
        assert torch.equal(w_dst, before) and "head.*" in report.dropped
    else:
        from dfer.data.labels import canonical

        for j, name in enumerate(dst):
            i = [canonical(c) for c in src].index(canonical(name))
            assert torch.equal(w_dst[j], w_src[i]), name
        assert not torch.equal(w_dst, w_src)  # a plain row copy would be wrong here
    # the default (loading a model for its own classes) keeps the head as it is
    same = create_model("sfer_tiny", num_classes=7, embed_dim=64, depth=3, num_heads=4)
    load_pretrained(same, path, format="dfer", verbose=False)
    assert torch.equal(same.head.fc_cls.weight, w_src)


def test_a_non_vit_model_loads_its_own_runs_checkpoint_and_refuses_another_architecture(tmp_path):
    """NR-DFERNet fine-tuned on AFEW starts from its DFEW run (format dfer, fresh head); an S2D file is refused."""
    torch.manual_seed(0)
    dfew = create_model("nr_dfernet_tiny", num_classes=7)
    path = tmp_path / "model.pt"
    save_checkpoint(dfew, path)
    afew = create_model("nr_dfernet_tiny", num_classes=7)
    report = load_pretrained(afew, path, format="dfer", head="fresh", verbose=False)
    assert "head.*" in report.dropped and not any(k.startswith("head.") for k in report.loaded)
    assert torch.equal(afew.state_dict()["trunk.conv1.weight"], dfew.state_dict()["trunk.conv1.weight"])
    s2d = tmp_path / "s2d.pt"
    save_checkpoint(create_model("s2d_tiny", num_classes=7, **CFG), s2d)
    with pytest.raises(CheckpointError, match="s2d.pt.*none of its keys matches the layers of NRDFERNet"):
        load_pretrained(create_model("nr_dfernet_tiny", num_classes=7), s2d, format="dfer")
