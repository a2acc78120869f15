"""The registry of evaluation metrics (name -> function), shown by ``medfuse models list``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medfuse.core.registry import Registry

METRICS: Registry[Callable[..., Any]] = Registry("metric")
