"""CLIP-style dual encoder: image tower + text tower + projections into one embedding space.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (CLIP), ICML 2021;
with ``init_logit_bias`` set (e.g. ``-10`` and ``init_logit_scale=log(10)``) it carries the learnable bias of
Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (SigLIP), ICCV 2023.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import Encoder, EncoderOutput

PROJECTIONS = ("linear", "mlp", "none")


@dataclass
class DualEncoderOutput:
    """What :class:`DualEncoder` gives back.

    image_embeds: (B, E) L2-normalised image embeddings.
    text_embeds: (B, E) L2-normalised text embeddings.
    logit_scale: () the multiplicative scale ``min(exp(s), max_logit_scale)`` (already exponentiated).
    logit_bias: () the additive SigLIP bias, or None.
    image_output, text_output: the towers' raw outputs (pooled and token features before projection).
    """

    image_embeds: Tensor
    text_embeds: Tensor
    logit_scale: Tensor
    logit_bias: Tensor | None = None
    image_output: EncoderOutput | None = None
    text_output: EncoderOutput | None = None


def make_projection(kind: str, in_dim: int, embed_dim: int) -> nn.Module:
    """Return a projection ``(B, in_dim) -> (B, embed_dim)``.

    ``linear``: bias-free Linear (CLIP); ``mlp``: Linear-GELU-Linear with hidden width ``in_dim``
    (SimCLR's projection head, Chen et al. 2020); ``none``: identity (needs ``in_dim == embed_dim``).
    """
    check_choice("projection", kind, PROJECTIONS)
    if kind == "linear":
        return nn.Linear(in_dim, embed_dim, bias=False)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, embed_dim))
    if in_dim != embed_dim:
        raise ConfigError(f"projection: 'none' needs the tower size {in_dim} to equal embed_dim {embed_dim}")
    return nn.Identity()


class DualEncoder(nn.Module):
    """Image and text towers projected to a shared ``E``-dimensional space.

    Args:
        image_encoder: maps ``(B, C, H, W)`` to an :class:`EncoderOutput` with pooled ``(B, D_i)``.
        text_encoder: maps ``list[str]`` or token tensors to pooled ``(B, D_t)``.
        embed_dim: ``E``.
        projection: ``linear`` | ``mlp`` | ``none`` (see :func:`make_projection`).
        init_logit_scale: initial ``s`` (the log of the inverse temperature); CLIP uses ``log(1/0.07)``.
        init_logit_bias: initial SigLIP bias (None: no bias parameter).
        max_logit_scale: upper clamp of ``exp(s)`` (CLIP: 100).
        image_key, text_key: the batch keys read by :meth:`forward`.
    """

    def __init__(
        self,
        image_encoder: Encoder,
        text_encoder: Encoder,
        embed_dim: int = 256,
        *,
        projection: str = "linear",
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float | None = None,
        max_logit_scale: float = 100.0,
        image_key: str = "image",
        text_key: str = "text",
    ) -> None:
        super().__init__()
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ConfigError(f"embed_dim: expected an integer >= 1, got {embed_dim!r}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_projection = make_projection(projection, image_encoder.output_dim, embed_dim)
        self.text_projection = make_projection(projection, text_encoder.output_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias))) if init_logit_bias is not None else None
        self.embed_dim = embed_dim
        self.max_logit_scale = max_logit_scale
        self.image_key = image_key
        self.text_key = text_key

    def named_encoders(self) -> dict[str, Encoder]:
        """Return the towers by their config names: ``{"image": ..., "text": ...}``."""
        return {"image": self.image_encoder, "text": self.text_encoder}

    def _project_image(self, images: Tensor, normalize: bool) -> tuple[Tensor, EncoderOutput]:
        out = self.image_encoder(images)
        embeds = self.image_projection(out.pooled)
        return (F.normalize(embeds, dim=-1) if normalize else embeds), out

    def _project_text(self, texts: Any, normalize: bool, prefix: Tensor | None) -> tuple[Tensor, EncoderOutput]:
        out = self.text_encoder(texts) if prefix is None else self.text_encoder(texts, prefix=prefix)
        embeds = self.text_projection(out.pooled)
        return (F.normalize(embeds, dim=-1) if normalize else embeds), out

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        """Return image embeddings ``(B, E)``, L2-normalised unless ``normalize=False``."""
        return self._project_image(images, normalize)[0]

    def encode_text(self, texts: Any, normalize: bool = True, prefix: Tensor | None = None) -> Tensor:
        """Return text embeddings ``(B, E)`` for ``list[str]`` or token tensors (optional prompt ``prefix`` (P, D))."""
        return self._project_text(texts, normalize, prefix)[0]

    def scale(self) -> Tensor:
        """Return the () multiplicative logit scale ``min(exp(logit_scale), max_logit_scale)``."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(self, batch: Mapping[str, Any]) -> DualEncoderOutput:
        """Return normalised image and text embeddings ``(B, E)`` and the logit scale/bias of a batch."""
        for key in (self.image_key, self.text_key):
            if key not in batch:
                raise KeyError(f"the batch has no '{key}'; a dual encoder needs both '{self.image_key}' and '{self.text_key}'")
        image_embeds, image_out = self._project_image(batch[self.image_key], True)
        text_embeds, text_out = self._project_text(batch[self.text_key], True, None)
        return DualEncoderOutput(
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            logit_scale=self.scale(),
            logit_bias=self.logit_bias,
            image_output=image_out,
            text_output=text_out,
        )

    def similarity(self, images: Tensor, texts: Any) -> Tensor:
        """Return ``(B_i, B_t)`` logits ``scale * <image, text> (+ bias)``."""
        logits = self.scale() * self.encode_image(images) @ self.encode_text(texts).T
        return logits + self.logit_bias if self.logit_bias is not None else logits
