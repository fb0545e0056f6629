"""NR-DFERNet and UniLearn: shapes, parameter counts, SF filter, DCT, MoAE routing/capacity/aux loss, heads,
pretrained loading, and a few optimisation steps."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dfer.models import create_model, list_models
from dfer.models.weights import CheckpointError
from dfer.models.nr_dfernet import SUPPRESSED_LOGIT, snippet_count, snippet_filter
from dfer.models.params import count_parameters
from dfer.models.unilearn import SparseMoE, active_parameters, load_balancing_loss, load_unilearn_pretrained

torch.set_num_threads(1)
NEUTRAL = 2  # DFEW model order: Happy, Sad, Neutral, ...


def clip(b=2, t=8, img=64, seed=0):
    return torch.randn(b, 3, t, img, img, generator=torch.Generator().manual_seed(seed))


def nr_tiny(**kw):
    torch.manual_seed(0)
    return create_model("nr_dfernet_tiny", num_classes=7, neutral_index=NEUTRAL, **kw)


def uni_tiny(**kw):
    torch.manual_seed(0)
    return create_model("unilearn_tiny", **kw)


def fit(model, x, y, steps):
    """Cross-entropy losses of ``steps`` AdamW steps (lr 1e-3) on one batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def vit_block_params(d, hidden, q_v_bias):
    # norm1, qkv (+ q/v bias or a full qkv bias), proj, norm2, fc1, fc2
    qkv_bias = 2 * d if q_v_bias else 3 * d
    return 2 * d + 3 * d * d + qkv_bias + d * d + d + 2 * d + d * hidden + hidden + hidden * d + d


def test_registry_names():
    assert {"nr_dfernet", "nr_dfernet_tiny", "unilearn_base_patch16_160", "unilearn_tiny"} <= set(list_models())


# ----------------------------------------------------------------------------------------------- NR-DFERNet
def test_nr_tiny_shapes_train_and_eval_and_ignores_lmk():
    model = nr_tiny()
    assert model.uses_landmarks is False
    x = clip()
    logits, feat = model(x)
    assert logits.shape == (2, 7) and feat.shape == (2, model.num_features)
    model.eval()
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(x, lmk=torch.randn(16, 128, 14, 14))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="video clips"):
        model(torch.randn(2, 3, 64, 64))


def test_nr_paper_size_shapes_and_parameter_count():
    torch.manual_seed(0)
    model = create_model("nr_dfernet", num_classes=7, num_frames=16, img_size=112).eval()
    total, tunable = count_parameters(model)
    c, d = 512, 2048                                   # C and C*H*W/4 at 112 px
    resnet18_without_fc = 11_176_512
    conv_bn = 9 * c * c + 2 * c
    static = conv_bn + 4 * c + 2 * vit_block_params(c, 2 * c, q_v_bias=False)
    dynamic = 3 * conv_bn
    temporal = 16 * d + 4 * vit_block_params(d, 2 * d, q_v_bias=False) + 2 * d
    assert total == tunable == resnet18_without_fc + static + dynamic + temporal + d * 7 + 7
    with torch.no_grad():
        logits, feat = model(torch.randn(1, 3, 16, 112, 112))
    assert logits.shape == (1, 7) and feat.shape == (1, d)


def test_snippet_count_matches_eq6():
    assert snippet_count(16, 3, 2) == 7
    assert snippet_count(16, 6, 3) == 4
    assert snippet_count(8, 3, 2) == 3
    with pytest.raises(ValueError):
        snippet_count(2, 3, 2)


def _logits_from_probs(p):
    return torch.log(torch.tensor(p))


