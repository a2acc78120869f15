"""Cross-modal retrieval of a dual encoder: image-to-text and text-to-image R@K, MRR, MAP, NDCG@10.

Identical texts (after case and whitespace folding) are one candidate: an image is matched when any
relevant text is within K, and a text query's relevant images are all images carrying that text.
Ranks count only candidates scoring strictly higher. Intervals resample the queries of each direction
(Efron & Tibshirani 1993); the two-direction means (``mrr``, ``map``, ``ndcg@10``) pair the resamples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medfuse.evaluate.metrics import Relevance, alignment_metrics, higher_counts, metrics_from_counts
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import (
    EVAL_TASKS,
    EvalContext,
    TaskSkipped,
    bootstrap_draws,
    entries_from_draws,
)
from medfuse.evaluate.tasks.embeddings import pair_embeddings
from medfuse.models.inference import text_groups

log = logging.getLogger(__name__)


def subset_relevance(rel: Relevance, higher: np.ndarray, queries: np.ndarray) -> tuple[Relevance, np.ndarray]:
    """Return the relevance and higher-counts of the chosen queries ``(Q',)`` (repeats allowed)."""
    counts = rel.counts[queries]
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
    pairs = np.repeat(rel.indptr[:-1][queries], counts) + offsets
    return Relevance(indptr, rel.indices[pairs], rel.num_candidates), higher[pairs]


def _direction(rel: Relevance, higher: np.ndarray, ks: Sequence[int], prefix: str):  # type: ignore[no-untyped-def]
    def measure(queries: np.ndarray) -> dict[str, float]:
        sub, h = subset_relevance(rel, higher, queries)
        values = metrics_from_counts(sub, h, ks)
        return {f"{prefix}_{k}": v for k, v in values.items() if k != "n_queries"}

    return measure


def _examples(
    scores: torch.Tensor, relevant: Relevance, query_rows: Sequence[int], query_text: Sequence[str],
    hit_rows: Sequence[int], hit_text: Sequence[str] | None, count: int, top: int = 5,
) -> list[dict[str, Any]]:
    """Return ``count`` evenly spaced queries with their ``top`` hits (row, text, relevant, score)."""
    out = []
    picks = np.unique(np.linspace(0, len(query_rows) - 1, min(count, len(query_rows))).round().astype(int))
    for q in picks:
        best = torch.topk(scores[q], min(top, scores.shape[1])).indices.tolist()
        rel = set(relevant.indices[relevant.indptr[q] : relevant.indptr[q + 1]].tolist())
        hits = [{"row": int(hit_rows[c]), "text": hit_text[c] if hit_text is not None else None,
                 "relevant": c in rel, "score": float(scores[q, c])} for c in best]
        out.append({"query_row": int(query_rows[q]), "query_text": query_text[q], "hits": hits})
    return out


@EVAL_TASKS.register("retrieval")
def retrieval(
    ctx: EvalContext, *, ks: Sequence[int] = (1, 5, 10), examples: int = 5, n_resamples: int | None = None,
) -> TaskResult:
    """Image-text retrieval of the split's pairs with 95% intervals over queries and example hits."""
    emb = pair_embeddings(ctx)
    keep = [i for i, t in enumerate(emb.texts) if str(t).strip()]
    if len(keep) < len(emb.texts):
        log.warning("retrieval: %d row(s) without text are left out", len(emb.texts) - len(keep))
    if len(keep) < 2:
        raise TaskSkipped("retrieval needs at least two image-text pairs")
    images, texts = emb.image[keep], emb.text[keep]
    rows = [emb.index[i] for i in keep]
    raw_texts = [emb.texts[i] for i in keep]
    groups = text_groups(raw_texts)
    first = np.unique(groups, return_index=True)[1]  # one candidate per distinct text
    unique_text = texts[first]
    i2t = Relevance.from_groups(groups, groups[first])
    t2i = i2t.transpose()
    h_i2t = higher_counts(images, unique_text, i2t, description="retrieval i2t")
    h_t2i = higher_counts(unique_text, images, t2i, description="retrieval t2i")
    ks = tuple(int(k) for k in ks)
    resamples = ctx.config.n_resamples if n_resamples is None else n_resamples
    p1, d1 = bootstrap_draws(_direction(i2t, h_i2t, ks, "i2t"), i2t.num_queries, n_resamples=resamples, seed=ctx.seed)
    p2, d2 = bootstrap_draws(_direction(t2i, h_t2i, ks, "t2i"), t2i.num_queries, n_resamples=resamples,
                             seed=ctx.seed + 1)
    point, draws = {**p1, **p2}, {**d1, **d2}
    for name in ("mrr", "map", "ndcg@10"):
        if f"i2t_{name}" in point:
            point[name] = (point[f"i2t_{name}"] + point[f"t2i_{name}"]) / 2
            draws[name] = (draws[f"i2t_{name}"] + draws[f"t2i_{name}"]) / 2
    metrics = entries_from_draws(point, draws)
    for name, value in alignment_metrics(images, texts).items():
        metrics[name] = metric_entry(value)
    with torch.no_grad():
        scores = images @ unique_text.T
    unique_rows = [rows[i] for i in first]
    unique_raw = [raw_texts[i] for i in first]
    artifacts = {
        "n_images": len(rows), "n_texts": int(len(first)), "ks": list(ks),
        "retrieval_examples": {
            "i2t": _examples(scores, i2t, rows, raw_texts, unique_rows, unique_raw, examples),
            "t2i": _examples(scores.T, t2i, unique_rows, unique_raw, rows, None, examples),
        },
    }
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(rows))
