"""Embedding geometry: pair similarities, modality gap, alignment and uniformity against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import (
    alignment,
    alignment_metrics,
    modality_gap,
    positive_pair_similarity,
    random_pair_similarity,
    uniformity,
)


@pytest.fixture
def pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8))
    return a, a + 0.7 * rng.normal(size=(60, 8)) + 0.5


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pair_similarities_match_loops(pairs):
    a, b = pairs
    ua, ub = _unit(a), _unit(b)
    n = len(a)
    assert positive_pair_similarity(a, b) == pytest.approx(np.mean([ua[i] @ ub[i] for i in range(n)]))
    off = [ua[i] @ ub[j] for i in range(n) for j in range(n) if i != j]
    assert random_pair_similarity(a, b) == pytest.approx(np.mean(off))


def test_modality_gap_alignment_uniformity_match_formulas(pairs):
    a, b = pairs
    ua, ub = _unit(a), _unit(b)
    assert modality_gap(a, b) == pytest.approx(np.linalg.norm(ua.mean(0) - ub.mean(0)))
    assert alignment(a, b) == pytest.approx(np.mean(np.sum((ua - ub) ** 2, axis=1)))
    assert alignment(a, b, alpha=1.0) == pytest.approx(np.mean(np.linalg.norm(ua - ub, axis=1)))
    # Wang & Isola's reference code: pdist(x).pow(2).mul(-t).exp().mean().log()
    x = torch.tensor(ua)
    reference = torch.pdist(x, p=2).pow(2).mul(-2).exp().mean().log().item()
    assert uniformity(a) == pytest.approx(reference, abs=1e-10)
    assert uniformity(a, max_block=7) == pytest.approx(reference, abs=1e-10)
    assert modality_gap(a, a) == pytest.approx(0.0, abs=1e-12)


def test_summary_and_errors(pairs):
    a, b = pairs
    out = alignment_metrics(torch.tensor(a, dtype=torch.float32), b)
    assert out["cos_margin"] == pytest.approx(out["pos_cos"] - out["rand_cos"])
    assert set(out) == {
        "pos_cos",
        "rand_cos",
        "cos_margin",
        "modality_gap",
        "alignment",
        "uniformity_image",
        "uniformity_text",
    }
    with pytest.raises(DataError, match="same shape"):
        alignment(a, b[:-1])
    with pytest.raises(DataError, match="at least two"):
        uniformity(a[:1])