def test_snippet_filter_rule():
    # clip 0: noisy/neutral snippets plus one clear "Happy" snippet -> neutral suppressed
    # clip 1: every snippet neutral-dominated -> unchanged
    # clip 2: a confident snippet whose neutral probability (0.06) is above mu2 -> unchanged
    neutral_snip = [0.05, 0.05, 0.80, 0.025, 0.025, 0.025, 0.025]
    noise_snip = [0.15, 0.15, 0.25, 0.15, 0.1, 0.1, 0.1]
    happy_snip = [0.80, 0.05, 0.01, 0.04, 0.04, 0.03, 0.03]
    borderline = [0.80, 0.02, 0.06, 0.03, 0.03, 0.03, 0.03]
    snippets = torch.stack([_logits_from_probs([neutral_snip, noise_snip, happy_snip]),
                            _logits_from_probs([neutral_snip, noise_snip, neutral_snip]),
                            _logits_from_probs([neutral_snip, borderline, noise_snip])])
    seq = _logits_from_probs([[0.3, 0.1, 0.4, 0.05, 0.05, 0.05, 0.05]] * 3)
    final, applied = snippet_filter(seq, snippets, NEUTRAL, mu1=0.7, mu2=0.05)
    assert applied.tolist() == [True, False, False]
    p = final.softmax(-1)
    assert p[0, NEUTRAL] == 0 and final[0, NEUTRAL] == SUPPRESSED_LOGIT
    assert p[0].argmax() == 0                                    # decided as Happy instead of Neutral
    keep = [i for i in range(7) if i != NEUTRAL]
    ratios = p[0, keep] / seq.softmax(-1)[0, keep]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))   # other classes keep their proportions
    assert torch.equal(final[1:], seq[1:])


def test_snippet_filter_in_model_matches_separate_snippets():
    model = nr_tiny().eval()
    x = clip(b=2, t=8)
    with torch.no_grad():
        model.snippet_filter_enabled = False
        plain, _ = model(x)
        separate = torch.stack([model(x[:, :, s:s + 3])[0] for s in (0, 2, 4)], dim=1)
        model.snippet_filter_enabled = True
        model.sf_mu1, model.sf_mu2 = 0.0, 1.0     # every snippet qualifies -> always filtered
        filtered, _ = model(x)
        info = model.last_snippet_filter
        model.sf_mu1 = 1.0                         # no snippet qualifies -> never filtered
        unfiltered, _ = model(x)
    assert info["snippet_logits"].shape == (2, 3, 7)
    assert torch.allclose(info["snippet_logits"], separate, atol=1e-5)   # "fed into NR-DFERNet separately"
    assert info["applied"].all() and (filtered.softmax(-1)[:, NEUTRAL] == 0).all()
    assert torch.equal(unfiltered, plain) and not model.last_snippet_filter["applied"].any()
    model.train()
    model.sf_mu1 = 0.0
    logits, _ = model(x)
    assert model.last_snippet_filter is None and (logits[:, NEUTRAL] != SUPPRESSED_LOGIT).all()  # inference only


