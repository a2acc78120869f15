"""Fusions that project each modality to ``dim`` and take a weighted sum over the present ones."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import (
    ModalityFusion,
    check_probability,
    make_projection,
    masked_softmax,
    zero_absent,
)


@FUSIONS.register("weighted")
class WeightedFusion(ModalityFusion):
    """Weighted sum of projected modalities, ``sum_m softmax(w)_m W_m x_m`` over present modalities.

    One learned scalar logit per modality; the softmax runs over the modalities present in each sample,
    so the weights are renormalised per sample (a form of the weighted-mean score fusion reviewed by
    Baltrušaitis et al., "Multimodal Machine Learning: A Survey and Taxonomy", IEEE TPAMI 2019).
    A sample with no modality present fuses to zeros.

    Shapes: ``features[m]`` (B, D_m), ``mask[m]`` (B,) bool -> (B, dim).
    Parameters: ``sum_m (D_m * dim + dim) + M`` (plus ``2 D_m`` per modality with ``norm``).

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        norm: LayerNorm each modality's features before its projection.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self, input_dims: Mapping[str, int], dim: int, *, norm: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__(input_dims, dim)
        self.projections = nn.ModuleDict(
            {name: make_projection(size, dim, norm=norm) for name, size in self.input_dims.items()}
        )
        self.logits = nn.Parameter(torch.zeros(len(self.modalities)))
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def modality_weights(self, present: Tensor) -> Tensor:
        """Return the ``(B, M)`` weights for a ``(B, M)`` presence matrix (rows sum to 1 or 0)."""
        return masked_softmax(self.logits.expand(present.shape[0], -1), present, dim=1)

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, present = self.gather(features, mask)
        projected = torch.stack(
            [
                zero_absent(self.projections[name](values), present[:, index])
                for index, (name, values) in enumerate(zip(self.modalities, inputs))
            ],
            dim=1,
        )  # (B, M, dim)
        weights = self.modality_weights(present)
        return self.dropout((weights.unsqueeze(-1) * projected).sum(dim=1))


@FUSIONS.register("gated")
class GatedFusion(ModalityFusion):
    """Gated Multimodal Unit for M modalities: ``sum_m z_m * tanh(W_m x_m)``, gates from all inputs.

    Arevalo, Solorio, Montes-y-Gómez & González, "Gated Multimodal Units for Information Fusion",
    ICLR Workshop 2017: ``h_m = tanh(W_m x_m)``, ``z = sigma(W_z [x_1; x_2])``,
    ``h = z * h_1 + (1 - z) * h_2``. Here the gate logits ``W_z [x_1 * p_1; ...; x_M * p_M; p]`` give
    one logit per modality and output unit, ``(B, M, dim)``. With ``gate="softmax"`` the gates are a
    softmax over the present modalities per unit, which for two modalities is exactly the GMU
    (``softmax(a, b)_1 = sigma(a - b)``); with ``gate="sigmoid"`` each modality gets an independent gate
    in (0, 1). Absent modalities get gate 0; a sample with none present fuses to zeros.

    Shapes: ``features[m]`` (B, D_m), ``mask[m]`` (B,) bool -> (B, dim).
    Parameters: ``sum_m (D_m * dim + dim) + (sum_m D_m + M) * M * dim + M * dim``.

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        gate: ``softmax`` (over present modalities) or ``sigmoid`` (independent per modality).
        norm: LayerNorm each modality's features before its projection.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        *,
        gate: str = "softmax",
        norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims, dim)
        check_choice("gate", gate, ["softmax", "sigmoid"])
        self.gate_kind = gate
        count = len(self.modalities)
        self.projections = nn.ModuleDict(
            {name: make_projection(size, dim, norm=norm) for name, size in self.input_dims.items()}
        )
        self.gate = nn.Linear(sum(self.input_dims.values()) + count, count * dim)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def gates(self, inputs: list[Tensor], present: Tensor) -> Tensor:
        """Return the ``(B, M, dim)`` gates for masked inputs and the ``(B, M)`` presence matrix."""
        joint = torch.cat([*inputs, present.to(inputs[0].dtype)], dim=1)
        logits = self.gate(joint).view(present.shape[0], len(self.modalities), self.output_dim)
        available = present.unsqueeze(-1)
        if self.gate_kind == "softmax":
            return masked_softmax(logits, available, dim=1)
        return torch.where(available, torch.sigmoid(logits), torch.zeros_like(logits))

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, present = self.gather(features, mask)
        hidden = torch.stack(
            [
                zero_absent(torch.tanh(self.projections[name](values)), present[:, index])
                for index, (name, values) in enumerate(zip(self.modalities, inputs))
            ],
            dim=1,
        )  # (B, M, dim)
        return self.dropout((self.gates(inputs, present) * hidden).sum(dim=1))
