"""Hybrid fusion: a joint (early) representation and per-modality (late) representations, gated together."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import (
    ModalityFusion,
    check_probability,
    make_activation,
    make_projection,
    masked_softmax,
    zero_absent,
)


@FUSIONS.register("hierarchical")
class HierarchicalFusion(ModalityFusion):
    """Hybrid early + late fusion: ``sum_k g_k r_k`` over a joint vector and per-modality vectors.

    The hybrid fusion of Baltrušaitis, Ahuja & Morency, "Multimodal Machine Learning: A Survey and
    Taxonomy", IEEE TPAMI 2019 (Sec. 5.1), and of the fusion-strategy review of Huang, Pareek, Seyyedi,
    Banerjee & Lungren, "Fusion of medical imaging and electronic health records using deep learning",
    npj Digital Medicine 2020: two levels of representation are combined.

    - early: ``r_0 = act(W_0 [x_1 * p_1; ...; x_M * p_M; p] + b_0)`` sees all modalities jointly;
    - late: ``r_m = act(W_m x_m + b_m)`` for each present modality;
    - gates: ``g = softmax(W_g [x_1 * p_1; ...; p] + b_g)`` over ``M + 1`` entries, restricted to the
      present modalities (and to the joint vector when any modality is present).

    A sample with no modality present fuses to zeros.

    Shapes: ``features[m]`` (B, D_m), ``mask[m]`` (B,) bool -> levels (B, M + 1, dim) -> (B, dim).
    Parameters: ``(S + M) * dim + dim + sum_m (D_m * dim + dim) + (S + M) * (M + 1) + M + 1`` with
    ``S = sum_m D_m`` (plus ``2 D_m`` per modality with ``norm``).

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        activation: activation of the joint and per-modality representations.
        norm: LayerNorm each modality's features before its own projection.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        *,
        activation: str = "gelu",
        norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims, dim)
        joint_size = sum(self.input_dims.values()) + len(self.modalities)
        self.joint = nn.Sequential(nn.Linear(joint_size, dim), make_activation(activation))
        self.unimodal = nn.ModuleDict(
            {
                name: nn.Sequential(make_projection(size, dim, norm=norm), make_activation(activation))
                for name, size in self.input_dims.items()
            }
        )
        self.gate = nn.Linear(joint_size, len(self.modalities) + 1)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def levels(self, inputs: list[Tensor], present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the representations (B, M + 1, dim), their availability (B, M + 1) and the gates."""
        joint_input = torch.cat([*inputs, present.to(inputs[0].dtype)], dim=1)
        available = torch.cat([present.any(dim=1, keepdim=True), present], dim=1)
        representations = [self.joint(joint_input)] + [
            self.unimodal[name](values) for name, values in zip(self.modalities, inputs)
        ]
        stacked = torch.stack(
            [zero_absent(rep, available[:, index]) for index, rep in enumerate(representations)], dim=1
        )
        gates = masked_softmax(self.gate(joint_input), available, dim=1)
        return stacked, available, gates

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, present = self.gather(features, mask)
        stacked, _, gates = self.levels(inputs, present)
        return self.dropout((gates.unsqueeze(-1) * stacked).sum(dim=1))
