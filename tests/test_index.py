"""Retrieval indexes: FAISS search against brute force, files round-trip, manifests embedded and queried."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from medfuse.core.errors import ConfigError  # noqa: E402
from medfuse.index import FaissIndex, build_index_from_manifest, query_index  # noqa: E402
from tests.conftest import shared_path  # noqa: E402
from tests.deploy_fixtures import FINDINGS, diagnosis_checkpoint, dual_encoder_checkpoint  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _vectors(n: int = 600, dim: int = 16, seed: int = 0) -> np.ndarray:
    # clustered points, as embeddings are: a brute-force neighbour list is then well defined
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    return (centres[rng.integers(0, 12, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def _brute_cosine(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    a = data / np.linalg.norm(data, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ a.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def test_flat_search_equals_brute_force() -> None:
    data, queries = _vectors(), _vectors(20, seed=1)
    index = FaissIndex.build(data, kind="flat")
    rows, scores = _brute_cosine(data, queries, 5)
    hits = index.search(queries, 5)
    np.testing.assert_array_equal([[h.row for h in q] for q in hits], rows)
    np.testing.assert_allclose([[h.score for h in q] for q in hits], scores, atol=1e-5)
    l2 = FaissIndex.build(data, kind="flat", metric="l2").search(queries[:3], 4)
    distances = ((queries[:3, None, :] - data[None]) ** 2).sum(-1)
    expected = np.argsort(distances, axis=1)[:, :4]
    np.testing.assert_array_equal([[h.row for h in q] for q in l2], expected)
    np.testing.assert_allclose([[h.score for h in q] for q in l2], -np.take_along_axis(distances, expected, 1), rtol=1e-4)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_recall_the_exact_neighbours(kind: str) -> None:
    data, queries = _vectors(), _vectors(50, seed=2)
    index = FaissIndex.build(data, kind=kind)
    exact, _ = _brute_cosine(data, queries, 10)
    found = [[h.row for h in q] for q in index.search(queries, 10)]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    assert recall >= 0.9, recall
    if kind == "ivf":
        assert index.info["params"]["nlist"] == 15 and index.info["params"]["nprobe"] == 8  # 600 // 39 cells


def test_files_round_trip_and_errors(tmp_path: Path) -> None:
    data = _vectors(80)
    meta = [{"row": i, "case_id": f"c{i}", "text": f"report {i} — ünïcode", "image": f"img/{i}.png"} for i in range(80)]
    index = FaissIndex.build(data, kind="hnsw", meta=meta, info={"checkpoint": "ckpt", "modality": "image"})
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.faiss", "index.json", "meta.jsonl"]
    described = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert {k: described[k] for k in ("kind", "dim", "metric", "count", "checkpoint")} == \
        {"kind": "hnsw", "dim": 16, "metric": "cosine", "count": 80, "checkpoint": "ckpt"}
    loaded = FaissIndex.load(tmp_path / "idx")
    assert [h.meta for h in loaded.search(data[7], 3)[0]] == [h.meta for h in index.search(data[7], 3)[0]]
    assert loaded.search(data[7], 1)[0][0].meta["text"] == "report 7 — ünïcode"
    with pytest.raises(ConfigError, match="dimension 8 does not match the index's 16"):
        loaded.search(np.ones((1, 8)), 3)
    with pytest.raises(ConfigError, match="8 rows for 10 vectors"):
        FaissIndex.build(data[:10], meta=meta[:8])
    (tmp_path / "idx" / "meta.jsonl").write_text("\n".join(json.dumps(m) for m in meta[:79]) + "\n")
    with pytest.raises(ConfigError, match="80 vectors but 79 metadata rows"):
        FaissIndex.load(tmp_path / "idx")
    with pytest.raises(ConfigError, match="no index.json"):
        FaissIndex.load(tmp_path)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfuse.data.synth import generate_synthetic

    folder = tmp_path_factory.mktemp("synth")
    generate_synthetic(folder, n=14, image_size=32)
    return folder / "manifest.csv"


def test_dual_encoder_index_from_a_manifest(synth: Path, tmp_path: Path) -> None:
    ckpt = dual_encoder_checkpoint(tmp_path / "clip")
    info = build_index_from_manifest(ckpt, synth, tmp_path / "idx", modality="image", kind="flat")
    rows = list(csv.DictReader(synth.open()))
    assert info["count"] == len(rows) == 14 and info["space"] == "dual_encoder" and info["modality"] == "image"
    meta = [json.loads(line) for line in (tmp_path / "idx" / "meta.jsonl").read_text().splitlines()]
    by_case = {r["study_id"]: r for r in rows}
    for entry in meta:
        row = by_case[entry["case_id"]]
        assert entry["image"] == row["image_path"] and entry["text"] == row["report"]
        assert entry["labels"] == [f for f in FINDINGS if row[f] == "1"]
    # an indexed image finds itself first
    probe = meta[5]
    hits = list(query_index(tmp_path / "idx", image=synth.parent / probe["image"], k=3))
    assert hits[0]["case_id"] == probe["case_id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    # a text query searches the same space (the checkpoint comes from index.json)
    by_text = list(query_index(tmp_path / "idx", text="left lower lobe consolidation", k=14))
    assert sorted(h["row"] for h in by_text) == list(range(14))
    with pytest.raises(ConfigError, match="exactly one of text or image"):
        next(query_index(tmp_path / "idx", text="a", image=synth))


def test_diagnosis_index_of_texts(synth: Path, tmp_path: Path) -> None:
    run = diagnosis_checkpoint(tmp_path / "run", training_folder=True)  # a training folder: its model/ is used
    info = build_index_from_manifest(run, synth, tmp_path / "idx", modality="text", kind="ivf", split="train")
    train_rows = [r for r in csv.DictReader(synth.open()) if r["split"] == "train"]
    assert info["count"] == len(train_rows) and info["space"] == "fused" and info["split"] == "train"
    hits = list(query_index(tmp_path / "idx", text=train_rows[0]["report"], k=1))
    assert hits[0]["case_id"] == train_rows[0]["study_id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="query with text"):
        next(query_index(tmp_path / "idx", image=synth.parent / train_rows[0]["image_path"]))
    with pytest.raises(ConfigError, match="reads no audio|modality"):
        build_index_from_manifest(run, synth, tmp_path / "bad", modality="audio")


@pytest.mark.shared
def test_index_of_shared_chest_xrays(tmp_path: Path) -> None:
    manifest = shared_path("pneumoniamnist", "manifest.csv")
    run = diagnosis_checkpoint(tmp_path / "run")
    info = build_index_from_manifest(run, manifest, tmp_path / "idx", modality="image", split="val", max_rows=24)
    assert info["count"] == 24 and info["split"] == "val" and info["failed"] == 0
    meta = [json.loads(line) for line in (tmp_path / "idx" / "meta.jsonl").read_text().splitlines()]
    assert {label for m in meta for label in m["labels"]} <= {"normal", "pneumonia"}
    hits = list(query_index(tmp_path / "idx", image=manifest.parent / meta[3]["image"], k=2))
    assert hits[0]["row"] == 3
