"""Progress reporting without printing: the CLI plugs in rich bars, tests and library callers plug in nothing.

It sits on the ground floor because the engine, the loop, the strategies and every command report
progress, and none of them should import another just to get the reporter's type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """The silent reporter, and the base class of the CLI's: override what you want to show."""

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterable[T]:
        return iterable

    def log(self, event: str, **fields: Any) -> None:
        pass

    def warn(self, message: str) -> None:
        pass
