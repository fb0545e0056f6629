"""One small registry for things chosen by name (models, face detectors, landmark nets), timm style.

``reg = Registry("model", loader=import_models)``; ``@reg.register`` (the function's name) or
``@reg.register("name")`` adds an entry, twice the same name is an error; ``reg.get(name)`` returns it or
raises ``KeyError("unknown model 'x'; choose one of [...]")``; ``reg.names()`` lists them in registration order.
``loader`` (optional) imports the modules whose decorators register, once, on the first look-up.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None, sort: bool = False):
        self.kind = kind            # how messages call an entry ("model", "face detector", ...)
        self.sort = sort            # list names sorted instead of in registration order
        self._loader = loader
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name_or_fn: Any = None):
        """Decorator: ``@reg.register`` registers under ``fn.__name__``, ``@reg.register("name")`` under name."""
        if callable(name_or_fn):
            return self.add(name_or_fn.__name__, name_or_fn)
        return lambda fn: self.add(name_or_fn or fn.__name__, fn)

    def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            try:
                loader()
            except BaseException:
                self._loader = loader  # a failed import is retried (and raises again) on the next look-up
                raise

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries) if self.sort else list(self._entries)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {self.names()}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries
