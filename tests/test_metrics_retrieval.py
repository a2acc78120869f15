"""Retrieval metrics against a brute-force reference (full matrix, scikit-learn AP and NDCG)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, ndcg_score

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import Relevance, group_ids, rank_metrics, retrieval_metrics
from medfuse.evaluate.metrics import retrieval as retrieval_module


def _brute_force(scores: np.ndarray, relevant: list[set[int]], ks=(1, 5, 10), ndcg_k=10) -> dict[str, float]:
    """Metrics from the full score matrix; scores are integers, so +0.5 puts a relevant item first among ties."""
    best_ranks, aps, ndcgs = [], [], []
    n_cand = scores.shape[1]
    for q, rel in enumerate(relevant):
        if not rel:
            continue
        y = np.zeros(n_cand)
        y[list(rel)] = 1
        best = max(scores[q, r] for r in rel)
        best_ranks.append(1 + int((scores[q] > best).sum()))
        # relevant first among equal scores; a tiny distinct offset orders tied relevant items
        broken = scores[q] + 0.5 * y + 1e-3 * y * np.arange(n_cand) / n_cand
        aps.append(average_precision_score(y, broken))
        ndcgs.append(ndcg_score(y[None], broken[None], k=ndcg_k))
    ranks = np.array(best_ranks, dtype=float)
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out.update(
        mrr=float((1 / ranks).mean()),
        map=float(np.mean(aps)),
        median_rank=float(np.median(ranks)),
        mean_rank=float(ranks.mean()),
        n_queries=float(len(ranks)),
    )
    out[f"ndcg@{ndcg_k}"] = float(np.mean(ndcgs))
    return out


def _tied_embeddings(rng: np.random.Generator, n: int, dim: int = 3) -> np.ndarray:
    """Small integer embeddings: dot products are exact integers with many ties."""
    return rng.integers(-2, 3, size=(n, dim)).astype(np.float64)


@pytest.fixture
def grouped():
    rng = np.random.default_rng(0)
    images, texts = _tied_embeddings(rng, 40), _tied_embeddings(rng, 25)
    image_groups = rng.integers(0, 12, 40)
    text_groups = rng.integers(0, 14, 25)  # some groups have several texts, some images have none
    return images, texts, image_groups, text_groups


def _sets(query_groups: np.ndarray, cand_groups: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(cand_groups == g).tolist()) for g in query_groups]


def test_both_directions_match_brute_force_with_ties_and_multiple_relevant(grouped, caplog):
    images, texts, image_groups, text_groups = grouped
    with caplog.at_level(logging.WARNING):
        out = retrieval_metrics(images, texts, image_groups, text_groups, normalize=False)
    assert "no relevant candidate" in caplog.text
    i2t = _brute_force(images @ texts.T, _sets(image_groups, text_groups))
    t2i = _brute_force(texts @ images.T, _sets(text_groups, image_groups))
    for name, value in i2t.items():
        assert out[f"i2t_{name}"] == pytest.approx(value, abs=1e-12), name
    for name, value in t2i.items():
        assert out[f"t2i_{name}"] == pytest.approx(value, abs=1e-12), name
    for name in ("mrr", "map", "ndcg@10"):
        assert out[name] == pytest.approx((i2t[name] + t2i[name]) / 2)
    assert {"i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_median_rank"} <= set(out)


@pytest.mark.parametrize("torch_counting", [False, True])
@pytest.mark.parametrize("few", [0, 1, 10**6])
@pytest.mark.parametrize("max_elements", [1, 97, 1 << 25])
def test_chunking_and_counting_paths_agree(monkeypatch, few, max_elements, torch_counting):
    """One query per chunk or all at once; sort-based or pass-per-item counting; numpy or torch."""
    rng = np.random.default_rng(1)
    queries, cands = _tied_embeddings(rng, 30), _tied_embeddings(rng, 60)
    relevant = [set(rng.choice(60, size=int(rng.integers(1, 15)), replace=False).tolist()) for _ in range(30)]
    relevant[4] = set()  # a query without relevant items is left out
    monkeypatch.setattr(retrieval_module, "_FEW_RELEVANT", few)
    monkeypatch.setattr(retrieval_module, "_TORCH_COUNTING", torch_counting)
    got = rank_metrics(queries, cands, relevant, normalize=False, max_elements=max_elements, ks=(1, 3, 10))
    expected = _brute_force(queries @ cands.T, relevant, ks=(1, 3, 10))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_float32_cosine_scores_match_brute_force():
    torch.manual_seed(2)
    queries = torch.randn(50, 16)
    cands = torch.randn(70, 16)
    cands[10] = cands[3]  # an exact duplicate ties
    relevant = [{int(i % 70), int((i * 7) % 70)} for i in range(50)]
    got = rank_metrics(queries, cands, relevant)
    q = torch.nn.functional.normalize(queries, dim=1)
    c = torch.nn.functional.normalize(cands, dim=1)
    scores = (q @ c.T).double().numpy()
    # ties only between identical candidates; rank the same way from the same float32 matrix
    ranks = [1 + int((scores[i] > max(scores[i, r] for r in rel)).sum()) for i, rel in enumerate(relevant)]
    assert got["mrr"] == pytest.approx(np.mean(1 / np.array(ranks)), abs=1e-12)
    assert got["R@1"] == pytest.approx(np.mean(np.array(ranks) == 1))


def test_relevance_spellings_agree(grouped):
    images, texts, image_groups, text_groups = grouped
    by_groups = Relevance.from_groups(image_groups, text_groups)
    sets = _sets(image_groups, text_groups)
    by_sets = Relevance.from_sets(sets, len(texts))
    pairs = np.array([(q, c) for q, rel in enumerate(sets) for c in rel])
    by_pairs = Relevance.from_pairs(pairs, len(images), len(texts))
    for rel in (by_sets, by_pairs):
        np.testing.assert_array_equal(rel.indptr, by_groups.indptr)
        np.testing.assert_array_equal(rel.indices, by_groups.indices)
    back = by_groups.transpose()
    np.testing.assert_array_equal(back.indptr, Relevance.from_groups(text_groups, image_groups).indptr)
    a = retrieval_metrics(images, texts, image_groups, text_groups, normalize=False)
    b = retrieval_metrics(images, texts, relevance=pairs, normalize=False)
    assert a == pytest.approx(b)


def test_oracle_duplicates_and_chance():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(200, 32))
    out = retrieval_metrics(emb, emb)
    for key in ("i2t_R@1", "t2i_R@1", "mrr", "map", "ndcg@10"):
        assert out[key] == pytest.approx(1.0)
    assert out["i2t_median_rank"] == 1.0 and out["t2i_mean_rank"] == 1.0
    # identical texts: an image matches any copy, and the copies' tie never pushes it down
    reports = ["no effusion", "cardiomegaly", "no effusion", "edema"] * 50
    groups = group_ids(reports)
    text_emb = rng.normal(size=(3, 32))[groups]
    out = retrieval_metrics(text_emb + 1e-9, text_emb, groups, groups)
    assert out["i2t_R@1"] == 1.0 and out["t2i_R@1"] == 1.0
    # random embeddings: R@K near K / N
    chance = retrieval_metrics(rng.normal(size=(500, 16)), rng.normal(size=(500, 16)))
    assert abs(chance["i2t_R@10"] - 10 / 500) < 0.02
    assert 180 < chance["t2i_median_rank"] < 320


def test_group_ids_and_errors():
    assert group_ids(["a", "b", "a", "c"]).tolist() == [0, 1, 0, 2]
    rng = np.random.default_rng(4)
    with pytest.raises(DataError, match="one to one"):
        retrieval_metrics(rng.normal(size=(4, 3)), rng.normal(size=(5, 3)))
    with pytest.raises(DataError, match="outside"):
        rank_metrics(rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), [{0}, {5}])
    with pytest.raises(DataError, match="no query"):
        rank_metrics(rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), [set(), set()])
    with pytest.raises(DataError, match="sizes differ"):
        rank_metrics(rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), [{0}, {1}])
    bad = rng.normal(size=(2, 3))
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        rank_metrics(bad, rng.normal(size=(3, 3)), [{0}, {1}])
