"""The shared data sets validate as they are (no conversion) and load through ManifestDataset.

Every row is checked and every referenced file decoded. Skipped when ../shared/data is absent.
Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import time

import pytest
import torch

from medfuse.data import ManifestDataset, build_loader, detect_preset, read_manifest, validate_manifest
from tests.conftest import shared_path

pytestmark = pytest.mark.shared

# name -> (manifest, rows per split as published in ../shared/data/README.md)
SHARED = {
    "medpix2": ("medpix2/manifest.jsonl", {"train": 1653, "dev": 197}),
    "slake": ("slake/manifest.jsonl", {"train": 4919, "validate": 1053}),
    "pneumoniamnist": ("pneumoniamnist/manifest.csv", {"train": 3882, "val": 524}),
    "heartsound2016": ("heartsound2016/manifest.csv", {"train": 490, "dev": 31}),
    "ecg_cinc2021": ("ecg_cinc2021/manifest.csv", {"train": 50}),
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_manifest_validates_without_losing_rows(name, tmp_path):
    relative, splits = SHARED[name]
    path = shared_path(*relative.split("/"))
    manifest = read_manifest(path)
    assert detect_preset(manifest.columns) == name
    assert manifest.dataframe["split"].value_counts().to_dict() == splits
    start = time.perf_counter()
    report = validate_manifest(manifest, quarantine_path=tmp_path / "q.csv")
    seconds = time.perf_counter() - start
    print(f"\n{report.summary()} in {seconds:.1f}s")
    assert report.read == sum(splits.values())
    assert report.read == report.kept + report.quarantined
    assert (tmp_path / "q.csv").is_file()
    assert report.quarantined <= 0.01 * report.read, report.summary()
    if name == "slake":  # repeated question/answer pairs and one empty answer, as published
        assert set(report.reasons) <= {"duplicate_row", "empty_answer"}
    else:
        assert report.quarantined == 0, report.summary()


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_manifest_loads_a_batch(name):
    relative, splits = SHARED[name]
    path = shared_path(*relative.split("/"))
    split = "val" if len(splits) > 1 else "train"  # 'val' resolves to dev/validate/val
    ds = ManifestDataset(path, name, split=split, max_rows=6)
    batch = next(iter(build_loader(ds, batch_size=6)))
    assert batch["index"].tolist() == list(range(6)) and ds.n_failed == 0
    if ds.config.image:
        assert batch["image"].shape == (6, 3, 224, 224) and torch.isfinite(batch["image"]).all()
    if ds.config.audio:
        assert batch["audio"].ndim == 3 and batch["audio_mask"].any(dim=1).all()
    if ds.task in ("binary", "multiclass"):
        assert batch["labels"].dtype == torch.int64 and (batch["labels"] >= 0).all()
    if ds.task == "multilabel":
        assert batch["labels"].shape == (6, len(ds.classes))
    if ds.config.question:
        assert all(batch["question"]) and len(batch["answer"]) == 6
