"""Named model configurations, timm style: ``@register_model`` on a factory, ``create_model(name, **kw)``."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name (``s2d_base_patch16_224``, ``s2d_tiny`` ...)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise with the list of known ones."""
    _import_all()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_MODELS)}")
    return _MODELS[name](**kwargs)


def _import_all() -> None:
    # Importing the model modules runs their @register_model decorators.
    import importlib

    for mod in ("s2d", "nr_dfernet", "unilearn"):
        try:
            importlib.import_module(f"dfer.models.{mod}")
        except ModuleNotFoundError as exc:  # a module not written yet must not hide the others
            if exc.name != f"dfer.models.{mod}":
                raise
