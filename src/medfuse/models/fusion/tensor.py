"""Multiplicative fusions: the full outer-product tensor (TFN) and its low-rank factorisation (LMF)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import (
    ModalityFusion,
    check_positive_int,
    check_probability,
    make_activation,
    zero_absent,
)

MAX_TENSOR_SIZE = 131_072  # prod_m (d_m + 1); beyond this the output layer alone is dim * 131k weights


def with_constant(values: Tensor) -> Tensor:
    """``[1, values]``: ``(B, d)`` -> ``(B, 1 + d)``."""
    return torch.cat([values.new_ones(values.shape[0], 1), values], dim=1)


@FUSIONS.register("tensor")
class TensorFusion(ModalityFusion):
    """Tensor Fusion Network: flattened outer product of ``[1, z_m]`` over modalities, then Linear.

    Zadeh, Chen, Poria, Cambria & Morency, "Tensor Fusion Network for Multimodal Sentiment Analysis",
    EMNLP 2017, Eq. 1: ``z^m = [z_1; z_2; z_3] = [1; z_l] (x) [1; z_v] (x) [1; z_a]``. Appending the
    constant 1 keeps every unimodal and lower-order interaction term inside the product. Each modality is
    first projected to a small ``d_m`` (``z_m = act(W_m x_m + b_m)``); an absent modality's vector becomes
    ``[1, 0, ..., 0]`` so only the constant survives, and the output depends on the present ones only.

    Shapes: ``features[m]`` (B, D_m) -> ``z_m`` (B, d_m) -> product (B, prod_m (d_m + 1)) -> (B, dim).
    Parameters (exactly): ``sum_m (D_m * d_m + d_m) + prod_m (d_m + 1) * dim + dim``.

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        hidden: ``d_m``, one int for all modalities or a mapping modality -> int.
        activation: applied after each projection and after the output layer.
        dropout: dropout on the flattened product.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        *,
        hidden: int | Mapping[str, int] = 8,
        activation: str = "gelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims, dim)
        self.hidden_dims = self._hidden_dims(hidden)
        size = math.prod(d + 1 for d in self.hidden_dims.values())
        if size > MAX_TENSOR_SIZE:
            raise ConfigError(
                f"hidden: the fused tensor would have {size} entries (prod of d_m + 1 over "
                f"{dict(self.hidden_dims)}), more than {MAX_TENSOR_SIZE}; use smaller hidden sizes "
                "or the 'low_rank' fusion"
            )
        self.projections = nn.ModuleDict(
            {name: nn.Linear(self.input_dims[name], d) for name, d in self.hidden_dims.items()}
        )
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.output = nn.Linear(size, dim)

    def _hidden_dims(self, hidden: int | Mapping[str, int]) -> dict[str, int]:
        if isinstance(hidden, Mapping):
            missing = [name for name in self.modalities if name not in hidden]
            extra = [name for name in hidden if name not in self.input_dims]
            if missing or extra:
                raise ConfigError(
                    f"hidden: needs exactly the modalities {list(self.modalities)}, got {list(hidden)}"
                )
            return {name: check_positive_int(f"hidden.{name}", hidden[name]) for name in self.modalities}
        return {name: check_positive_int("hidden", hidden) for name in self.modalities}

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, present = self.gather(features, mask)
        product: Tensor | None = None
        for index, (name, values) in enumerate(zip(self.modalities, inputs)):
            projected = zero_absent(self.activation(self.projections[name](values)), present[:, index])
            factor = with_constant(projected)  # (B, d_m + 1)
            product = factor if product is None else torch.einsum("bi,bj->bij", product, factor).flatten(1)
        assert product is not None  # at least one modality is guaranteed by the constructor
        return self.activation(self.output(self.dropout(product)))


@FUSIONS.register("low_rank")
class LowRankFusion(ModalityFusion):
    """Low-rank Multimodal Fusion: ``sum_r w_r prod_m ([1, x_m] @ W_m^(r)) + b``.

    Liu, Shen, Lakshminarasimhan, Liang, Zadeh & Morency, "Efficient Low-rank Multimodal Fusion with
    Modality-Specific Factors", ACL 2018, Eq. 6: the TFN weight tensor is factorised into ``r``
    modality-specific factors, so ``h = sum_{i=1}^r  w_i * ( prod_m  [1; x_m] W_m^(i) ) + b`` without
    ever building the outer product. The factors act on the raw features (no input projection), so an
    absent modality's input ``[1, 0, ..., 0]`` selects the constant row ``W_m^(i)[0]``; those rows start
    at 1 (the multiplicative identity) so that, at initialisation, a missing modality leaves the product
    of the others unchanged. No activation is applied to the output.

    Shapes: ``features[m]`` (B, D_m), factors ``W_m`` (r, D_m + 1, dim) -> per-modality (B, r, dim)
    -> product over modalities (B, r, dim) -> weighted sum over rank (B, dim).
    Parameters (exactly): ``sum_m r * (D_m + 1) * dim + r + dim``.

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        rank: number of rank-one terms ``r``.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self, input_dims: Mapping[str, int], dim: int, *, rank: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__(input_dims, dim)
        self.rank = check_positive_int("rank", rank)
        self.factors = nn.ParameterDict(
            {name: nn.Parameter(torch.empty(rank, size + 1, dim)) for name, size in self.input_dims.items()}
        )
        self.rank_weights = nn.Parameter(torch.empty(rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Constant rows 1, feature rows N(0, 1/D_m), rank weights 1/r, bias 0."""
        with torch.no_grad():
            for name, factor in self.factors.items():
                nn.init.normal_(factor, std=self.input_dims[name] ** -0.5)
                factor[:, 0, :] = 1.0
            self.rank_weights.fill_(1.0 / self.rank)
            self.bias.zero_()

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, _ = self.gather(features, mask)
        product: Tensor | None = None
        for name, values in zip(self.modalities, inputs):
            term = torch.einsum("bi,rid->brd", with_constant(values), self.factors[name])  # (B, r, dim)
            product = term if product is None else product * term
        assert product is not None  # at least one modality is guaranteed by the constructor
        fused = torch.einsum("r,brd->bd", self.rank_weights, product) + self.bias
        return self.dropout(fused)
