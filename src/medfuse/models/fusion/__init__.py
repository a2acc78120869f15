"""Fusion modules, one interface for all: ``Fusion(input_dims, dim, **params)(features, mask) -> (B, dim)``.

Importing this package registers every fusion in :data:`medfuse.models.base.FUSIONS`:

========================  =====================================================================
``concat``                early fusion: concatenated features + presence flags -> Linear
``weighted``              softmax-weighted sum of projected modalities (present ones only)
``gated``                 Gated Multimodal Unit (Arevalo et al. 2017) for M modalities
``tensor``                Tensor Fusion Network (Zadeh et al. 2017)
``low_rank``              Low-rank Multimodal Fusion (Liu et al. 2018)
``cross_attention``       token-level co-attention (ViLBERT, Lu et al. 2019); ``uses_tokens``
``hierarchical``          hybrid early + late fusion with learned gates
``late``                  decision-level fusion: ``mean`` | ``learned`` | ``stacking``
========================  =====================================================================

``mask[m]`` is ``(B,)`` bool, True where modality ``m`` is present; an absent modality cannot influence
the output. :class:`ModalityDropout` hides modalities at training time.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from medfuse.core.errors import ConfigError
from medfuse.core.registry import unknown_name_message
from medfuse.models.base import FUSIONS, Fusion
from medfuse.models.fusion._common import ModalityFusion, masked_softmax
from medfuse.models.fusion.attention import CoAttentionBlock, CrossAttentionFusion
from medfuse.models.fusion.dropout import ModalityDropout
from medfuse.models.fusion.early import ConcatFusion
from medfuse.models.fusion.gating import GatedFusion, WeightedFusion
from medfuse.models.fusion.hierarchical import HierarchicalFusion
from medfuse.models.fusion.late import LateFusion
from medfuse.models.fusion.tensor import LowRankFusion, TensorFusion


def fusion_params(name: str) -> list[str]:
    """Return the keyword parameters the fusion ``name`` accepts besides ``input_dims`` and ``dim``."""
    signature = inspect.signature(FUSIONS.get(name).__init__)
    return [p for p in signature.parameters if p not in ("self", "input_dims", "dim")]


def build_fusion(name: str, input_dims: Mapping[str, int], dim: int, **params: Any) -> Fusion:
    """Build the registered fusion ``name``; an unknown name or parameter fails with the close matches."""
    cls = FUSIONS.get(name)
    allowed = fusion_params(name)
    for key in params:
        if key not in allowed:
            raise ConfigError(f"fusion '{name}': {unknown_name_message('parameter', key, allowed)}")
    return cls(input_dims, dim, **params)


__all__ = [
    "FUSIONS",
    "CoAttentionBlock",
    "ConcatFusion",
    "CrossAttentionFusion",
    "GatedFusion",
    "HierarchicalFusion",
    "LateFusion",
    "LowRankFusion",
    "ModalityDropout",
    "ModalityFusion",
    "TensorFusion",
    "WeightedFusion",
    "build_fusion",
    "fusion_params",
    "masked_softmax",
]
