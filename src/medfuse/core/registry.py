"""Named registries of parts (encoders, fusions, losses, tasks, metrics), filled by decorators."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medfuse.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to builders with helpful errors for unknown names.

    >>> fusions = Registry("fusion")
    >>> @fusions.register("concat")
    ... class Concat: ...
    >>> fusions.get("concat") is Concat
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, *, doc: str | None = None) -> Callable[[T], T]:
        """Decorator that records ``obj`` under ``name``; a name may be registered once."""

        def wrap(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ConfigError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            text = doc or (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._docs[name] = text if isinstance(text, str) else (text[0] if text else "")
            return obj

        return wrap

    def get(self, name: str) -> T:
        """Return the part named ``name``; unknown names fail with the close matches."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def describe(self, name: str) -> str:
        """First line of the part's docstring."""
        return self._docs.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown fusion 'gatd'; did you mean 'gated'? known: concat, gated, ...``"""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} '{name}'{hint} known: {', '.join(known) or '(none)'}"
