"""Build a retrieval index from a manifest with a checkpoint, and query it by text or image."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.index.embed import Embedder, open_checkpoint
from medfuse.index.faiss_index import FaissIndex
from medfuse.models import LoadedCheckpoint

__all__ = ["CASE_ID_COLUMNS", "build_index_from_manifest", "query_index"]

log = logging.getLogger(__name__)

# Columns naming a case, tried in order before the config's patient column.
CASE_ID_COLUMNS = ("case_id", "study_id", "img_id", "record_id", "id")
MODALITIES = ("image", "text")


def _case_column(columns: Sequence[str], patient: str | None) -> str | None:
    for name in CASE_ID_COLUMNS:
        if name in columns:
            return name
    return patient or None


def _label_names(labels: torch.Tensor, classes: Sequence[str] | None, task: str | None) -> list[str]:
    """Return the class names a label entry of a batch stands for (empty when missing or unknown)."""
    if classes is None or task is None or task == "regression":
        return []
    if task in ("binary", "multiclass"):
        value = int(labels)
        return [str(classes[value])] if 0 <= value < len(classes) else []
    return [str(c) for c, v in zip(classes, labels.tolist()) if v == v and v >= 0.5]


def build_index_from_manifest(
    checkpoint: str | Path | LoadedCheckpoint,
    manifest: str | Path,
    out: str | Path,
    modality: str = "image",
    kind: str = "flat",
    split: str | None = None,
    *,
    metric: str = "cosine",
    batch_size: int = 64,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Embed one modality of a manifest's rows and write a FAISS index to ``out``; return its ``index.json``.

    The manifest is read with the checkpoint's data config (or the preset its columns match), as in
    evaluation. Rows that fail to load or lack the modality are counted and left out. Each vector's
    metadata holds ``row`` (vector number), ``line`` (manifest line), ``case_id``, ``image`` (as written in
    the manifest), ``text`` (the row's text, de-identified when the data config says so) and ``labels``.
    """
    from medfuse.data import ManifestDataset, build_loader, read_manifest
    from medfuse.evaluate.tasks.sources import data_config_for

    check_choice("modality", modality, MODALITIES)
    started = time.perf_counter()
    ckpt = open_checkpoint(checkpoint)
    embedder = Embedder(ckpt)
    if not embedder.reads(modality):
        raise ConfigError(f"modality: this {embedder.kind} model reads no {modality}; index a modality it reads")
    table = read_manifest(manifest)
    cfg = data_config_for(ckpt, table.columns, path=table.path)
    if modality == "image" and not cfg.image:
        raise ConfigError(f"{table.path}: the data config names no image column; cannot index images")
    if modality == "text" and not cfg.text_columns:
        raise ConfigError(f"{table.path}: the data config names no text column; cannot index texts")
    dataset = ManifestDataset(table, cfg, split=split, max_rows=max_rows)
    case_col = _case_column(table.columns, cfg.patient)
    frame = dataset.frame
    vectors: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    for batch in build_loader(dataset, batch_size, shuffle=False):
        if len(batch["index"]) == 0:
            continue
        embeds, rows = embedder.batch(batch, modality)
        if not rows:
            continue
        vectors.append(embeds.numpy())
        texts = batch.get("text")
        for j, position in zip(rows, (int(batch["index"][r]) for r in rows)):
            record = frame.iloc[position]
            meta.append({
                "row": len(meta),
                "line": int(dataset.lines[position]),
                "case_id": _cell(record.get(case_col)) if case_col else str(int(dataset.lines[position])),
                "image": _cell(record.get(cfg.image)) if cfg.image else "",
                "text": str(texts[j]) if texts is not None else "",
                "labels": _label_names(batch["labels"][j], dataset.classes, dataset.task) if "labels" in batch else [],
            })
    if not meta:
        raise ConfigError(f"{table.path}: no row of split {split!r} has a readable {modality}; nothing to index")
    info = {
        "modality": modality,
        "space": embedder.space,
        "model_kind": embedder.kind,
        "checkpoint": str(ckpt.path) if ckpt.path is not None else None,
        "checkpoint_id": _checkpoint_id(ckpt),
        "manifest": str(Path(manifest).resolve()),
        "root": str(table.root.resolve()),
        "split": dataset.split,
        "rows": len(dataset),
        "skipped": len(dataset) - len(meta),
        "failed": dataset.n_failed,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    index = FaissIndex.build(np.concatenate(vectors), kind=kind, metric=metric, meta=meta, info=info)
    index.save(out)
    index.info["seconds"] = round(time.perf_counter() - started, 3)
    log.info("indexed %d of %d rows (%s, %s) in %.1fs", len(meta), len(dataset), modality, kind, index.info["seconds"])
    return {**index.info, "out": str(Path(out))}


def _cell(value: Any) -> str:
    from medfuse.data import text_value

    return text_value(value)


def _checkpoint_id(ckpt: LoadedCheckpoint) -> str | None:
    if ckpt.path is None:
        return None
    from medfuse.models.checkpoint import read_checkpoint_config

    return read_checkpoint_config(ckpt.path).get("checkpoint_id")


def check_compatible(index: FaissIndex, embedder: Embedder, query_modality: str) -> None:
    """Raise :class:`ConfigError` when ``embedder`` cannot make queries for ``index`` from ``query_modality``."""
    if index.dim != embedder.dim:
        raise ConfigError(
            f"index: holds {index.dim}-d vectors but the checkpoint embeds {embedder.dim}-d ones; "
            "query with the checkpoint the index was built with"
        )
    stored_id, current_id = index.info.get("checkpoint_id"), _checkpoint_id(embedder.ckpt)
    if stored_id and current_id and stored_id != current_id:
        log.warning("the index was built with another checkpoint (%s); its vectors may not match this model's",
                    index.info.get("checkpoint"))
    stored = index.info.get("modality")
    if embedder.space == "fused" and stored and stored != query_modality:
        raise ConfigError(
            f"query: this index holds {stored} features of a {embedder.kind} model, which compare only with "
            f"{stored} queries (only a dual encoder relates images to texts); query with {stored}"
        )


def query_index(
    index_dir: str | Path,
    checkpoint: str | Path | LoadedCheckpoint | None = None,
    text: str | None = None,
    image: str | Path | None = None,
    k: int = 5,
) -> Iterator[dict[str, Any]]:
    """Yield the ``k`` nearest indexed rows to a text or an image file, nearest first.

    ``checkpoint`` defaults to the one recorded in ``index.json``. Each hit is its metadata with
    ``rank`` (1-based) and ``score`` (cosine similarity, or minus the squared distance for ``l2``).
    """
    if (text is None) == (image is None):
        raise ConfigError("query: give exactly one of text or image")
    index = FaissIndex.load(index_dir)
    source = checkpoint if checkpoint is not None else index.info.get("checkpoint")
    if source is None:
        raise ConfigError(f"{index_dir}: index.json records no checkpoint; pass checkpoint=...")
    embedder = Embedder(open_checkpoint(source))
    modality = "text" if text is not None else "image"
    check_compatible(index, embedder, modality)
    if text is not None:
        if not text.strip():
            raise ConfigError("text: the query is empty")
        query = embedder.texts([text])
    else:
        from medfuse.data.images import load_image

        cfg = embedder.config
        query = embedder.pixels(load_image(Path(str(image)), channels=cfg.channels, window=cfg.window, frame=cfg.frame))
    for rank, hit in enumerate(index.search(query.numpy(), k)[0], start=1):
        yield {"rank": rank, "score": hit.score, **hit.meta}
