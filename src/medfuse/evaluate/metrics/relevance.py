"""Which candidates are relevant to which queries: sets, pairs or group ids, stored as a sparse matrix.

Retrieval queries may have several relevant candidates (two reports of one study, one report for many
images). Three spellings are accepted and turned into one compressed-sparse-row :class:`Relevance`:

- a list of sets: ``relevant[q]`` holds the candidate indices relevant to query q;
- pairs: an integer array ``(P, 2)`` of ``(query, candidate)`` indices;
- group ids: query q and candidate c are relevant when ``query_groups[q] == candidate_groups[c]``.
  Give identical texts one id (:func:`group_ids` maps equal values to equal ids) and pass each text
  once, so that a text shared by many images is one candidate.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics._inputs import to_numpy


@dataclass(frozen=True)
class Relevance:
    """Relevant candidates per query in CSR form.

    indptr: (Q + 1,) int64, query q's candidates are ``indices[indptr[q]:indptr[q + 1]]`` (sorted, unique).
    indices: (nnz,) int64 candidate ids in ``[0, num_candidates)``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    num_candidates: int

    @property
    def num_queries(self) -> int:
        """Number of queries Q."""
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        """Relevant candidates per query, ``(Q,)``."""
        return np.diff(self.indptr)

    @classmethod
    def from_pairs(cls, pairs: Any, num_queries: int, num_candidates: int) -> Relevance:
        """Return the relevance of ``(query, candidate)`` index pairs ``(P, 2)``; duplicates count once."""
        array = to_numpy(pairs, "relevance pairs")
        if array.size == 0:
            array = np.zeros((0, 2), dtype=np.int64)
        if array.ndim != 2 or array.shape[1] != 2 or array.dtype.kind not in "iu":
            raise DataError(
                f"relevance pairs must be an integer array (P, 2), got {array.dtype} {array.shape}"
            )
        query, cand = array[:, 0].astype(np.int64), array[:, 1].astype(np.int64)
        _check_range(query, num_queries, "query")
        _check_range(cand, num_candidates, "candidate")
        key = np.unique(query * num_candidates + cand)
        query, cand = key // num_candidates, key % num_candidates
        indptr = np.r_[0, np.cumsum(np.bincount(query, minlength=num_queries))].astype(np.int64)
        return cls(indptr, cand.astype(np.int64), num_candidates)

    @classmethod
    def from_sets(cls, relevant: Sequence[Iterable[int]], num_candidates: int) -> Relevance:
        """Return the relevance given as one collection of candidate indices per query."""
        pairs = [(q, int(c)) for q, items in enumerate(relevant) for c in items]
        return cls.from_pairs(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), len(relevant), num_candidates)

    @classmethod
    def from_groups(cls, query_groups: Any, candidate_groups: Any) -> Relevance:
        """Return the relevance where a query and a candidate are relevant when their group ids are equal."""
        queries = _ids(query_groups, "query groups")
        cands = _ids(candidate_groups, "candidate groups")
        _, codes = np.unique(np.concatenate([queries, cands]), return_inverse=True)
        q_codes, c_codes = codes[: len(queries)], codes[len(queries) :]
        n_codes = int(codes.max()) + 1 if len(codes) else 0
        order = np.argsort(c_codes, kind="stable")
        per_code = np.bincount(c_codes, minlength=n_codes)
        starts = np.r_[0, np.cumsum(per_code)[:-1]]
        lengths = per_code[q_codes]
        indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        offset = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
        indices = order[np.repeat(starts[q_codes], lengths) + offset]
        return cls(indptr, indices.astype(np.int64), len(cands))

    def transpose(self) -> Relevance:
        """Return the relevance of the other direction (candidates become queries)."""
        query = np.repeat(np.arange(self.num_queries), self.counts)
        return Relevance.from_pairs(
            np.stack([self.indices, query], axis=1), self.num_candidates, self.num_queries
        )


def _check_range(values: np.ndarray, limit: int, what: str) -> None:
    """Raise naming the first index outside ``[0, limit)``."""
    if len(values) and (values.min() < 0 or values.max() >= limit):
        bad = values[(values < 0) | (values >= limit)][0]
        raise DataError(
            f"relevance names {what} index {bad}, outside [0, {limit}); check the relevance input"
        )


def _ids(values: Any, name: str) -> np.ndarray:
    """Return group ids as a 1-D array (numbers or strings)."""
    array = to_numpy(values, name) if hasattr(values, "detach") else np.asarray(list(values))
    if array.ndim != 1:
        raise DataError(f"{name} must be one id per item (1-D), got shape {array.shape}")
    return array


def group_ids(values: Sequence[Hashable]) -> np.ndarray:
    """Return one int64 id per value ``(N,)``, equal ids for equal values (first-seen order).

    >>> group_ids(["no effusion", "cardiomegaly", "no effusion"]).tolist()
    [0, 1, 0]
    """
    seen: dict[Hashable, int] = {}
    return np.asarray([seen.setdefault(v, len(seen)) for v in values], dtype=np.int64)


def as_relevance(relevance: Any, num_queries: int, num_candidates: int) -> Relevance:
    """Return ``relevance`` (a :class:`Relevance`, a list of sets or a ``(P, 2)`` pair array) as CSR."""
    if isinstance(relevance, Relevance):
        rel = relevance
    elif isinstance(relevance, np.ndarray) or hasattr(relevance, "detach"):
        rel = Relevance.from_pairs(relevance, num_queries, num_candidates)
    else:
        rel = Relevance.from_sets(list(relevance), num_candidates)
    if rel.num_queries != num_queries or rel.num_candidates != num_candidates:
        raise DataError(
            f"relevance covers {rel.num_queries} queries x {rel.num_candidates} candidates, "
            f"but the embeddings are {num_queries} x {num_candidates}"
        )
    return rel
