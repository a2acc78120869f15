"""Geometry of a joint embedding space: pair similarities, modality gap, alignment and uniformity.

All functions L2-normalise the embeddings first (points on the unit hypersphere) and take paired
matrices: row i of ``image_emb`` and row i of ``text_emb`` describe the same sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics._registry import METRICS


def _unit(values: Any, name: str) -> torch.Tensor:
    """Return ``values`` ``(N, D)`` as float64 rows of unit length."""
    tensor = values.detach().cpu() if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    tensor = tensor.to(torch.float64)
    if tensor.ndim != 2 or len(tensor) == 0:
        raise DataError(f"{name} must be a non-empty (N, D) matrix, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return torch.nn.functional.normalize(tensor, dim=1)


def _pair(image_emb: Any, text_emb: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return both matrices normalised, after checking they pair row by row (same shape)."""
    a, b = _unit(image_emb, "image_emb"), _unit(text_emb, "text_emb")
    if a.shape != b.shape:
        raise DataError(
            f"paired embeddings must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def positive_pair_similarity(image_emb: Any, text_emb: Any) -> float:
    """Return the mean cosine similarity of matched pairs, mean_i cos(a_i, b_i). Inputs (N, D)."""
    a, b = _pair(image_emb, text_emb)
    return float((a * b).sum(dim=1).mean())


def random_pair_similarity(image_emb: Any, text_emb: Any) -> float:
    """Return the mean cosine similarity over all mismatched pairs, mean_{i != j} cos(a_i, b_j).

    Exact, without sampling: (sum_i a_i . sum_j b_j - sum_i a_i . b_i) / (N (N - 1)). Inputs (N, D), N >= 2.
    """
    a, b = _pair(image_emb, text_emb)
    n = len(a)
    if n < 2:
        raise DataError("random pairs need at least two samples")
    total = a.sum(dim=0) @ b.sum(dim=0)
    return float((total - (a * b).sum()) / (n * (n - 1)))


@METRICS.register("modality_gap")
def modality_gap(image_emb: Any, text_emb: Any) -> float:
    """Return the distance between the centroids of the normalised embeddings of two modalities.

    ||mean_i a_i - mean_j b_j||_2 (Liang et al. 2022, "Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS). image_emb (N, D), text_emb (M, D).
    """
    a, b = _unit(image_emb, "image_emb"), _unit(text_emb, "text_emb")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"embedding sizes differ: {a.shape[1]} and {b.shape[1]}")
    return float(torch.linalg.vector_norm(a.mean(dim=0) - b.mean(dim=0)))


@METRICS.register("alignment")
def alignment(image_emb: Any, text_emb: Any, *, alpha: float = 2.0) -> float:
    """Return the alignment loss E ||a_i - b_i||^alpha over positive pairs (lower is better).

    Wang & Isola (2020), "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML, eq. (2). Inputs (N, D).
    """
    a, b = _pair(image_emb, text_emb)
    return float(torch.linalg.vector_norm(a - b, dim=1).pow(alpha).mean())


@METRICS.register("uniformity")
def uniformity(embeddings: Any, *, t: float = 2.0, max_block: int = 4096) -> float:
    """Return the uniformity loss log E_{i < j} exp(-t ||x_i - x_j||^2) (lower is more uniform).

    Wang & Isola (2020), eq. (3). embeddings: (N, D), N >= 2. Computed over blocks of ``max_block`` rows
    with a log-sum-exp, so memory stays at max_block x N.
    """
    x = _unit(embeddings, "embeddings")
    n = len(x)
    if n < 2:
        raise DataError("uniformity needs at least two embeddings")
    if max_block < 1:
        raise ConfigError(f"max_block must be positive, got {max_block}")
    partial = []
    for start in range(0, n, max_block):
        rows = x[start : start + max_block]
        squared = (2.0 - 2.0 * rows @ x.T).clamp_min(0.0)  # |x_i - x_j|^2 for unit vectors
        index = torch.arange(start, start + len(rows))[:, None]
        upper = torch.arange(n)[None, :] > index  # each unordered pair once
        partial.append(torch.logsumexp((-t * squared)[upper], dim=0))
    pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(partial), dim=0) - math.log(pairs))


@METRICS.register("embedding_geometry")
def alignment_metrics(image_emb: Any, text_emb: Any) -> dict[str, float]:
    """Return the geometry of paired embeddings (N, D) under stable names.

    Keys: ``pos_cos``, ``rand_cos``, ``cos_margin`` (their difference), ``modality_gap``, ``alignment``,
    ``uniformity_image``, ``uniformity_text``.
    """
    positive = positive_pair_similarity(image_emb, text_emb)
    random = random_pair_similarity(image_emb, text_emb)
    return {
        "pos_cos": positive,
        "rand_cos": random,
        "cos_margin": positive - random,
        "modality_gap": modality_gap(image_emb, text_emb),
        "alignment": alignment(image_emb, text_emb),
        "uniformity_image": uniformity(image_emb),
        "uniformity_text": uniformity(text_emb),
    }
