"""Metrics on hand-checkable confusion matrices, view averaging, the LR schedule and linear scaling."""
import math

import numpy as np
from pathlib import Path
import pytest
import torch

from dfer.engine.evaluate import cross_scores
from dfer.engine.metrics import average_views, confusion_matrix, f1_scores, per_class_recall, summarize, uar, war
from dfer.engine.schedule import build_optimizer, cosine_schedule, param_groups, scaled_lrs


ROOT = Path(__file__).resolve().parents[1]


def test_confusion_uar_war_per_class_by_hand():
    # class 0: 3 samples, 2 right; class 1: 1 sample, 1 right; class 2: 2 samples, 0 right
    y_true = [0, 0, 0, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 0, 1]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 0], [1, 1, 0]]
    assert per_class_recall(cm) == [pytest.approx(2 / 3), 1.0, 0.0]
    assert uar(cm) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert war(cm) == pytest.approx(3 / 6)
    # F1: class0 p=2/3 r=2/3 -> 2/3; class1 p=1/3 r=1 -> 0.5; class2 0
    f = f1_scores(cm)
    assert f["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert f["weighted_f1"] == pytest.approx((3 * 2 / 3 + 1 * 0.5 + 2 * 0) / 6)


def test_uar_differs_from_war_on_imbalance_and_skips_absent_classes():
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 8 + [0] * 2          # always "0": WAR 0.8, UAR 0.5
    s = summarize(y_true, y_pred, ["a", "b", "c"])
    assert s["war"] == pytest.approx(0.8)
    assert s["uar"] == pytest.approx(0.5)   # class c has no samples: not averaged
    assert s["per_class"] == {"a": 1.0, "b": 0.0, "c": None}
    assert s["confusion"][0][0] == 8 and s["num_samples"] == 10


def test_confusion_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_average_views_is_softmax_mean_per_sample():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5], [0.3, 0.7]])
    sample = [0, 0, 0, 1, 1]
    avg = average_views(probs, sample, 2)
    np.testing.assert_allclose(avg, [[0.5, 0.5], [0.4, 0.6]])
    # sample 0: argmax of mean (tie broken to 0) differs from majority vote of views (1 twice)
    with pytest.raises(ValueError, match="missing"):
        average_views(probs, [0, 0, 0, 2, 2], 3)


def test_cross_dataset_scores_only_shared_classes():
    src = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]   # AffectNet-8
    dst = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]      # RAF-DB
    probs = np.zeros((3, 8))
    probs[0, 7], probs[0, 1] = 0.9, 0.1    # contempt wins overall, but not a RAF class -> Happy
    probs[1, 0] = 1.0                      # Neutral
    probs[2, 2] = 1.0                      # Sad
    labels = np.array([3, 6, 0])          # Happiness, Neutral, Surprise
    res = cross_scores(probs, labels, src, dst)
    assert res["shared_classes"] == dst
    assert res["war"] == pytest.approx(2 / 3)
    assert res["per_class"]["Happiness"] == 1.0 and res["per_class"]["Surprise"] == 0.0


def test_linear_scaling_of_learning_rates():
    from dfer.config import load_params

    train = load_params(ROOT / "params.yaml", ["preset=paper"])["train"]  # the official S2D base recipe
    lrs = scaled_lrs({**train, "warmup_lr": 1e-7}, total_batch=16)
    assert lrs["lr"] == pytest.approx(2e-5)                 # official: lr * total / 8
    assert lrs["min_lr"] == pytest.approx(1e-8 * 16 / 256)   # min/warm-up lr: * total / 256
    assert lrs["warmup_lr"] == pytest.approx(1e-7 * 16 / 256)
    # MAE-SFER: blr 5e-4 x 32 / 256, min_lr absolute
    mae = scaled_lrs({**train, "lr": 5e-4, "lr_reference_batch": 256, "min_lr": 1e-6,
                      "min_lr_reference_batch": None}, total_batch=32)
    assert mae["lr"] == pytest.approx(6.25e-5) and mae["min_lr"] == pytest.approx(1e-6)


def test_layer_decay_scales_each_layers_lr():
    from dfer.models import create_model

    model = create_model("s2d_tiny", num_classes=7, depth=3, embed_dim=32, num_heads=2, adapter_heads=2)
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["head.fc_cls.weight"])] == 1.0                        # depth + 1: no decay
    assert scale[id(named["blocks.2.attn.qkv.weight"])] == 0.5                  # last block
    assert scale[id(named["blocks.0.attn.qkv.weight"])] == 0.5 ** 3
    assert scale[id(named["prompt_blocks.0.conv1x1.weight"])] == 0.5 ** 3       # MCP/TMA of layer 0 = block 0
    assert scale[id(named["patch_embed.proj.weight"])] == 0.5 ** 4              # embeddings
    assert {g["lr_scale"] for g in param_groups(model, 0.05)} == {1.0}          # 1.0 = off


