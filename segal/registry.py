"""Name → factory registries for datasets, models and strategies.

Each package imports all of its modules explicitly in its ``__init__`` so that a registry is
complete whenever the package is imported (import order never decides what exists).  Adding a
dataset, model or strategy is one new module plus one import line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from segal.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories of one kind (``dataset``, ``model``, ``strategy``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise UserError(f"unknown {self.kind} {name!r}", fix=f"choose one of: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
