"""Lazy imports of optional parts with one clear line naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from medfuse.core.errors import OptionalDependencyError


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Return the imported ``module`` or raise naming the extra that provides it.

    >>> require("json", extra="core").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # the message names the extra; the cause keeps the detail
        top = module.split(".")[0]
        what = f" for {purpose}" if purpose else ""
        raise OptionalDependencyError(
            f"{top} is needed{what}: pip install 'medfuse[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it twice)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None
