"""Intensity windows (DICOM VOI LUT functions, PS3.3 C.11.2.1.2) mapping values to [0, 1].

Shared by DICOM and ordinary image decoding so that a window means the same thing for both.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medfuse.core import ConfigError

WindowArg = tuple[float, float] | Literal["header", "minmax"] | None

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def check_window(window: object) -> None:
    """Raise :class:`ConfigError` unless ``window`` is None, 'header', 'minmax' or (center, width)."""
    if window is None or window in ("header", "minmax"):
        return
    if isinstance(window, tuple | list) and len(window) == 2:
        try:
            center, width = float(window[0]), float(window[1])
        except (TypeError, ValueError):
            pass
        else:
            if np.isfinite(center) and np.isfinite(width) and width >= 1:
                return
            raise ConfigError(f"window: width must be a finite number >= 1, got {window!r}")
    raise ConfigError(f"window: expected None, 'header', 'minmax' or (center, width), got {window!r}")


def apply_window(
    values: np.ndarray, center: float, width: float, *, function: str = "LINEAR"
) -> np.ndarray:
    """Return ``values`` (any shape) mapped to [0, 1] by a DICOM VOI window, float64, same shape.

    LINEAR (PS3.3 C.11.2.1.2.1), with c = center and w = width (w >= 1)::

        x <= c - 0.5 - (w - 1) / 2   ->  0
        x >  c - 0.5 + (w - 1) / 2   ->  1
        otherwise                    ->  (x - (c - 0.5)) / (w - 1) + 0.5

    LINEAR_EXACT (C.11.2.1.3.2): ``(x - c) / w + 0.5`` clipped; SIGMOID (C.11.2.1.3.1):
    ``1 / (1 + exp(-4 (x - c) / w))``. Unknown functions are read as LINEAR.
    """
    x = np.asarray(values, dtype=np.float64)
    function = function.upper() if function else "LINEAR"
    if function == "SIGMOID" and width > 0:
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT" and width > 0:
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width <= 1:  # a width of 1 is a threshold at the centre
        return (x > center - 0.5).astype(np.float64)
    lower = center - 0.5 - (width - 1) / 2
    upper = center - 0.5 + (width - 1) / 2
    y = (x - (center - 0.5)) / (width - 1) + 0.5
    return np.where(x <= lower, 0.0, np.where(x > upper, 1.0, np.clip(y, 0.0, 1.0)))


def min_max(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Return ``values`` stretched so ``lo`` -> 0 and ``hi`` -> 1 (defaults: their min and max), float64.

    A constant input (``hi == lo``) maps to zeros rather than dividing by zero.
    """
    x = np.asarray(values, dtype=np.float64)
    lo = float(x.min()) if lo is None else lo
    hi = float(x.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
