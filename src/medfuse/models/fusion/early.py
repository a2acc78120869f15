"""Early fusion: concatenate the modality features (and presence flags) and project them together."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import ModalityFusion, check_probability, make_activation


@FUSIONS.register("concat")
class ConcatFusion(ModalityFusion):
    """Early fusion: ``act(W [x_1 * p_1; ...; x_M * p_M; p_1..p_M] + b)`` over all modalities at once.

    The feature-level ("early") fusion of the taxonomy in Baltrušaitis, Ahuja & Morency, "Multimodal
    Machine Learning: A Survey and Taxonomy", IEEE TPAMI 2019 (Sec. 5.1): one layer sees every
    modality's raw features side by side. An absent modality contributes zeros, and its presence flag
    ``p_m`` (0/1) lets the layer tell "absent" from "all-zero features".

    Shapes: ``features[m]`` (B, D_m), ``mask[m]`` (B,) bool -> (B, dim).
    Parameters: ``(sum_m D_m + M) * dim + dim``.

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: fused size.
        activation: ``gelu`` | ``relu`` | ``silu`` | ``tanh`` | ``identity``.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self, input_dims: Mapping[str, int], dim: int, *, activation: str = "gelu", dropout: float = 0.0
    ) -> None:
        super().__init__(input_dims, dim)
        in_features = sum(self.input_dims.values()) + len(self.modalities)
        self.linear = nn.Linear(in_features, dim)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        inputs, present = self.gather(features, mask)
        joint = torch.cat([*inputs, present.to(inputs[0].dtype)], dim=1)
        return self.dropout(self.activation(self.linear(joint)))
