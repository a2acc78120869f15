"""The protocol that lets the bootstrap score many resamples of a metric at once.

A metric function may carry a ``weighted`` attribute: ``fn.weighted(weights, *arrays, **kwargs)`` takes
sample weights ``(B, N)`` (how often each sample is drawn in each of B resamples) and returns the B
metric values ``(B,)``, NaN where undefined. It must equal calling ``fn`` on the resampled arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def supports_weights(weighted: Callable[..., Any]) -> Callable[[F], F]:
    """Return a decorator attaching ``weighted`` (the batched, sample-weighted form) to a metric."""

    def attach(fn: F) -> F:
        fn.weighted = weighted  # type: ignore[attr-defined]
        return fn

    return attach


def weighted_form(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """Return the batched, sample-weighted form of ``fn`` when it has one."""
    form = getattr(fn, "weighted", None)
    return form if callable(form) else None
