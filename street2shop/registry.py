"""Choosing things by name: the one registry behind backbones, poolings, losses, miners,
baselines, noise features and inference modes.

A config file or a CLI flag names a component (``backbone: efficientnet_lite0``,
``pool: gem+spoc``); the module that defines the component registers it under that name, and
every lookup of an unknown name fails the same way, listing what there is::

    BACKBONES: Registry[BackboneFactory] = Registry("backbone")

    @BACKBONES.register("tiny")
    def tiny(pretrained: bool, weights_path: Path | None) -> Backbone: ...

    BACKBONES.get("tiny")   # the factory
    BACKBONES.get("tiyn")   # ValueError: unknown backbone 'tiyn'; choose one of ['tiny', ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by the ``register`` decorator; names are unique."""

    def __init__(self, kind: str, entries: dict[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name`` (a name is registered once)."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {self.names()}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register throwaway names in one)."""
        return Registry(self.kind, self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
