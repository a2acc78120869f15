"""The interfaces every model part implements, and the registries that hold them.

Batch contract (what datasets yield and models consume), all keys optional but ``index``:
  ``image``   (B, C, H, W) float32, normalised
  ``text``    list[str] or a tokenised mapping (``input_ids``, ``attention_mask``)
  ``vitals``  (B, F) float32, NaN where a value is missing
  ``signal``  (B, C, T) float32 waveforms;  ``audio`` (B, T) or (B, W, T) windows;  ``video`` (B, T, C, H, W)
  ``labels``  (B,) int64 for multi-class or (B, K) float32 multi-hot / regression targets
  ``present`` mapping modality -> (B,) bool, True where that modality exists for the sample
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medfuse.core.registry import Registry

ENCODERS: Registry = Registry("encoder")
FUSIONS: Registry = Registry("fusion")
HEADS: Registry = Registry("head")


@dataclass
class EncoderOutput:
    """What an encoder gives back.

    pooled: (B, D) one vector per sample.
    tokens: (B, N, D) per-token/patch features, or None when the encoder has none.
    token_mask: (B, N) bool, True for real (non-padding) tokens, or None when all are real.
    """

    pooled: Tensor
    tokens: Tensor | None = None
    token_mask: Tensor | None = None


class Encoder(nn.Module):
    """A modality encoder. Subclasses set ``output_dim`` and implement ``forward -> EncoderOutput``."""

    output_dim: int
    modality: str = ""

    def forward(self, inputs: object) -> EncoderOutput:  # pragma: no cover - interface
        raise NotImplementedError


class Fusion(nn.Module):
    """Combines per-modality features into one ``(B, D)`` vector.

    ``forward(features, mask)``: ``features[name]`` is ``(B, D_name)`` (or ``(B, N, D_name)`` for token-level
    fusions); ``mask[name]`` is ``(B,)`` bool, True where the modality is present for that sample. A modality
    marked absent must not influence the output. ``output_dim`` is declared.
    """

    output_dim: int

    def forward(
        self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None
    ) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def full_mask(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A mask marking every modality present."""
    return {k: torch.ones(v.shape[0], dtype=torch.bool, device=v.device) for k, v in features.items()}
