"""One small registry type: objectives, backbones, fusions and losses each keep one.

A new component is one file that decorates its builder with ``@REGISTRY.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ssl_siam.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → builder mapping; an unknown name fails listing the valid ones (as timm does)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        """The names in registration order."""
        return iter(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
