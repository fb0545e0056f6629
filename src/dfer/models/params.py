"""Parameter counting and the official DFER freezing rule.

On DFER only MCP, TMA and the classifier train (paper §IV-C). The official ``run_class_finetuning.py``
implements this as a name filter: a parameter stays trainable iff its name contains one of
``temporal_embedding, temporal_attn, cls_token_t, ln_post, cls_head, Adapter, head, prompt``. In S2D this
keeps ``patch_embed_prompt``, ``prompt_blocks`` (MCP + TMA), ``prompt_norms``, ``temporal_embedding``,
``ln_post`` and ``head``; ``patch_embed``, ``cls_token``, ``blocks`` are frozen and ``pos_embed`` is fixed
from construction. At ViT-B/16 this leaves 9,258,451 tunable parameters for 7 classes (9,261,527 for 11).
"""
from __future__ import annotations

import torch.nn as nn

DFER_TRAINABLE_SUBSTRINGS = ("temporal_embedding", "temporal_attn", "cls_token_t", "ln_post", "cls_head",
                             "Adapter", "head", "prompt")


def is_dfer_trainable(name: str) -> bool:
    return any(s in name for s in DFER_TRAINABLE_SUBSTRINGS)


def freeze_for_dfer(model: nn.Module) -> list[str]:
    """Freeze everything but MCP, TMA, temporal embedding, ln_post and head; returns the trainable names.

    Parameters that are fixed by construction (``pos_embed``) stay fixed.
    """
    trainable = []
    for name, p in model.named_parameters():
        if not is_dfer_trainable(name):
            p.requires_grad_(False)
        elif p.requires_grad:
            trainable.append(name)
    return trainable


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, tunable)`` parameter counts; tunable = ``requires_grad``."""
    total = sum(p.numel() for p in model.parameters())
    tunable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, tunable
