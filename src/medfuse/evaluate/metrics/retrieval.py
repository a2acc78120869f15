"""Cross-modal retrieval metrics (R@K, MRR, MAP, NDCG@K, median and mean rank) without the full matrix.

Ranks count only candidates scoring *strictly* higher, so ties never push a relevant item down:
the rank of a query's best relevant candidate is 1 + #{candidates scoring higher than it}. For MAP and
NDCG every relevant candidate r gets h_r = #{candidates scoring higher than r}; placing relevant items
first among equal scores, the i-th relevant item (best first) sits at position
``i + h_(i) - #{relevant scoring higher than it}``, which gives AP = (1/m) sum_i i / pos_i and
DCG@K = sum_{pos_i <= K} 1 / log2(1 + pos_i) (binary gains; Jarvelin & Kekalainen 2002).

Similarities are computed for a chunk of queries at a time (one matmul against all candidates), so
memory stays at ``max_elements`` scores however many items there are; only the counts h_r leave a
chunk. Rows with many relevant items count through a sort of the row instead of one pass per item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medfuse.core import progress
from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics._registry import METRICS
from medfuse.evaluate.metrics.relevance import Relevance, as_relevance

log = logging.getLogger(__name__)

_FEW_RELEVANT = 8  # rows with more relevant items than this count by sorting the row
_TORCH_COUNTING = False  # count with torch even on CPU (the accelerator path; for tests)


def _embeddings(values: Any, name: str, normalize: bool, device: torch.device | str | None) -> torch.Tensor:
    """Return embeddings ``(N, D)`` as a float32/float64 tensor on ``device``, L2-normalised if asked."""
    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.ndim != 2:
        raise DataError(f"{name} must be a (N, D) matrix, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    tensor = tensor.to(device) if device is not None else tensor
    if not torch.isfinite(tensor).all():
        raise DataError(f"{name} holds NaN or infinite values; check the encoder outputs")
    return torch.nn.functional.normalize(tensor, dim=1) if normalize else tensor


def _count_higher_numpy(scores: np.ndarray, row_ptr: np.ndarray, cand_index: np.ndarray) -> np.ndarray:
    """Return, for each relevant pair of a chunk, the number of candidates scoring strictly higher.

    scores: (b, C) similarities of the chunk's queries; row_ptr: (b + 1,) CSR offsets of the chunk's
    relevant pairs; cand_index: (nnz,) their candidate ids. Returns (nnz,) int64. (On CPU numpy's
    compare-and-count is several times faster than torch's boolean reduction.)
    """
    lengths = np.diff(row_ptr)
    relevant_scores = scores[np.repeat(np.arange(len(lengths)), lengths), cand_index]
    counts = np.zeros(len(cand_index), dtype=np.int64)
    few = lengths <= _FEW_RELEVANT
    for j in range(int(lengths[few].max(initial=0))):
        rows = np.flatnonzero(few & (lengths > j))
        pairs = row_ptr[rows] + j
        if 2 * len(rows) >= len(lengths):  # compare the whole block; rows without a j-th item count 0
            thresholds = np.full(len(lengths), np.inf, dtype=scores.dtype)
            thresholds[rows] = relevant_scores[pairs]
            counts[pairs] = np.count_nonzero(scores > thresholds[:, None], axis=1)[rows]
        else:
            counts[pairs] = np.count_nonzero(scores[rows] > relevant_scores[pairs, None], axis=1)
    for row in np.flatnonzero(~few):
        ordered = np.sort(scores[row])
        pairs = np.arange(row_ptr[row], row_ptr[row + 1])
        counts[pairs] = len(ordered) - np.searchsorted(ordered, relevant_scores[pairs], side="right")
    return counts


def _count_higher_torch(scores: torch.Tensor, row_ptr: np.ndarray, cand_index: torch.Tensor) -> np.ndarray:
    """As :func:`_count_higher_numpy`, on the scores' device (used for accelerators)."""
    device = scores.device
    lengths = np.diff(row_ptr)
    pair_row = torch.as_tensor(np.repeat(np.arange(len(lengths)), lengths), device=device)
    relevant_scores = scores[pair_row, cand_index]
    counts = torch.zeros(len(cand_index), dtype=torch.int64, device=device)
    few = lengths <= _FEW_RELEVANT
    for j in range(int(lengths[few].max(initial=0))):
        rows = np.flatnonzero(few & (lengths > j))
        pairs = torch.as_tensor(row_ptr[rows] + j, device=device)
        block = scores if len(rows) == len(lengths) else scores[torch.as_tensor(rows, device=device)]
        counts[pairs] = (block > relevant_scores[pairs, None]).sum(dim=1)
    many = np.flatnonzero(~few)
    rows_per_sort = max(1, (1 << 22) // max(scores.shape[1], 1))
    for start in range(0, len(many), rows_per_sort):
        rows = many[start : start + rows_per_sort]
        ordered = torch.sort(scores[torch.as_tensor(rows, device=device)], dim=1).values
        offsets = np.arange(int(lengths[rows].max()))[None, :]
        valid = offsets < lengths[rows][:, None]
        valid_t = torch.as_tensor(valid, device=device)
        pairs = torch.as_tensor((row_ptr[rows][:, None] + offsets)[valid], device=device)
        values = torch.full(valid.shape, float("inf"), dtype=scores.dtype, device=device)
        values[valid_t] = relevant_scores[pairs]
        not_higher = torch.searchsorted(ordered, values, right=True)
        counts[pairs] = (scores.shape[1] - not_higher)[valid_t]
    return counts.cpu().numpy()


def higher_counts(
    query_emb: Any,
    candidate_emb: Any,
    relevance: Relevance,
    *,
    normalize: bool = True,
    max_elements: int = 1 << 25,
    device: torch.device | str | None = None,
    description: str = "retrieval",
) -> np.ndarray:
    """Return h for every relevant pair, ``(nnz,)`` int64 in ``relevance`` order: candidates scoring higher.

    query_emb: (Q, D); candidate_emb: (C, D); scores are dot products (cosine when ``normalize``).
    At most ``max_elements`` similarities exist at once (chunks of ``max_elements // C`` queries).
    """
    queries = _embeddings(query_emb, "query embeddings", normalize, device)
    cands = _embeddings(candidate_emb, "candidate embeddings", normalize, queries.device)
    if queries.shape[1] != cands.shape[1]:
        raise DataError(f"embedding sizes differ: queries {queries.shape[1]}, candidates {cands.shape[1]}")
    if queries.dtype != cands.dtype:
        queries, cands = queries.to(torch.float64), cands.to(torch.float64)
    if relevance.num_queries != len(queries) or relevance.num_candidates != len(cands):
        raise DataError(
            f"relevance covers {relevance.num_queries} x {relevance.num_candidates} items, "
            f"embeddings are {len(queries)} x {len(cands)}"
        )
    chunk = max(1, min(len(queries), max_elements // max(len(cands), 1)))
    counts = np.zeros(len(relevance.indices), dtype=np.int64)
    cand_t = cands.T.contiguous()
    all_indices = torch.as_tensor(relevance.indices, device=queries.device)
    starts = range(0, len(queries), chunk)
    with torch.no_grad(), progress.task(description, total=len(starts)) as bar:
        for q0 in starts:
            q1 = min(q0 + chunk, len(queries))
            lo, hi = int(relevance.indptr[q0]), int(relevance.indptr[q1])
            if hi > lo:
                scores = queries[q0:q1] @ cand_t
                row_ptr = relevance.indptr[q0 : q1 + 1] - lo
                if scores.device.type == "cpu" and not _TORCH_COUNTING:
                    counts[lo:hi] = _count_higher_numpy(scores.numpy(), row_ptr, relevance.indices[lo:hi])
                else:
                    counts[lo:hi] = _count_higher_torch(scores, row_ptr, all_indices[lo:hi])
            bar.update()
    return counts


def metrics_from_counts(
    relevance: Relevance, higher: np.ndarray, ks: Sequence[int] = (1, 5, 10), ndcg_k: int = 10
) -> dict[str, float]:
    """Return ``R@K``, ``mrr``, ``map``, ``ndcg@K``, ``median_rank``, ``mean_rank``, ``n_queries``.

    higher: (nnz,) candidates scoring strictly higher than each relevant pair (see :func:`higher_counts`).
    Queries without any relevant candidate are left out (``n_queries`` counts the others).
    """
    if ndcg_k < 1 or any(k < 1 for k in ks):
        raise ConfigError(f"ks {tuple(ks)} and ndcg_k {ndcg_k} must be positive ranks")
    counts = relevance.counts
    has_relevant = counts > 0
    if not has_relevant.any():
        raise DataError("no query has a relevant candidate; check the group ids or relevance pairs")
    if (~has_relevant).any():
        log.warning(
            "%d of %d queries have no relevant candidate and are left out", (~has_relevant).sum(), len(counts)
        )
    query = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((higher, query))
    h, query = higher[order], query[order]
    start = relevance.indptr[query]
    position_in_query = np.arange(len(h)) - start + 1  # i, 1-based among the query's relevant items
    new_run = np.r_[True, (query[1:] != query[:-1]) | (h[1:] != h[:-1])]
    # relevant items scoring strictly higher = offset of the first item of the same (query, h) run
    relevant_higher = np.maximum.accumulate(np.where(new_run, np.arange(len(h)), 0)) - start
    position = position_in_query + h - relevant_higher

    m = counts[has_relevant].astype(np.float64)
    best_rank = (h[relevance.indptr[:-1][has_relevant]] + 1).astype(np.float64)
    ap = np.bincount(query, weights=position_in_query / position, minlength=len(counts))[has_relevant] / m
    gains = np.where(position <= ndcg_k, 1.0 / np.log2(position + 1.0), 0.0)
    dcg = np.bincount(query, weights=gains, minlength=len(counts))[has_relevant]
    ideal_cum = np.cumsum(1.0 / np.log2(np.arange(2, ndcg_k + 2)))
    idcg = ideal_cum[np.minimum(m, ndcg_k).astype(np.int64) - 1]

    out = {f"R@{k}": float((best_rank <= k).mean()) for k in ks}
    out.update(
        mrr=float((1.0 / best_rank).mean()),
        map=float(ap.mean()),
        median_rank=float(np.median(best_rank)),
        mean_rank=float(best_rank.mean()),
        n_queries=float(has_relevant.sum()),
    )
    out[f"ndcg@{ndcg_k}"] = float((dcg / idcg).mean())
    return out


def rank_metrics(
    query_emb: Any,
    candidate_emb: Any,
    relevance: Any,
    *,
    ks: Sequence[int] = (1, 5, 10),
    ndcg_k: int = 10,
    normalize: bool = True,
    max_elements: int = 1 << 25,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Return the retrieval metrics of one direction (keys as :func:`metrics_from_counts`).

    query_emb: (Q, D); candidate_emb: (C, D); relevance: a :class:`Relevance`, a list of candidate
    index sets (one per query) or ``(P, 2)`` (query, candidate) pairs.
    """
    rel = as_relevance(relevance, len(query_emb), len(candidate_emb))
    higher = higher_counts(
        query_emb, candidate_emb, rel, normalize=normalize, max_elements=max_elements, device=device
    )
    return metrics_from_counts(rel, higher, ks, ndcg_k)


@METRICS.register("retrieval")
def retrieval_metrics(
    image_emb: Any,
    text_emb: Any,
    image_groups: Any = None,
    text_groups: Any = None,
    ks: Sequence[int] = (1, 5, 10),
    *,
    relevance: Any = None,
    ndcg_k: int = 10,
    normalize: bool = True,
    max_elements: int = 1 << 25,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Return image-to-text and text-to-image retrieval metrics under their stable names.

    image_emb: (N_i, D); text_emb: (N_t, D). Relevance: group ids (image_groups (N_i,), text_groups
    (N_t,); equal ids are relevant), or ``relevance`` for image queries over texts (sets or pairs), or
    neither: image i matches text i. Keys: ``i2t_R@K``, ``t2i_R@K``, ``i2t_mrr``, ``i2t_map``,
    ``i2t_ndcg@10``, ``i2t_median_rank``, ``i2t_mean_rank`` (and ``t2i_`` forms), and ``mrr``, ``map``,
    ``ndcg@10``: the mean of both directions. R@K are fractions in [0, 1].
    """
    n_img, n_txt = len(image_emb), len(text_emb)
    if relevance is not None:
        i2t = as_relevance(relevance, n_img, n_txt)
    elif image_groups is not None or text_groups is not None:
        if image_groups is None or text_groups is None:
            raise DataError("give both image_groups and text_groups, or neither")
        i2t = Relevance.from_groups(image_groups, text_groups)
        if i2t.num_queries != n_img or i2t.num_candidates != n_txt:
            raise DataError(
                f"{i2t.num_queries} image groups and {i2t.num_candidates} text groups given for "
                f"{n_img} images and {n_txt} texts; pass one id per item"
            )
    else:
        if n_img != n_txt:
            raise DataError(f"{n_img} images and {n_txt} texts cannot pair one to one; pass group ids")
        i2t = Relevance.from_pairs(np.stack([np.arange(n_img)] * 2, axis=1), n_img, n_txt)
    t2i = i2t.transpose()
    directions = {}
    for prefix, rel, queries, cands in (("i2t", i2t, image_emb, text_emb), ("t2i", t2i, text_emb, image_emb)):
        higher = higher_counts(
            queries,
            cands,
            rel,
            normalize=normalize,
            max_elements=max_elements,
            device=device,
            description=f"retrieval {prefix}",
        )
        directions[prefix] = metrics_from_counts(rel, higher, ks, ndcg_k)
    out: dict[str, float] = {}
    for prefix, values in directions.items():
        for name, value in values.items():
            out[f"{prefix}_{name}"] = value
    for name in ("mrr", "map", f"ndcg@{ndcg_k}"):
        out[name] = (directions["i2t"][name] + directions["t2i"][name]) / 2
    return out
