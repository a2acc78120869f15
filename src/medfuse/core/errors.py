"""Exceptions that tell the user what went wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path


class MedfuseError(Exception):
    """Base class of every error medfuse raises on purpose."""


class ConfigError(MedfuseError, ValueError):
    """A configuration value is wrong: names the field, the value and what is allowed."""


class DataError(MedfuseError, ValueError):
    """A data file or row is wrong: names the file, the row and the field when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.path:
            where.append(self.path)
        if row is not None:
            where.append(f"line {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where)] if where else [])}{': ' if where else ''}{message}")


class OptionalDependencyError(MedfuseError, ImportError):
    """An optional extra is not installed."""