def test_snippet_filter_end_to_end_on_mostly_neutral_clip():
    """Train a tiny model to tell "expression" frames (a bright square) from neutral frames (noise), then
    show SF acting on a clip of 5 neutral frames and a 3-frame expression burst, and not on a neutral clip."""
    happy = 0

    def frames(kind, n, g):
        x = 0.1 * torch.randn(3, n, 32, 32, generator=g)
        if kind == "happy":
            x[:, :, 8:24, 8:24] += 2.0
        return x

    g = torch.Generator().manual_seed(0)
    model = nr_tiny(num_frames=8, img_size=32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        kinds = ["happy", "neutral"] * 4
        x = torch.stack([frames(k, 3, g) for k in kinds])
        y = torch.tensor([happy if k == "happy" else NEUTRAL for k in kinds])
        loss = F.cross_entropy(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    burst = torch.cat([frames("neutral", 2, g), frames("happy", 3, g), frames("neutral", 3, g)], dim=1)
    with torch.no_grad():
        out, _ = model(torch.stack([burst, frames("neutral", 8, g)]))
    info = model.last_snippet_filter
    probs = info["snippet_logits"].softmax(-1)
    # snippets start at frames 0, 2, 4 (L=3, S=2): the one at 2 is the expression burst
    assert probs[0, 1, happy] > 0.7 and probs[0, 1, NEUTRAL] < 0.05
    assert (probs[1, :, NEUTRAL] > 0.5).all()
    assert info["applied"].tolist() == [True, False]
    assert out.softmax(-1)[0, NEUTRAL] == 0 and out.softmax(-1)[0].argmax() == happy
    assert out.softmax(-1)[1].argmax() == NEUTRAL


def test_dynamic_class_token_is_frame_mean_and_drives_the_output():
    model = nr_tiny().eval()
    assert model.temporal.cls_token is None                  # no learned class token
    seen = {}
    model.temporal.blocks.register_forward_pre_hook(lambda m, a: seen.__setitem__("tokens", a[0].clone()))
    model.temporal.blocks.register_forward_hook(lambda m, a, out: seen.__setitem__("out", out.clone()))
    model.snippet_filter_enabled = False
    x = clip(b=2, t=8)
    with torch.no_grad():
        frames = model.frame_features(x)
        _, feat = model(x)
    tokens = seen["tokens"] - model.temporal.pos_embed[:, :8]
    assert tokens.shape == (2, 8, model.num_features)
    assert torch.allclose(tokens[:, 1:], frames, atol=1e-6)
    assert torch.allclose(tokens[:, 0], frames.mean(1), atol=1e-6)            # Eq. 5
    assert torch.allclose(feat, model.temporal.norm(seen["out"])[:, 0], atol=1e-6)  # classification reads the DCT
    # a noisy frame moves the token by 1/(T-1) of its feature change
    x2 = x.clone()
    x2[:, :, 3] = torch.randn_like(x2[:, :, 3]) * 3
    with torch.no_grad():
        frames2 = model.frame_features(x2)
        model(x2)
    dct2 = seen["tokens"][:, 0] - model.temporal.pos_embed[:, 0]
    assert torch.allclose(dct2 - tokens[:, 0], (frames2 - frames).sum(1) / 7, atol=1e-5)

    learnable = nr_tiny(class_token="learnable", dsf=False)
    assert learnable.temporal.cls_token is not None and learnable.dynamic is None
    assert learnable(clip())[0].shape == (2, 7)


# ----------------------------------------------------------------------------------------------- UniLearn
def test_unilearn_tiny_heads_and_shapes():
    model = uni_tiny(num_classes=11, num_image_classes=7).eval()
    assert model.uses_landmarks is False
    video, image = clip(b=2, t=4), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        lv, fv = model(video)
        li, fi = model(image)
        li_as_clip, _ = model(image.unsqueeze(2).repeat(1, 1, 2, 1, 1), task="image")
        lv_lmk, _ = model(video, lmk=torch.randn(8, 128, 14, 14))
    assert lv.shape == (2, 11) and fv.shape == (2, 64) and li.shape == (3, 7) and fi.shape == (3, 64)
    assert torch.allclose(li, li_as_clip, atol=1e-6)   # an image is one tubelet: the frame repeated twice
    assert torch.allclose(li, model.head["image"](fi), atol=1e-6)
    assert torch.allclose(lv, model.head["video"](fv), atol=1e-6)
    assert torch.equal(lv, lv_lmk)
    with pytest.raises(ValueError, match="task"):
        model(video, task="audio")

def test_unilearn_conv_stem_keeps_the_token_grid_and_learns_an_image_batch():
    stem = uni_tiny(num_classes=7, conv_stem=[8, 16, 32, 64])     # a YAML list, as model.kwargs gives it
    plain = uni_tiny(num_classes=7)
    video = clip(b=2, t=4)
    assert stem.patch_embed(video).shape == plain.patch_embed(video).shape == (2, 2 * 4 * 4, 64)
    assert {"patch_embed.stem.0.weight", "patch_embed.stem.1.running_mean"} <= set(stem.state_dict())
    assert stem.patch_embed.proj.weight.shape == (64, 64, 2, 1, 1)          # 16 px = 4 stride-2 convs x 1 px
    assert plain.patch_embed.stem is None and plain.patch_embed.proj.weight.shape == (64, 3, 2, 16, 16)
    with pytest.raises(ValueError, match="divisible"):
        uni_tiny(conv_stem=[8, 8, 8, 8, 8])                                 # 2^5 does not divide 16
    image, y = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 7
    losses = fit(stem, image, y, steps=12)
    assert losses[-1] < 0.5 * losses[0]



def test_unilearn_paper_size_parameter_counts():
    torch.manual_seed(0)
    model = create_model("unilearn_base_patch16_160", num_classes=7, num_frames=16, img_size=160)
    d = 768
    vit = 3 * d * 2 * 16 * 16 + d + 12 * vit_block_params(d, 4 * d, q_v_bias=True) + 2 * d
    expert = d * 192 + 192 + 192 * d + d
    router = 2 * (d * 8 + 8)
    heads = 2 * (d * 7 + 7)
    total, tunable = count_parameters(model)
    assert total == tunable == vit + 6 * (8 * expert + router) + heads
    assert active_parameters(model) == total - 6 * 6 * expert
    # paper Table 3: 101 M (train) / 90 M (test)
    assert round(total / 1e6) == 101 and round(active_parameters(model) / 1e6) == 90
    assert sorted(i for i, b in enumerate(model.blocks) if b.moe_layer is not None) == list(range(6, 12))
    with torch.no_grad():
        logits, feat = model(torch.randn(1, 3, 160, 160))
    assert logits.shape == (1, 7) and feat.shape == (1, d)


def test_routing_picks_top_k_distinct_experts_per_token():
    model = uni_tiny().eval()
    moe = model.blocks[-1].moe_layer
    seen = {}
    moe.register_forward_pre_hook(lambda m, a: seen.__setitem__("h", a[0].clone()))
    with torch.no_grad():
        model(clip(b=2, t=4))
        idx = moe.last_indices
        gates, _, _ = moe.router(seen["h"])
    assert idx.shape == (2, 32, 2)
    assert (idx[..., 0] != idx[..., 1]).all()
    expected = moe.router.topkroute_linear(seen["h"]).topk(2, dim=-1).indices   # eval: no noise
    assert torch.equal(idx, expected)
    assert ((gates > 0).sum(-1) == 2).all() and torch.allclose(gates.sum(-1), torch.ones(2, 32))
    # training adds noise: routing changes between two forwards on the same input
    moe.train()
    with torch.no_grad():
        a, _, _ = moe.router(seen["h"])
        b, _, _ = moe.router(seen["h"])
    assert not torch.equal(a, b)


def test_capacity_limits_tokens_per_expert():
    torch.manual_seed(0)
    moe = SparseMoE(dim=8, hidden=4, num_experts=4, top_k=2, capacity_factor=1.0).eval()
    with torch.no_grad():
        moe.router.topkroute_linear.weight.zero_()
        moe.router.topkroute_linear.bias.copy_(torch.tensor([5.0, 4.0, 0.0, 0.0]))  # every token -> experts 0, 1
    h = torch.randn(2, 5, 8)
    with torch.no_grad():
        out = moe(h)
    cap = int(10 * 2 / 4 * 1.0)
    assert moe.capacity(10) == cap == 5
    assert moe.last_dispatch.sum(0).tolist() == [5, 5, 0, 0]
    assert moe.last_dispatch[:5, :2].all() and not moe.last_dispatch[5:].any()   # first come, first served
    assert torch.equal(out.reshape(10, 8)[5:], torch.zeros(5, 8))   # overflow tokens: no expert output
    gates = torch.tensor([5.0, 4.0]).softmax(0)
    flat = h.reshape(10, 8)
    manual = gates[0] * moe.experts[0](flat[:5]) + gates[1] * moe.experts[1](flat[:5])
    assert torch.allclose(out.reshape(10, 8)[:5], manual, atol=1e-6)
    moe.capacity_factor = 2.0
    with torch.no_grad():
        moe(h)
    assert moe.last_dispatch.sum(0).tolist() == [10, 10, 0, 0]


def test_aux_loss_matches_hand_computation():
    # 3 tokens, 4 experts, top-2; router logits chosen by hand (eval: no noise)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.0], [1.0, 0.0, 0.0, 2.0]])
    moe = SparseMoE(dim=4, hidden=2, num_experts=4, top_k=2).eval()
    with torch.no_grad():
        moe.router.topkroute_linear.weight.copy_(torch.eye(4))
        moe.router.topkroute_linear.bias.zero_()
        moe(logits.unsqueeze(0))
    # top-2 sets: {0,1}, {1,2}, {3,0} -> f = [2/3, 2/3, 1/3, 1/3]
    f = [2 / 3, 2 / 3, 1 / 3, 1 / 3]
    P = [0.0] * 4
    for row in logits.tolist():
        z = sum(2.718281828459045 ** v for v in row)
        for e, v in enumerate(row):
            P[e] += 2.718281828459045 ** v / z / 3
    expected = 4 * sum(fe * pe for fe, pe in zip(f, P))
    assert moe.last_aux_loss.ndim == 0
    assert abs(moe.last_aux_loss.item() - expected) < 1e-5
    # uniform router: n * sum_e f_e / n = k
    uniform = load_balancing_loss(torch.tensor([[0, 1], [2, 3]]), torch.full((2, 4), 0.25), 4)
    assert abs(uniform.item() - 2.0) < 1e-6

    model = uni_tiny()
    model(clip(b=2, t=4))
    aux = model.aux_loss()
    assert aux.ndim == 0 and torch.isfinite(aux) and aux.requires_grad
    assert torch.allclose(aux, sum(m.last_aux_loss for m in model.moe_modules()))
    assert len(model.moe_modules()) == 2


def test_training_steps_reduce_loss():
    x_nr, y_nr = clip(b=4, t=8, seed=3), torch.tensor([0, 1, 2, 3])
    losses = fit(nr_tiny(), x_nr, y_nr, steps=8)
    assert losses[-1] < 0.7 * losses[0]

    # UniLearn joint fine-tuning: alternate homogeneous image / video batches (paper Eq. 13) + aux loss
    model = uni_tiny(num_classes=11)
    video, yv = clip(b=4, t=4, seed=4), torch.tensor([0, 3, 7, 10])
    image, yi = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5)), torch.tensor([0, 1, 5, 6])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first, last = {}, {}
    for step in range(16):
        x, y, task = (video, yv, "video") if step % 2 == 0 else (image, yi, "image")
        ce = F.cross_entropy(model(x)[0], y)
        loss = ce + model.default_aux_loss_coef * model.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first.setdefault(task, ce.item())
        last[task] = ce.item()
    assert last["video"] < 0.5 * first["video"] and last["image"] < 0.5 * first["image"]


