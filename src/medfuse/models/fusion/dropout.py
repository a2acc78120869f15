"""Modality dropout: hide whole modalities at training time so fusions learn to cope with missing ones."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from medfuse.models.fusion._common import check_probability


class ModalityDropout(nn.Module):
    """Randomly marks present modalities absent per sample (training only), keeping at least one.

    Modality dropout as in Neverova, Wolf, Taylor & Nebout, "ModDrop: Adaptive Multi-modal Gesture
    Recognition", IEEE TPAMI 2016: each present modality of each sample is dropped independently with
    probability ``p``; when that would drop every present modality of a sample, one of them, chosen
    uniformly, is kept (so the realised drop rate is slightly below ``p``). Absent modalities stay
    absent, samples with none present are left as they are. In eval mode the mask is returned unchanged.

    Shapes: ``mask[m]`` (B,) bool (True = present) -> same keys and shapes.

    Args:
        p: drop probability per present modality and sample, in ``[0, 1)``.
        generator: optional ``torch.Generator`` for reproducible draws (its device is used for sampling).
    """

    def __init__(self, p: float = 0.25, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check_probability("p", p)
        self.generator = generator

    def _uniform(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        sample_device = self.generator.device if self.generator is not None else device
        return torch.rand(shape, generator=self.generator, device=sample_device).to(device)

    def forward(self, mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Return a new mask dict with some present modalities marked absent (training mode only)."""
        names = list(mask)
        if not self.training or self.p == 0.0 or not names:
            return {name: mask[name] for name in names}
        present = torch.stack([mask[name].to(torch.bool) for name in names], dim=1)  # (B, M)
        if present.dim() != 2:
            raise ValueError(f"every mask entry must have shape (B,), got {tuple(mask[names[0]].shape)}")
        drop = self._uniform(tuple(present.shape), present.device) < self.p
        kept = present & ~drop
        emptied = present.any(dim=1) & ~kept.any(dim=1)
        # One uniformly chosen present modality survives in the rows that would lose them all.
        scores = self._uniform(tuple(present.shape), present.device).masked_fill(~present, -1.0)
        rescue = torch.zeros_like(present).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
        kept = kept | (rescue & emptied.unsqueeze(1))
        return {name: kept[:, index] for index, name in enumerate(names)}

    def extra_repr(self) -> str:
        return f"p={self.p}"
