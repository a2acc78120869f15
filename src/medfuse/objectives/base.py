"""What every objective returns (:class:`LossOutput`), the loss registry, and small shared checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.core.registry import Registry

LOSSES: Registry = Registry("loss")


@dataclass
class LossOutput:
    """The result of an objective.

    total: () scalar to call ``backward`` on.
    parts: named () scalars for logging: the terms that make up ``total`` and diagnostics such as a
        temperature or an accuracy. Diagnostics are detached; terms keep their graph.
    """

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Return ``{"total": ..., **parts}`` as plain floats, for logging."""
        out = {"total": float(self.total.detach())}
        out.update({name: float(value.detach()) for name, value in self.parts.items()})
        return out


def as_loss_output(value: LossOutput | Tensor, *, where: str = "loss") -> LossOutput:
    """Return ``value`` as a :class:`LossOutput` (a scalar tensor becomes ``LossOutput(value, {})``)."""
    if isinstance(value, LossOutput):
        return value
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ConfigError(f"{where}: expected a scalar loss, got a tensor of shape {tuple(value.shape)}")
        return LossOutput(value, {})
    raise ConfigError(f"{where}: expected a LossOutput or a scalar tensor, got {type(value).__name__}")


def empty_loss(*tensors: Tensor) -> Tensor:
    """Return a () zero that stays connected to ``tensors``' graphs.

    Used when a batch has nothing to score (no masked token, no observed label): the loss is 0 and every
    parameter still receives a (zero) gradient, so distributed data parallel does not wait for a missing one.
    """
    zero = tensors[0].new_zeros(())
    for t in tensors:
        if t.is_floating_point():
            zero = zero + t.sum() * 0.0
    return zero


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor, *, where: str) -> None:
    """Raise :class:`ConfigError` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ConfigError(
            f"{where}: {name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must match"
        )


def check_ndim(name: str, value: Tensor, ndims: int | tuple[int, ...], *, where: str, shape: str) -> None:
    """Raise :class:`ConfigError` unless ``value.ndim`` is one of ``ndims`` (``shape`` says what is expected)."""
    allowed = (ndims,) if isinstance(ndims, int) else ndims
    if value.ndim not in allowed:
        raise ConfigError(f"{where}: {name} must have shape {shape}, got {tuple(value.shape)}")


def check_range(name: str, value: float, low: float, high: float, *, where: str) -> None:
    """Raise :class:`ConfigError` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ConfigError(f"{where}: {name}={value} is out of range; use a value in [{low}, {high}]")


def prefixed(prefix: str, parts: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return ``parts`` with each name prefixed ``"{prefix}/"``."""
    return {f"{prefix}/{name}": value for name, value in parts.items()}


def detached(value: Tensor | float, like: Tensor) -> Tensor:
    """Return ``value`` as a detached () tensor on ``like``'s device, for the diagnostic parts."""
    if isinstance(value, Tensor):
        return value.detach().reshape(())
    return torch.tensor(float(value), device=like.device)