def test_load_unilearn_pretrained_from_mae_layout(tmp_path, capsys):
    torch.manual_seed(1)
    plain = create_model("unilearn_tiny", moe_layers=())       # a ViT without MoAE = the MAE encoder
    sd = {f"encoder.{k}": v for k, v in plain.state_dict().items() if not k.startswith(("head.", "fc_norm"))}
    sd["encoder.norm.weight"] = torch.ones(64)
    sd["decoder.blocks.0.mlp.fc1.weight"] = torch.zeros(8, 8)
    sd["mask_token"] = torch.zeros(1, 1, 32)
    sd["encoder.pos_embed"] = torch.zeros(1, 32, 64)
    sd["head.weight"] = torch.zeros(400, 64)
    path = tmp_path / "vit_pretrain.pt"
    torch.save({"model": sd, "epoch": 100}, path)

    model = uni_tiny()
    experts_before = model.blocks[3].moe_layer.experts[0].fc1.weight.clone()
    report = load_unilearn_pretrained(model, path)
    assert "missing_keys" in capsys.readouterr().out
    for k in ("blocks.3.mlp.fc1.weight", "blocks.0.attn.q_bias", "patch_embed.proj.weight"):
        assert torch.equal(model.state_dict()[k], plain.state_dict()[k])
    assert torch.equal(model.blocks[3].moe_layer.experts[0].fc1.weight, experts_before)
    assert "blocks.3.moe_layer.experts.0.fc1.weight" in report.missing
    assert {"decoder.blocks.0.mlp.fc1.weight", "mask_token", "pos_embed", "head.weight"} <= set(report.dropped)
    assert report.unexpected == ["norm.weight"]

    bad = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(CheckpointError, match="resnet.pt"):
        load_unilearn_pretrained(model, bad)


