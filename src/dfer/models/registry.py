"""Named model configurations, timm style: ``@register_model`` on a factory, ``create_model(name, **kw)``."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from dfer.registry import Registry


def _import_all() -> None:
    # Importing the model modules runs their @register_model decorators.
    import importlib

    for mod in ("s2d", "nr_dfernet", "unilearn"):
        try:
            importlib.import_module(f"dfer.models.{mod}")
        except ModuleNotFoundError as exc:  # a module not written yet must not hide the others
            if exc.name != f"dfer.models.{mod}":
                raise


MODELS: Registry[Callable[..., nn.Module]] = Registry("model", loader=_import_all, sort=True)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name (``s2d_base_patch16_224``, ``s2d_tiny`` ...)."""
    return MODELS.register(fn)


def register_config(name: str, doc: str, build: Callable[..., nn.Module], **config) -> Callable[..., nn.Module]:
    """Register the factory ``name`` of one named configuration: ``build(**{**config, **kwargs})`` (the caller's
    kwargs win, so ablations override any entry)."""
    def factory(**kwargs) -> nn.Module:
        return build(**{**config, **kwargs})

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return register_model(factory)


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names raise with the list of known ones."""
    return MODELS.get(name)(**kwargs)
