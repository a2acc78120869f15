"""Projectors: image tokens ``(B, N, D_img)`` -> language-model input vectors ``(B, Q, D_lm)``.

``linear``  one linear map per token (LLaVA, Liu et al., "Visual Instruction Tuning", NeurIPS 2023); Q = N.
``mlp``     Linear-GELU-Linear per token (LLaVA-1.5, Liu et al., "Improved Baselines with Visual
            Instruction Tuning", CVPR 2024); Q = N.
``qformer`` ``num_queries`` learned queries that read the image tokens through cross-attention, a small
            Querying Transformer as in BLIP-2 (Li et al., "BLIP-2: Bootstrapping Language-Image Pre-training
            with Frozen Image Encoders and Large Language Models", ICML 2023); Q = ``num_queries`` whatever N
            is, so the language model's sequence stays short for large images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.core.registry import Registry

PROJECTORS: Registry = Registry("projector")


class Projector(nn.Module):
    """Maps image tokens to language-model vectors; ``num_tokens(n)`` gives Q for N input tokens."""

    in_dim: int
    out_dim: int

    def num_tokens(self, n_image_tokens: int) -> int:
        """Return how many vectors the projector gives for ``n_image_tokens`` input tokens."""
        return n_image_tokens

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@PROJECTORS.register("linear")
class LinearProjector(Projector):
    """One linear map per token: ``(B, N, D_img) -> (B, N, D_lm)`` (LLaVA)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return ``(B, N, D_lm)``; ``mask`` is unused (every token keeps its slot)."""
        return self.proj(tokens)


@PROJECTORS.register("mlp")
class MLPProjector(Projector):
    """Linear-GELU-Linear per token: ``(B, N, D_img) -> (B, N, D_lm)`` (LLaVA-1.5's ``mlp2x_gelu``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        width = hidden or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, out_dim))

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return ``(B, N, D_lm)``; ``mask`` is unused (every token keeps its slot)."""
        return self.net(tokens)


class _QueryBlock(nn.Module):
    """Pre-norm block: queries attend to each other, then to the image tokens, then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(width)
        self.norm_image = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))

    def forward(self, queries: Tensor, image: Tensor, pad: Tensor | None) -> Tensor:
        q = self.norm_self(queries)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        kv = self.norm_image(image)
        queries = queries + self.cross_attn(self.norm_cross(queries), kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))


@PROJECTORS.register("qformer")
class QFormerProjector(Projector):
    """Learned queries reading the image through cross-attention: ``(B, N, D_img) -> (B, Q, D_lm)`` (BLIP-2).

    Args:
        in_dim, out_dim: image token and language-model widths.
        num_queries: Q, the number of learned queries (BLIP-2 uses 32).
        width: the query transformer's width (default: ``out_dim`` capped at 512, rounded to ``heads``).
        layers, heads, mlp_ratio, dropout: its size.
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 32, width: int | None = None, layers: int = 2,
                 heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if num_queries < 1:
            raise ConfigError(f"num_queries: expected >= 1, got {num_queries}")
        if layers < 1:
            raise ConfigError(f"projector_params.layers: expected >= 1, got {layers}")
        width = width or max(heads, min(out_dim, 512) // heads * heads)
        if width % heads:
            raise ConfigError(f"projector_params.width: {width} is not divisible by heads={heads}")
        self.in_dim, self.out_dim, self.num_queries = in_dim, out_dim, num_queries
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)
        self.image_in = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(_QueryBlock(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_dim)

    def num_tokens(self, n_image_tokens: int) -> int:
        """Return Q: the learned queries, whatever the number of image tokens."""
        return self.num_queries

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return ``(B, Q, D_lm)``; ``mask`` ``(B, N)`` is True for real image tokens (padding is not read)."""
        image = self.image_in(tokens)
        queries = self.queries.to(image.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        pad = None if mask is None else ~mask.bool()
        for block in self.blocks:
            queries = block(queries, image, pad)
        return self.out(self.norm(queries))


def build_projector(kind: str, in_dim: int, out_dim: int, num_queries: int = 32, **params: Any) -> Projector:
    """Return the registered projector ``kind`` from ``in_dim`` to ``out_dim``; unknown names list the known ones."""
    cls = PROJECTORS.get(kind)
    if kind == "qformer":
        params["num_queries"] = num_queries
    try:
        return cls(in_dim, out_dim, **params)
    except TypeError as exc:
        raise ConfigError(f"projector_params: projector '{kind}' refused {sorted(params)}: {exc}") from None


__all__ = ["PROJECTORS", "LinearProjector", "MLPProjector", "Projector", "QFormerProjector", "build_projector"]
