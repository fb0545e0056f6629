"""Loading and saving S2D / SFER checkpoints (official S2D release, our own runs, MAE weights).

Formats (``load_pretrained(model, path, format=...)``):
  * ``official_s2d`` — the official loader's rules (``_create_vision_transformer`` in MSA-LMC/S2D):
    take ``checkpoint["model_state_dict"]`` or ``checkpoint["model"]`` (we also accept a bare state dict);
    drop keys containing ``'landmark'``; rename ``norm.*`` -> ``ln_post.*``; drop
    ``patch_embed_prompt.proj.weight`` when its input channels differ from the model's; load non-strict
    and print the missing and unexpected keys.
  * ``dfer`` — our ``model.pt`` (``{"model": state_dict, "meta": {...}}``, written by :func:`save_checkpoint`);
    the parameter names are the official ones, so the same rules apply. An SFER checkpoint initialises the
    DFER model this way (AffectNet SFER -> DFER).
  * ``mae`` — MAE / timm ViT weights (``model`` -> ``blocks.*``, ``norm.*``, ``patch_embed.*``,
    ``cls_token``, ``pos_embed``): ``norm.*`` -> ``ln_post.*``; MAE decoder keys and ``mask_token`` dropped.

The classifier (``head=...``): a checkpoint trained on another label set must not pass its rows to the new
classes in whatever order they happen to be. ``head="keep"`` (default; loading a model for its own classes)
keeps ``head.*`` when the shapes match; ``head="fresh"`` drops it (the official DFER fine-tuning: the
AffectNet-7 checkpoint's classifier is not named ``head.fc_cls``, so the DFER head starts from its init);
``head="remap"`` copies rows by canonical class name from ``classes=(source names, target names)`` and keeps
the fresh init for classes the source lacks.

Extensions beyond the official loader, applied to every format and listed in the printed report (the
official loader would raise on these shape clashes):
  * ``head.fc_cls.*`` with another class count is dropped (the classifier is re-initialised).
  * ``temporal_embedding`` of a one-frame (SFER) model is dropped: the DFER model's starts from its own init,
    as in the official code, whose SFER model has none. Between two frame counts > 1 it is linearly
    interpolated over time.
  * ``pos_embed`` on another token grid is resized (bicubic, timm ``resample_abs_pos_embed``).
Any other shape clash, or a file that holds no ViT weights at all (e.g. a ResNet), raises
:class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from dfer.data.errors import DataError
from dfer.io import atomic_path

FORMATS = ("official_s2d", "dfer", "mae")


class CheckpointError(DataError):
    """A checkpoint that is missing, unreadable or cannot initialise the model; ``str()`` names the file and the
    fix. A DataError: the CLI prints it without a traceback."""

    def __init__(self, path, message: str, fix: str | None = None):
        super().__init__(path, message, fix)


@dataclass
class LoadReport:
    path: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)   # key -> why
    adapted: dict[str, str] = field(default_factory=dict)   # key -> how

    def __str__(self) -> str:
        lines = [f"Load pretrained model from: {self.path} (format {self.format}, {len(self.loaded)} tensors loaded)",
                 f"missing_keys: {self.missing}", f"unexpected_keys: {self.unexpected}"]
        lines += [f"dropped {k}: {why}" for k, why in self.dropped.items()]
        lines += [f"adapted {k}: {how}" for k, how in self.adapted.items()]
        return "\n".join(lines)


def read_checkpoint(path, trust_pickle: bool = False, *, what: str = "checkpoint", fix: str | None = None) -> object:
    """The one reader of checkpoint files (model, landmark net, face detector weights): ``torch.load`` of a local
    file on CPU. Safe (weights-only) unpickling unless ``trust_pickle``; the official and MAE training scripts
    store an ``argparse.Namespace`` next to the weights, which is allowed. A missing or unreadable file raises
    :class:`CheckpointError` naming the file, ``what`` it should be and ``fix`` (what the user should do; by
    default: give a local checkpoint path). Callers add their own checks of what the file holds."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"{what} not found",
                              fix or "give the local path of the checkpoint; weights are never downloaded at run time")
    try:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and the fix
        hint = "" if trust_pickle else "; if the file is trusted and stores other Python objects, load it with " \
                                       "trust_pickle=True"
        raise CheckpointError(path, f"{what} cannot be read: not a readable PyTorch checkpoint "
                                    f"({type(exc).__name__}: {exc})",
                              fix or f"point to a file saved by torch.save{hint}") from exc


