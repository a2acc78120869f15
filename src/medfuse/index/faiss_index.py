"""A FAISS index of embeddings with one metadata row per vector, saved as three files.

``index.faiss`` (the FAISS index), ``meta.jsonl`` (one JSON object per vector, in vector order: ``row``,
``text``, ``image``, ``case_id``, ...) and ``index.json`` (``kind``, ``dim``, ``metric``, ``count``,
``checkpoint`` and how the vectors were made). Kinds (Johnson et al., "Billion-scale similarity search
with GPUs", IEEE TBD 2019; Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
using Hierarchical Navigable Small World graphs", TPAMI 2018):

- ``flat``: exact search;
- ``ivf``: inverted lists over ``nlist`` k-means cells, ``nprobe`` of them searched (approximate);
- ``hnsw``: a navigable small-world graph with ``M`` links per node (approximate, no training).

Metric ``cosine`` searches inner products of L2-normalised vectors (the score is the cosine
similarity); ``l2`` searches Euclidean distance (the score is minus the squared distance), so a higher
score is always nearer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.core import require
from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError

__all__ = ["INDEX_FILE", "INFO_FILE", "KINDS", "META_FILE", "METRICS", "FaissIndex", "Hit"]

KINDS = ("flat", "ivf", "hnsw")
METRICS = ("cosine", "l2")
INDEX_FILE, META_FILE, INFO_FILE = "index.faiss", "meta.jsonl", "index.json"
FORMAT = "medfuse-index"


def _faiss() -> Any:
    return require("faiss", extra="index", purpose="retrieval indexes")


@dataclass
class Hit:
    """One search result: the vector's ``row``, its ``score`` (higher is nearer) and its metadata."""

    row: int
    score: float
    meta: dict[str, Any]


def default_nlist(count: int) -> int:
    """Return the IVF cell count for ``count`` vectors: about ``sqrt(count)``, with >= 39 points per cell."""
    return max(1, min(int(round(math.sqrt(count))), count // 39))


class FaissIndex:
    """Vectors ``(N, D)`` searchable by similarity, with metadata per vector and a description (``info``).

    Build with :meth:`build`, search with :meth:`search`, write with :meth:`save`, read with :meth:`load`.
    """

    def __init__(self, index: Any, info: Mapping[str, Any], meta: Sequence[Mapping[str, Any]]) -> None:
        if int(index.ntotal) != len(meta):
            raise ConfigError(f"index: {int(index.ntotal)} vectors but {len(meta)} metadata rows")
        self.index = index
        self.info: dict[str, Any] = dict(info)
        self.meta: list[dict[str, Any]] = [dict(m) for m in meta]

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def kind(self) -> str:
        return str(self.info.get("kind", "flat"))

    @property
    def metric(self) -> str:
        return str(self.info.get("metric", "cosine"))

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        kind: str = "flat",
        metric: str = "cosine",
        meta: Sequence[Mapping[str, Any]] | None = None,
        info: Mapping[str, Any] | None = None,
        nlist: int | None = None,
        hnsw_m: int = 32,
    ) -> FaissIndex:
        """Return an index over ``vectors`` ``(N, D)``; ``meta`` defaults to ``{"row": i}`` per vector.

        ``cosine`` normalises the vectors first. ``nlist`` (IVF) defaults to :func:`default_nlist`;
        ``hnsw_m`` is the HNSW graph degree.
        """
        faiss = _faiss()
        check_choice("kind", kind, KINDS)
        check_choice("metric", metric, METRICS)
        data = _as_matrix(vectors, "vectors")
        count, dim = data.shape
        if count == 0:
            raise ConfigError("vectors: nothing to index (0 vectors); check the manifest, split and modality")
        if metric == "cosine":
            data = _normalise(data)
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        params: dict[str, Any] = {}
        if kind == "flat":
            index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        elif kind == "ivf":
            cells = int(nlist or default_nlist(count))
            if not 1 <= cells <= count:
                raise ConfigError(f"nlist: must be in 1..{count} (the vector count), got {cells}")
            quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss_metric)
            # FAISS warns below 39 points per cell; few cells on few points is a choice here, not an accident
            index.cp.min_points_per_centroid = max(1, min(39, count // cells))
            index.train(data)
            index.nprobe = min(cells, 8)
            params = {"nlist": cells, "nprobe": int(index.nprobe)}
        else:
            if hnsw_m < 2:
                raise ConfigError(f"hnsw_m: must be >= 2, got {hnsw_m}")
            index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss_metric)
            index.hnsw.efConstruction = 80
            params = {"M": int(hnsw_m), "efConstruction": 80, "efSearch": 64}
        index.add(data)
        rows = list(meta) if meta is not None else [{"row": i} for i in range(count)]
        if len(rows) != count:
            raise ConfigError(f"meta: {len(rows)} rows for {count} vectors")
        described = {**dict(info or {}), "format": FORMAT, "kind": kind, "dim": dim, "metric": metric,
                     "count": count, "params": params}
        return cls(index, described, rows)

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """Return, for each query ``(Q, D)``, up to ``k`` hits nearest first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k: expected an integer >= 1, got {k!r}")
        data = _as_matrix(queries, "queries")
        if data.shape[1] != self.dim:
            raise ConfigError(f"queries: dimension {data.shape[1]} does not match the index's {self.dim}")
        if self.metric == "cosine":
            data = _normalise(data)
        k = min(k, len(self))
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(int(self.info.get("params", {}).get("efSearch", 64)), 2 * k)
        scores, rows = self.index.search(data, k)
        if self.metric == "l2":
            scores = -scores
        return [
            [Hit(int(r), float(s), self.meta[int(r)]) for s, r in zip(score_row, row_ids) if r >= 0]
            for score_row, row_ids in zip(scores, rows)
        ]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``meta.jsonl`` and ``index.json`` (last) into ``directory``; return it."""
        faiss = _faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, write in (
            (INDEX_FILE, lambda p: faiss.write_index(self.index, str(p))),
            (META_FILE, lambda p: p.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in self.meta),
                                               encoding="utf-8")),
            (INFO_FILE, lambda p: p.write_text(json.dumps(self.info, indent=2) + "\n", encoding="utf-8")),
        ):
            staging = directory / f".{name}.tmp"
            write(staging)
            os.replace(staging, directory / name)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FaissIndex:
        """Return the index saved in ``directory``; errors name the file and what is wrong."""
        faiss = _faiss()
        directory = Path(directory)
        info_path = directory / INFO_FILE
        for name in (INFO_FILE, INDEX_FILE, META_FILE):
            if not (directory / name).is_file():
                raise ConfigError(f"{directory}: not a medfuse index (no {name}); build one with `medfuse index build`")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{info_path}: not valid JSON ({exc})") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise ConfigError(f"{info_path}: not a medfuse index description")
        meta = []
        with (directory / META_FILE).open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        meta.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{directory / META_FILE}: line {number} is not JSON ({exc})") from None
        index = faiss.read_index(str(directory / INDEX_FILE))
        if int(index.d) != int(info.get("dim", index.d)):
            raise ConfigError(f"{info_path}: dim {info.get('dim')} but {INDEX_FILE} holds {int(index.d)}-d vectors")
        loaded = cls(index, info, meta)
        loaded.info["path"] = str(directory)
        return loaded


def _as_matrix(values: Any, name: str) -> np.ndarray:
    data = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[1] < 1:
        raise ConfigError(f"{name}: expected a (N, D) matrix, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ConfigError(f"{name}: holds NaN or infinite values")
    return data


def _normalise(data: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return np.ascontiguousarray(data / np.maximum(norms, 1e-12), dtype=np.float32)