def test_workflow_init_path_loads_an_s4d_layout_pretrain(tmp_path):
    """The paper preset's UniLearn init (`model.inits.unilearn_pretrain`, format `unilearn`) reaches the model
    through the planner's run config and the engine's `build_model`, as a workflow job loads it."""
    from dfer.config import load_params
    from dfer.engine.loop import build_model
    from dfer.engine.runconfig import check
    from dfer.workflow.plan import method_run_config

    torch.manual_seed(2)
    plain = create_model("unilearn_tiny", moe_layers=())
    sd = {f"encoder.{k}": v for k, v in plain.state_dict().items() if not k.startswith(("head.", "fc_norm"))}
    sd["decoder.blocks.0.mlp.fc1.weight"] = torch.zeros(8, 8)  # the MAE decoder S4D's checkpoint also holds
    path = tmp_path / "vit_base_voxceleb2+affectnet_100.pt"
    torch.save({"model": sd}, path)

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml", overrides=[
        "preset=paper", f"model.inits.unilearn_pretrain.path={path}", "methods.unilearn.model=unilearn_tiny"])
    cfg = method_run_config(params, "unilearn", "DFEW", fold=1)
    assert cfg["model"]["init"] == str(path) and cfg["model"]["init_format"] == "unilearn"
    model = build_model(check(cfg), verbose=False)
    for k in ("blocks.3.mlp.fc1.weight", "blocks.0.attn.q_bias", "patch_embed.proj.weight"):
        assert torch.equal(model.state_dict()[k], plain.state_dict()[k]), k