def test_layer_decay_reaches_unilearn_blocks():
    """UniLearn keeps its blocks in a ModuleList (S4D): layer decay 0.75 must still shrink the early blocks' lr."""
    from dfer.models import create_model

    model = create_model("unilearn_tiny", num_classes=7)
    scale = {id(p): g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.75) for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["head.video.weight"])] == 1.0
    assert scale[id(named["blocks.3.attn.qkv.weight"])] == 0.75
    assert scale[id(named["blocks.0.attn.qkv.weight"])] == pytest.approx(0.75 ** 4)
    assert scale[id(named["patch_embed.proj.weight"])] == pytest.approx(0.75 ** 5)


def test_exponential_schedule_and_sgd_for_nr_dfernet():
    from dfer.engine.schedule import exponential_schedule, lr_schedule

    s = exponential_schedule(1e-3, 0.5, epochs=3, steps_per_epoch=4)
    np.testing.assert_allclose(s, [1e-3] * 4 + [5e-4] * 4 + [2.5e-4] * 4)
    warm = exponential_schedule(1.0, 0.9, epochs=3, steps_per_epoch=2, warmup_epochs=1, warmup_start=0.0)
    np.testing.assert_allclose(warm, [0.0, 1.0, 1.0, 1.0, 0.9, 0.9])
    train = {"schedule": "exponential", "lr_gamma": 0.95, "warmup_epochs": 0, "optimizer": "sgd", "momentum": 0.9,
             "weight_decay": 0.0, "layer_decay": 1.0, "betas": [0.9, 0.999]}
    s = lr_schedule(train, {"lr": 1e-3, "min_lr": 0.0, "warmup_lr": 0.0}, epochs=70, steps_per_epoch=10)
    assert s[0] == 1e-3 and s[-1] == pytest.approx(1e-3 * 0.95 ** 69)
    opt = build_optimizer(torch.nn.Linear(3, 2), train, 1e-3)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert isinstance(build_optimizer(torch.nn.Linear(3, 2), {**train, "optimizer": "adamw"}, 1e-3), torch.optim.AdamW)


def test_colour_jitter_changes_every_frame_alike_and_keeps_the_geometry():
    from dfer.data.transforms import ClipAugment, color_jitter

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(40, 200, (1, 16, 16, 3), dtype=np.uint8), 4, axis=0)
    out = color_jitter(frames, np.random.default_rng(1), 0.4)
    assert out.dtype == np.uint8 and out.shape == frames.shape and not np.array_equal(out, frames)
    assert all(np.array_equal(out[0], out[t]) for t in range(4))          # one draw per clip
    assert np.array_equal(color_jitter(frames, np.random.default_rng(1), 0.0), frames)
    aug = ClipAugment.from_dict(16, {"color_jitter": 0.4})
    assert not aug.geometric                                              # cached landmark features stay valid
    assert aug(frames, np.random.default_rng(2)).shape == (3, 4, 16, 16)


def test_warmup_then_cosine_per_step():
    s = cosine_schedule(1.0, 0.0, epochs=4, steps_per_epoch=5, warmup_epochs=1, warmup_start=0.1)
    assert len(s) == 20
    np.testing.assert_allclose(s[:5], np.linspace(0.1, 1.0, 5))      # warm-up, both ends included
    assert s[5] == pytest.approx(1.0)                                  # cosine starts at the peak
    n = 15
    for i in (0, 3, 7, 14):
        assert s[5 + i] == pytest.approx(0.5 * (1 + math.cos(math.pi * i / n)))
    assert np.all(np.diff(s[5:]) < 0)                                  # monotone decay
    assert s[-1] > 0.0 and s[-1] < 0.02


def test_optimizer_gets_only_trainable_params_and_no_decay_on_bias():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    groups = param_groups(model, 0.05)
    decay, no_decay = groups[0]["params"], groups[1]["params"]
    assert [p.shape for p in decay] == [torch.Size([2, 3])]
    assert len(no_decay) == 4  # bias0, ln weight/bias, bias2
    opt = build_optimizer(model, {"weight_decay": 0.05, "betas": [0.9, 0.999], "layer_decay": 1.0,
                                  "optimizer": "adamw"}, lr=1e-3)
    assert opt.defaults["betas"] == (0.9, 0.999)
    assert all(p is not model[0].weight for g in opt.param_groups for p in g["params"])
