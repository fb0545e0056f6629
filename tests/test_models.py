"""Every registered model builds, runs forward and backward on a small input, and keeps its contract:
``model(x, lmk) -> (logits [B, K], features [B, D])`` with ``uses_landmarks`` telling whether ``lmk`` is read
(timm's tests/test_models.py habit: one test parametrised over the registry, not a hand-kept list)."""
import pytest
import torch

from dfer.models import create_model, list_models


def _inputs(model, batch: int = 2):
    """A clip [B, 3, T, S, S] of the model's own frames and size, and landmark maps [B*T, C, g, g] if it reads them."""
    frames = getattr(model, "num_frames", 1)
    size = getattr(model, "img_size", None) or model.patch_embed.img_size   # the ViTs keep it in their patch embed
    size = size if isinstance(size, int) else size[0]
    x = torch.randn(batch, 3, frames, size, size)
    lmk = None
    if getattr(model, "fusion", "none") != "none":   # S2D with MCP / CAP fusion
        lmk = torch.randn(batch * frames, model.lmk_channels, model.lmk_grid, model.lmk_grid)
    return x, lmk


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    # the registry's architecture at its own size; video models on 2 frames (CPU seconds, as timm shrinks inputs)
    model = create_model(name, num_classes=5, **({} if name.startswith("sfer") else {"num_frames": 2}))
    model.train()
    x, lmk = _inputs(model)
    logits, feat = model(x, lmk)
    assert logits.shape == (2, 5) and feat.shape[0] == 2 and torch.isfinite(logits).all()
    logits.sum().backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and sum(p.grad is not None and p.grad.abs().sum() > 0 for p in trained) > len(trained) // 2