def extract_state_dict(obj, path="<checkpoint>") -> dict[str, torch.Tensor]:
    """``model_state_dict`` / ``model`` / ``state_dict`` entry or a bare state dict; strips ``module.``."""
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, not a state dict or a dict with 'model'")
    for key in ("model_state_dict", "model", "state_dict"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(path, f"contains no tensors (top-level keys: {sorted(obj)[:10]})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _rename_norm(sd: dict, report: LoadReport) -> None:
    for suffix in ("weight", "bias"):
        if f"norm.{suffix}" in sd:
            sd[f"ln_post.{suffix}"] = sd.pop(f"norm.{suffix}")
            report.adapted[f"norm.{suffix}"] = f"renamed to ln_post.{suffix}"


HEAD_POLICIES = ("keep", "fresh", "remap")


def _transfer_head(sd: dict, model: nn.Module, head: str, classes, report: LoadReport) -> None:
    """Apply the classifier policy (see the module docstring) to the checkpoint's ``head.*`` tensors."""
    if head not in HEAD_POLICIES:
        raise ValueError(f"head must be one of {HEAD_POLICIES}, got {head!r}")
    keys = [k for k in sd if k.startswith("head.")]
    if head == "keep" or not keys:
        return
    if head == "remap":
        src, dst = classes if classes else (None, None)
        if not src or not dst:
            raise CheckpointError(report.path, "head remap needs the class names of the checkpoint and of the model "
                                               "(init_dataset in the run config)")
        from dfer.data.labels import canonical

        rows = {canonical(c): i for i, c in enumerate(src)}
        own = model.state_dict()
        for k in keys:
            if k not in own or sd[k].shape[1:] != own[k].shape[1:] or sd[k].shape[0] != len(src):
                continue
            new = own[k].clone()
            for j, c in enumerate(dst):
                if canonical(c) in rows:
                    new[j] = sd[k][rows[canonical(c)]]
            sd[k] = new
        shared = [c for c in dst if canonical(c) in rows]
        report.adapted["head.*"] = f"rows remapped by class name ({len(shared)} of {len(dst)} classes: {shared})"
        return
    for k in keys:
        del sd[k]
    report.dropped["head.*"] = "classifier of another label set: re-initialised (head=fresh)"


def convert_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, format: str,
                       report: LoadReport, head: str = "keep", classes=None) -> dict[str, torch.Tensor]:
    """Apply the format's rules, the classifier policy and the shape adaptations; returns the state dict."""
    if format not in FORMATS:
        raise ValueError(f"checkpoint format must be one of {FORMATS}, got {format!r}")
    sd = dict(sd)
    for k in [k for k in sd if "landmark" in k]:  # the official loader's rule (landmark net weights)
        report.dropped[k] = "landmark network weights"
        del sd[k]
    if format == "mae":
        for k in [k for k in sd if k.startswith("decoder") or k == "mask_token"]:
            report.dropped[k] = "MAE decoder"
            del sd[k]
    _rename_norm(sd, report)

    _transfer_head(sd, model, head, classes, report)
    own = model.state_dict()
    key = "patch_embed_prompt.proj.weight"
    if key in sd and key in own and sd[key].shape[1] != own[key].shape[1]:
        report.dropped[key] = f"in-channels {sd[key].shape[1]} != model's {own[key].shape[1]} (official rule)"
        del sd[key]
    for k in [k for k in sd if k.startswith("head.fc_cls.")]:
        if k in own and sd[k].shape != own[k].shape:
            report.dropped[k] = f"classifier shape {tuple(sd[k].shape)} != {tuple(own[k].shape)}: re-initialised"
            del sd[k]
    k = "temporal_embedding"
    if k in sd and k in own and sd[k].shape != own[k].shape and sd[k].shape[-1] == own[k].shape[-1]:
        t0, t = sd[k].shape[1], own[k].shape[1]
        if t0 == 1:
            del sd[k]
            report.dropped[k] = f"one-frame (SFER) embedding: the {t}-frame model keeps its own init (official)"
        else:
            sd[k] = F.interpolate(sd[k].transpose(1, 2), size=t, mode="linear", align_corners=True).transpose(1, 2)
            report.adapted[k] = f"interpolated from {t0} to {t} frames"
    k = "pos_embed"
    if k in sd and k in own and sd[k].shape != own[k].shape and sd[k].shape[-1] == own[k].shape[-1]:
        n0, n = sd[k].shape[1] - 1, own[k].shape[1] - 1
        g0, g = int(round(n0 ** 0.5)), int(round(n ** 0.5))
        if g0 * g0 == n0 and g * g == n:
            sd[k] = resample_abs_pos_embed(sd[k], new_size=[g, g], old_size=[g0, g0], num_prefix_tokens=1)
            report.adapted[k] = f"resized from {g0}x{g0} to {g}x{g} tokens"
    return sd


def load_state_dict_into(model: nn.Module, sd: dict[str, torch.Tensor], report: LoadReport,
                         verbose: bool = True) -> LoadReport:
    own = model.state_dict()
    matched = [k for k in sd if k in own]
    # The backbone must match: ViT blocks for the S2D/SFER/MAE ViTs, any non-classifier tensor for the others
    # (e.g. NR-DFERNet fine-tuned on AFEW from its DFEW run)
    body = "blocks." if any(k.startswith("blocks.") for k in own) else ""
    if not any(k.startswith(body) and not k.startswith("head.") for k in matched):
        raise CheckpointError(report.path, f"none of its keys matches the {'ViT blocks' if body else 'layers'} of "
                                           f"{type(model).__name__} (checkpoint keys e.g. {list(sd)[:5]}, "
                                           f"model keys e.g. {list(own)[:3]}): not a checkpoint of this "
                                           f"architecture; pass the right file")
    clashes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
               for k in matched if sd[k].shape != own[k].shape]
    if clashes:
        raise CheckpointError(report.path, f"{len(clashes)} tensor shape(s) do not match the model "
                                           f"({'; '.join(clashes[:5])}); build the model with the "
                                           f"checkpoint's size (e.g. s2d_tiny vs s2d_base_patch16_224, "
                                           f"lmk_channels) or pass the right file")
    result = model.load_state_dict(sd, strict=False)
    report.loaded = matched
    report.missing = list(result.missing_keys)
    report.unexpected = list(result.unexpected_keys)
    if verbose:
        print(report)
    return report


def load_pretrained(model: nn.Module, path, format: str = "official_s2d", verbose: bool = True,
                    trust_pickle: bool = False, head: str = "keep", classes=None) -> LoadReport:
    """Initialise ``model`` from a local checkpoint (see the module docstring for the rules). ``head``: keep |
    fresh | remap the checkpoint's classifier; ``classes``: (checkpoint's class names, model's) for remap."""
    report = LoadReport(path=str(path), format=format)
    sd = extract_state_dict(read_checkpoint(path, trust_pickle), path)
    sd = convert_state_dict(sd, model, format, report, head, classes)
    return load_state_dict_into(model, sd, report, verbose)


def save_checkpoint(model: nn.Module, path, meta: dict | None = None) -> Path:
    """Write ``{"model": state_dict, "meta": meta}`` atomically (:func:`dfer.io.atomic_path`).

    The official loader reads ``checkpoint["model"]``, so these files also load into the official code.
    """
    path = Path(path)
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": dict(meta or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
