"""Explanations: Grad-CAM and attention rollout for image towers, token attributions for text, and
per-modality contributions (occlusion and exact Shapley values) for fusion models.

- Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017): ``L = ReLU(sum_k a_k A^k)`` with ``a_k`` the spatial mean of
  ``d y_c / d A^k`` over the last convolutional feature map ``A`` of a timm CNN.
- Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020): per
  layer ``0.5 * A + 0.5 * I`` (head-averaged attention plus the residual), rows renormalised, multiplied
  through the layers; the class token's row over the patches is the map.
- Gradient x input (Shrikumar et al. 2016; Denil et al. 2014) on the text encoder's input embeddings,
  summed over the hidden dimension, one score per token.
- Shapley values over modalities (Shapley 1953): exact enumeration of the subsets of the present
  modalities; they sum to ``f(all) - f(none)``.
"""

from __future__ import annotations

from medfuse.evaluate.explain.attribution import (
    MAX_SHAPLEY_MODALITIES,
    ModalityAttribution,
    TokenAttribution,
    modality_contributions,
    token_attributions,
    token_strings,
)
from medfuse.evaluate.explain.image import Rollout, SaliencyMap, attention_rollout, grad_cam, saliency_gallery
from medfuse.evaluate.explain.visual import jet, overlay, png_base64

__all__ = [
    "MAX_SHAPLEY_MODALITIES",
    "ModalityAttribution",
    "Rollout",
    "SaliencyMap",
    "TokenAttribution",
    "attention_rollout",
    "grad_cam",
    "jet",
    "modality_contributions",
    "overlay",
    "png_base64",
    "saliency_gallery",
    "token_attributions",
    "token_strings",
]
