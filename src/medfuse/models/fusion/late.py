"""Late (decision-level) fusion: one head per modality, decisions combined over the present modalities."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.models.base import FUSIONS
from medfuse.models.fusion._common import (
    ModalityFusion,
    check_positive_int,
    check_probability,
    make_activation,
    make_projection,
    masked_softmax,
    zero_absent,
)

LATE_MODES = ("mean", "learned", "stacking")


@FUSIONS.register("late")
class LateFusion(ModalityFusion):
    """Late fusion: per-modality heads give ``dim``-sized decisions, combined over present modalities.

    Decision-level ("late") fusion in the taxonomy of Baltrušaitis, Ahuja & Morency, "Multimodal Machine
    Learning: A Survey and Taxonomy", IEEE TPAMI 2019 (Sec. 5.1), with a learned (stacked) combiner as in
    Wolpert, "Stacked Generalization", Neural Networks 1992. Each modality has its own small head
    ``d_m = W2_m act(W1_m x_m)`` of size ``dim``; since the fused vector is passed on to a task head,
    late fusion here combines per-modality representations in that shared decision space:

    - ``mean``: ``sum_m p_m d_m / sum_m p_m`` (renormalised over the present modalities);
    - ``learned``: ``sum_m softmax(w)_m d_m`` with one learned logit per modality, softmax over the
      present ones;
    - ``stacking``: ``MLP([d_1 * p_1; ...; d_M * p_M; p])``, absent decisions zeroed, flags appended.

    ``mean`` and ``learned`` fuse a sample with no modality present to zeros; ``stacking`` to the MLP's
    response to all-zero input. :meth:`modality_decisions` exposes the per-modality decisions for
    auxiliary per-modality losses.

    Shapes: ``features[m]`` (B, D_m), ``mask[m]`` (B,) bool -> decisions (B, M, dim) -> (B, dim).

    Args:
        input_dims: modality name -> feature size ``D_m``.
        dim: decision (and fused) size.
        mode: ``mean`` | ``learned`` | ``stacking``.
        hidden: hidden width of each modality head and of the stacking MLP (default ``dim``).
        activation: activation inside the heads and the stacking MLP.
        norm: LayerNorm each modality's features at the start of its head.
        dropout: dropout on the fused vector.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        dim: int,
        *,
        mode: str = "mean",
        hidden: int | None = None,
        activation: str = "gelu",
        norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_dims, dim)
        check_choice("mode", mode, list(LATE_MODES))
        self.mode = mode
        width = check_positive_int("hidden", dim if hidden is None else hidden)
        count = len(self.modalities)
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    make_projection(size, width, norm=norm),
                    make_activation(activation),
                    nn.Linear(width, dim),
                )
                for name, size in self.input_dims.items()
            }
        )
        self.logits: nn.Parameter | None = nn.Parameter(torch.zeros(count)) if mode == "learned" else None
        self.stacker: nn.Module | None = (
            nn.Sequential(
                nn.Linear(count * dim + count, width), make_activation(activation), nn.Linear(width, dim)
            )
            if mode == "stacking"
            else None
        )
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    def modality_decisions(
        self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return the per-modality decisions (B, M, dim), zero where absent, and the (B, M) presence."""
        inputs, present = self.gather(features, mask)
        decisions = torch.stack(
            [
                zero_absent(self.heads[name](values), present[:, index])
                for index, (name, values) in enumerate(zip(self.modalities, inputs))
            ],
            dim=1,
        )
        return decisions, present

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> Tensor:
        """Return the fused ``(B, dim)`` vector."""
        decisions, present = self.modality_decisions(features, mask)
        weights_dtype = decisions.dtype
        if self.stacker is not None:
            stacked = torch.cat([decisions.flatten(1), present.to(weights_dtype)], dim=1)
            return self.dropout(self.stacker(stacked))
        if self.logits is not None:
            weights = masked_softmax(self.logits.expand(present.shape[0], -1), present, dim=1)
        else:
            counts = present.sum(dim=1, keepdim=True).clamp(min=1).to(weights_dtype)
            weights = present.to(weights_dtype) / counts
        return self.dropout((weights.unsqueeze(-1) * decisions).sum(dim=1))
