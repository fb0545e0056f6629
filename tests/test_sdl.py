"""Emotion-anchor self-distillation: hand-checked soft labels, FIFO updates, schedules, loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from dfer.models.sdl import SDL, SDLConfig, sdl_active, sdl_loss, sdl_weight, should_update


def hand_built_sdl():
    """2 classes, 3 anchors each, 2-d features, k=2."""
    sdl = SDL(num_classes=2, dim=2, k=2, queue_size=3)
    sdl.queue.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],      # class 0 anchors
                                  [[-1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]]))  # class 1 anchors
    sdl.probs.copy_(torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]],
                                  [[0.2, 0.8], [0.3, 0.7], [0.5, 0.5]]]))
    return sdl


def test_soft_targets_equal_manual_computation():
    sdl = hand_built_sdl()
    feat = torch.tensor([[2.0, 0.0]])  # direction (1, 0)
    # cosines: class 0 -> [1, 0, 1/sqrt2]: top-2 = 1 (anchor 0), 0.7071 (anchor 2)
    #          class 1 -> [-1, 0, 1]:      top-2 = 1 (anchor 2), 0 (anchor 1)
    s = 1 / math.sqrt(2)
    num = 1 * torch.tensor([0.9, 0.1]) + s * torch.tensor([0.8, 0.2]) + 1 * torch.tensor([0.5, 0.5]) + 0 * torch.tensor([0.3, 0.7])
    expected = num / (1 + s + 1 + 0)
    got = sdl.soft_targets(feat, torch.zeros(1, 2))
    assert torch.allclose(got, expected[None], atol=1e-6)
    assert torch.allclose(got.sum(), torch.tensor(1.0))  # a mean of probability vectors
    # a batch is the same as samples one by one
    feats = torch.tensor([[2.0, 0.0], [0.5, 1.5], [-1.0, 0.3]])
    batch = sdl.soft_targets(feats, torch.zeros(3, 2))
    for i in range(3):
        assert torch.allclose(batch[i], sdl.soft_targets(feats[i:i + 1])[0], atol=1e-6)


def test_update_is_fifo_per_ground_truth_class():
    sdl = hand_built_sdl()
    feat = torch.tensor([[5.0, 5.0], [7.0, 0.0]])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    sdl.update(feat, logits, torch.tensor([1, 1]))
    assert torch.equal(sdl.queue[0], hand_built_sdl().queue[0])  # class 0 untouched
    assert torch.equal(sdl.queue[1], torch.tensor([[3.0, 0.0], [5.0, 5.0], [7.0, 0.0]]))  # oldest two dropped
    assert torch.allclose(sdl.probs[1, 1], F.softmax(logits[0], 0)) and torch.allclose(sdl.probs[1, 2], F.softmax(logits[1], 0))
    assert torch.equal(sdl.probs[1, 0], torch.tensor([0.5, 0.5]))
    assert set(sdl.state_dict()) == {"queue", "probs"}  # saved with a resume checkpoint


def test_default_sizes_and_loss():
    sdl = SDL(num_classes=7, dim=768)
    assert sdl.queue.shape == (7, 16, 768) and sdl.probs.shape == (7, 16, 7) and sdl.k == 2
    logits = torch.randn(4, 7, requires_grad=True)
    soft = sdl.soft_targets(torch.randn(4, 768), logits)
    loss = sdl_loss(logits, soft)
    assert torch.allclose(loss, torch.nn.BCEWithLogitsLoss()(logits, soft))
    loss.backward()
    assert logits.grad is not None and not soft.requires_grad
    with pytest.raises(ValueError):
        SDL(7, 768, k=17, queue_size=16)


def test_schedules_paper_and_official():
    assert [sdl_weight(e, 5) for e in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]  # rises 0 -> 1
    official = [sdl_weight(e, 100, "official") for e in (0, 20, 29, 30, 49, 50, 59, 60, 79, 80, 99)]
    assert official == [0, 0, 0, 0.01, 0.01, 0.1, 0.1, 0.5, 0.5, 1.0, 1.0]
    assert [e for e in range(100) if sdl_active(e, 100, "official")][0] == 21
    assert not sdl_active(0, 5) and sdl_active(1, 5)
    with pytest.raises(ValueError):
        sdl_weight(1, 10, "cosine")


def test_official_update_frequency_quirk():
    assert all(should_update(e, 100, SDLConfig()) for e in range(100))                     # paper: every step
    assert [e for e in range(100) if should_update(e, 100, SDLConfig(update="official"))] == [40, 80]
    never = SDLConfig(update="official", update_freq=100)                                  # FERV39K script
    assert not any(should_update(e, 100, never) for e in range(100))
    assert [e for e in range(5) if should_update(e, 5, SDLConfig(update="official"))] == [2, 4]
    with pytest.raises(ValueError):
        SDLConfig(update="sometimes")


def test_anchors_come_from_the_clean_clip_never_the_mixed_one():
    """Official `model(ori_samples, a)`: with Mixup/CutMix on, the queues are filled from a no-grad forward of
    the un-mixed clip under its true label."""
    import numpy as np

    from dfer.data.transforms import mixup_fn
    from dfer.engine.loop import Precision, StepState, micro_step_loss
    from dfer.models import create_model

    torch.manual_seed(0)
    model = create_model("s2d_tiny", num_classes=3, fusion="none", embed_dim=32, depth=1, num_heads=2,
                         adapter_heads=2, num_frames=2, head_dropout=0.0).eval()  # deterministic forward
    clean = torch.randn(4, 3, 2, 112, 112)
    labels = torch.tensor([0, 1, 2, 0])
    sdl = SDL(3, model.num_features, k=1, queue_size=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    st = StepState(opt, np.zeros(1), 1, Precision(), None, None, False,
                   mixup_fn({"mixup": 0.8, "cutmix": 0.0}, 3, 0.0), "onehot_sdl", 0.0, 3, sdl=sdl, sdl_active=True,
                   sdl_update=True)
    micro_step_loss(model, {"video": clean, "label": labels}, st, torch.device("cpu"))
    with torch.no_grad():
        _, feat = model(clean)
    assert torch.allclose(sdl.queue[1, -1], feat[1], atol=1e-5)   # class 1's newest anchor = clean clip 1
    assert torch.allclose(sdl.queue[0, -1], feat[3], atol=1e-5)   # class 0: clips 0 then 3 (FIFO)
    assert torch.allclose(sdl.queue[0, -2], feat[0], atol=1e-5)