def test_unilearn_table3_variants_have_the_papers_parameter_counts():
    """UniLearn Table 3 (test / train, M): ViT 86 / 86, ViT-MTL 86 / 86, UniLearn 90 / 101, ViT-MoE 115 / 285."""
    counts = {}
    for name, kwargs in {"ViT": {"moe_layers": []}, "UniLearn": {}, "ViT-MoE": {"moe_kind": "ffn"}}.items():
        model = create_model("unilearn_base_patch16_160", num_classes=7, **kwargs)
        counts[name] = (round(active_parameters(model) / 1e6), round(count_parameters(model)[0] / 1e6))
    assert counts == {"ViT": (86, 86), "UniLearn": (90, 101), "ViT-MoE": (115, 285)}
    moe = create_model("unilearn_tiny", moe_kind="ffn")
    assert all(b.mlp is None and len(b.moe_layer.experts) == 8 for b in moe.blocks[2:])   # FFN experts replace it
    assert moe.blocks[2].moe_layer.experts[0].fc1.out_features == 4 * moe.embed_dim
    logits, _ = moe(torch.randn(2, 3, 4, 64, 64))
    assert logits.shape == (2, 7) and moe.aux_loss() > 0


@pytest.mark.parametrize("position,depth,expected", [
    ("early", 12, (0, 1, 2, 3, 4, 5)), ("middle", 12, (3, 4, 5, 6, 7, 8)), ("later", 12, (6, 7, 8, 9, 10, 11)),
    ("alternate", 12, (1, 3, 5, 7, 9, 11)), (None, 4, (2, 3)), ([], 4, ()), ([0, 3], 4, (0, 3))])
def test_moae_positions_of_unilearn_table5(position, depth, expected):
    from dfer.models.unilearn import moe_layer_indices

    assert moe_layer_indices(position, depth) == expected
    with pytest.raises(ValueError, match="moe_layers"):
        moe_layer_indices("first", depth)


def test_vit_moe_experts_start_from_the_pretrained_ffn(tmp_path):
    """Sparse upcycling: each FFN expert of a ViT-MoE block is the pretrained dense FFN."""
    from dfer.models.unilearn import load_unilearn_pretrained

    torch.manual_seed(3)
    plain = create_model("unilearn_tiny", moe_layers=())
    path = tmp_path / "pretrain.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in plain.state_dict().items()}}, path)
    moe = create_model("unilearn_tiny", moe_kind="ffn")
    load_unilearn_pretrained(moe, path, verbose=False)
    for e in range(8):
        assert torch.equal(moe.blocks[3].moe_layer.experts[e].fc2.weight, plain.blocks[3].mlp.fc2.weight)
    assert torch.equal(moe.blocks[0].mlp.fc1.weight, plain.blocks[0].mlp.fc1.weight)   # dense blocks as before
