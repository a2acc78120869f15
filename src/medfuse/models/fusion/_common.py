"""Shared plumbing of the fusion modules: argument checks, presence masks and masked reductions.

Every fusion zeroes an absent modality's features with ``torch.where`` before any arithmetic touches
them, so the values of absent features (even NaN or inf) cannot reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import Fusion

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_activation(name: str, field: str = "activation") -> nn.Module:
    """Return a fresh activation module named ``name`` (one of :data:`ACTIVATIONS`)."""
    check_choice(field, name, list(ACTIVATIONS))
    return ACTIVATIONS[name]()


def check_positive_int(field: str, value: object) -> int:
    """Return ``value`` when it is an int >= 1, else raise :class:`ConfigError` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: expected an integer >= 1, got {value!r}")
    return value


def check_probability(field: str, value: object, *, allow_one: bool = False) -> float:
    """Return ``value`` as a float in ``[0, 1)`` (``[0, 1]`` with ``allow_one``), else raise."""
    bound = "[0, 1]" if allow_one else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field}: expected a probability in {bound}, got {value!r}")
    number = float(value)
    if not (0.0 <= number < 1.0 or (allow_one and number == 1.0)):
        raise ConfigError(f"{field}: expected a probability in {bound}, got {value!r}")
    return number


def make_projection(in_dim: int, out_dim: int, *, norm: bool = False) -> nn.Module:
    """``Linear(in_dim, out_dim)``, preceded by ``LayerNorm(in_dim)`` when ``norm`` is set."""
    linear = nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.LayerNorm(in_dim), linear) if norm else linear


def masked_softmax(logits: Tensor, present: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``logits`` over the entries where ``present`` is True; zeros elsewhere.

    ``present`` broadcasts against ``logits``. A slice with no present entry gives all zeros (not NaN),
    and the logits of absent entries never reach the result or its gradient.
    """
    present = present.expand_as(logits)
    filled = logits.masked_fill(~present, float("-inf"))
    any_present = present.any(dim=dim, keepdim=True)
    filled = torch.where(any_present, filled, torch.zeros_like(filled))
    return torch.where(present, torch.softmax(filled, dim=dim), torch.zeros_like(filled))


def zero_absent(values: Tensor, present: Tensor) -> Tensor:
    """``values`` (B, ...) with the rows of absent samples (``present`` (B,) False) set to exact zeros."""
    shape = (present.shape[0],) + (1,) * (values.dim() - 1)
    return torch.where(present.view(shape), values, torch.zeros((), dtype=values.dtype, device=values.device))


class ModalityFusion(Fusion):
    """Base of the vector-level fusions: checks ``input_dims``/``dim`` and prepares masked inputs.

    Subclasses call :meth:`gather` in ``forward`` to receive the features in :attr:`modalities` order,
    each ``(B, D_m)`` with absent rows zeroed, and the presence matrix ``(B, M)`` bool.
    """

    uses_tokens: bool = False
    min_modalities: int = 1

    def __init__(self, input_dims: Mapping[str, int], dim: int) -> None:
        super().__init__()
        if not isinstance(input_dims, Mapping) or len(input_dims) < self.min_modalities:
            raise ConfigError(
                f"input_dims: {type(self).__name__} needs a mapping of at least {self.min_modalities} "
                f"modality name(s) to feature sizes, got {input_dims!r}"
            )
        for name, size in input_dims.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ConfigError(
                    f"input_dims: modality names must be non-empty strings without '.', got {name!r}"
                )
            check_positive_int(f"input_dims.{name}", size)
        self.input_dims: dict[str, int] = dict(input_dims)
        self.modalities: tuple[str, ...] = tuple(input_dims)
        self.output_dim = check_positive_int("dim", dim)

    def presence(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None) -> Tensor:
        """Return the ``(B, M)`` bool presence matrix in :attr:`modalities` order.

        A modality missing from ``features`` is absent for every sample; one in ``features`` but not in
        ``mask`` (or ``mask`` None) is present for every sample.
        """
        unknown = [k for k in features if k not in self.input_dims]
        if mask is not None:
            unknown += [k for k in mask if k not in self.input_dims and k not in unknown]
        if unknown:
            raise ValueError(
                f"unknown modality {unknown[0]!r}; this fusion was built for: {', '.join(self.modalities)}"
            )
        if not any(name in features for name in self.modalities):
            raise ValueError(f"features hold none of the modalities {', '.join(self.modalities)}")
        first = next(features[name] for name in self.modalities if name in features)
        batch, device = first.shape[0], first.device
        columns = []
        for name in self.modalities:
            if name not in features:
                columns.append(torch.zeros(batch, dtype=torch.bool, device=device))
                continue
            if features[name].shape[0] != batch:
                raise ValueError(
                    f"features[{name!r}] has batch size {features[name].shape[0]}, expected {batch}"
                )
            if mask is None or name not in mask:
                columns.append(torch.ones(batch, dtype=torch.bool, device=device))
                continue
            column = mask[name]
            if column.shape != (batch,):
                raise ValueError(f"mask[{name!r}] must have shape ({batch},), got {tuple(column.shape)}")
            columns.append(column.to(device=device, dtype=torch.bool))
        return torch.stack(columns, dim=1)

    def gather(
        self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None
    ) -> tuple[list[Tensor], Tensor]:
        """Return the ``(B, D_m)`` features (absent rows zeroed) in modality order and the ``(B, M)`` mask."""
        present = self.presence(features, mask)
        template = next(features[name] for name in self.modalities if name in features)
        inputs = []
        for index, name in enumerate(self.modalities):
            size = self.input_dims[name]
            if name not in features:
                inputs.append(template.new_zeros(present.shape[0], size))
                continue
            values = features[name]
            if values.dim() != 2 or values.shape[1] != size:
                hint = "; pool token features to one vector per sample first" if values.dim() == 3 else ""
                raise ValueError(
                    f"features[{name!r}] must have shape (B, {size}), got {tuple(values.shape)}{hint}"
                )
            inputs.append(zero_absent(values, present[:, index]))
        return inputs, present
