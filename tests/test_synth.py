"""The synthetic multimodal chest data set: schema, patient-level splits, reports, vitals, drawing,
determinism, DICOM output, and that fusion has something to win over each single modality."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfuse.core import ConfigError
from medfuse.data.synth import LABELS, MANIFEST_COLUMNS, VITALS, generate_synthetic, write_report
from medfuse.data.synth.anatomy import draw_anatomy, make_grid, sample_geometry
from medfuse.data.synth.cohort import sample_cohort
from medfuse.data.synth.findings import Finding, absent, draw_consolidation, draw_pneumothorax
from medfuse.data.synth.reports import P_FALSE_HEDGE, P_HEDGE, P_MISS

N = 600


@pytest.fixture(scope="module")
def synth600(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("synth600")
    result = generate_synthetic(out, n=N, seed=0)
    with result.manifest_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert result.n_rows == len(rows) == N
    return out, rows


def test_manifest_schema_and_values(synth600: tuple[Path, list[dict[str, str]]]) -> None:
    out, rows = synth600
    with (out / "manifest.csv").open(encoding="utf-8") as fh:
        assert fh.readline().strip().split(",") == list(MANIFEST_COLUMNS)
        assert sum(1 for _ in fh) == N  # one line per row: reports hold no line breaks
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert {r["sex"] for r in rows} == {"F", "M"} and {r["view"] for r in rows} == {"PA", "AP"}
    assert all(18 <= int(r["age"]) <= 95 for r in rows)
    for name in LABELS:
        prevalence = np.mean([int(r[name]) for r in rows])
        assert {r[name] for r in rows} == {"0", "1"} and 0.05 < prevalence < 0.4, name
    for name in VITALS:
        missing = np.mean([r[name] == "" for r in rows])
        assert 0.01 < missing < 0.1, name
        assert all(float(r[name]) > 0 for r in rows if r[name])
    first = Image.open(out / rows[0]["image_path"])
    assert first.mode == "L" and first.size == (128, 128)
    assert not any((out / folder).exists() for folder in ("sounds", "echo", "ecg"))  # media only on request
    assert all((out / r["image_path"]).is_file() for r in rows[:: N // 20])


def test_patients_have_one_to_four_studies_and_one_split(synth600: tuple[Path, list[dict[str, str]]]) -> None:
    _, rows = synth600
    splits: dict[str, set[str]] = {}
    for r in rows:
        splits.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())  # no patient leaks across splits
    counts = np.bincount(np.unique([r["patient_id"] for r in rows], return_counts=True)[1])
    assert counts[1] > 0 and counts[2:5].sum() > 0 and len(counts) <= 5  # 1-4 studies each
    share = {name: np.mean([r["split"] == name for r in rows]) for name in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.6, abs=0.03) and share["test"] == pytest.approx(0.2, abs=0.03)
    assert len({r["study_id"] for r in rows}) == N


def test_reports_have_structure_negation_uncertainty_and_location(synth600: tuple[Path, list[dict[str, str]]]) -> None:
    _, rows = synth600
    reports = [r["report"] for r in rows]
    assert all(re.search(r"findings:", t, re.I) and re.search(r"impression:", t, re.I) for t in reports)
    text = " ".join(reports)
    for phrase in ("No pleural effusion.", "No pneumothorax", "Possible", "right lower lobe", "left upper lobe", "mm nodule"):
        assert phrase in text, phrase
    assert len(set(reports)) > 0.8 * N  # varied wording


def test_report_writer_misses_hedges_and_raises_false_alarms() -> None:
    present = {n: Finding(n, True, 0.5, "left", "lower", size_mm=10.0, ctr=0.56) for n in LABELS}
    none = {n: absent(n) for n in LABELS}
    mentions_present = [write_report(np.random.default_rng(i), present, "PA").mentions for i in range(400)]
    mentions_absent = [write_report(np.random.default_rng(i), none, "AP").mentions for i in range(400)]
    kinds_p = np.array([m[n] for m in mentions_present for n in LABELS])
    kinds_a = np.array([m[n] for m in mentions_absent for n in LABELS])
    assert np.mean(np.isin(kinds_p, ["omitted", "negated"])) == pytest.approx(P_MISS, abs=0.04) and P_MISS == 0.3
    assert np.mean(kinds_p == "hedged") == pytest.approx(P_HEDGE, abs=0.04)
    assert np.mean(kinds_a == "hedged") == pytest.approx(P_FALSE_HEDGE, abs=0.03) and P_FALSE_HEDGE > 0
    assert not np.isin(kinds_a, ["definite"]).any()
    report = write_report(np.random.default_rng(3), {**none, "effusion": Finding("effusion", True, 0.9, "right")}, "PA")
    if report.mentions["effusion"] == "definite":
        assert "large right pleural effusion" in report.text.lower()


def test_vitals_follow_the_findings(synth600: tuple[Path, list[dict[str, str]]]) -> None:
    _, rows = synth600

    def mean(name: str, label: str, value: str) -> float:
        return float(np.mean([float(r[name]) for r in rows if r[label] == value and r[name]]))

    assert mean("temperature", "consolidation", "1") > mean("temperature", "consolidation", "0") + 0.5
    assert mean("crp", "consolidation", "1") > 3 * mean("crp", "consolidation", "0")
    assert mean("wbc", "consolidation", "1") > mean("wbc", "consolidation", "0") + 1.5
    assert mean("spo2", "pneumothorax", "1") < mean("spo2", "pneumothorax", "0") - 1.0
    assert mean("resp_rate", "pneumothorax", "1") > mean("resp_rate", "pneumothorax", "0") + 1.0


def test_findings_are_drawn_where_they_are() -> None:
    grid = make_grid(96)
    geometry = sample_geometry(np.random.default_rng(0), body_size=1.0, female=False, view="PA", ctr=0.45)
    normal = draw_anatomy(grid, geometry, np.random.default_rng(1))
    sick = draw_anatomy(grid, geometry, np.random.default_rng(1))
    draw_consolidation(sick, grid, geometry, Finding("consolidation", True, 0.8, "right", "lower"), np.random.default_rng(2))
    added = sick.base - normal.base
    half = grid.size // 2
    assert added[half:, :half].sum() > 20 * max(added[:, half:].sum(), 1e-3)  # patient's right = image left, lower
    draw_pneumothorax(sick, grid, geometry, Finding("pneumothorax", True, 0.9, "left", "apical"))
    cleared = (sick.markings == 0) & (normal.markings != 0)  # markings gone: the pneumothorax
    assert cleared.sum() > 30
    assert np.all(grid.u[cleared] > geometry.cx)  # the patient's left is the image right
    assert np.mean(grid.v[cleared] < 0) > 0.6  # mostly apical
    studies = sample_cohort(300, np.random.default_rng(5))
    assert all((s.ctr > 0.5) == bool(s.findings["cardiomegaly"].present) for s in studies)
    assert {s.view for s in studies} == {"PA", "AP"}


def test_fusion_beats_each_modality_and_nothing_is_trivial(synth600: tuple[Path, list[dict[str, str]]]) -> None:
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is needed for the learnability check")
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    assert sklearn is not None
    out, rows = synth600
    train = np.array([r["split"] == "train" for r in rows])
    test = np.array([r["split"] == "test" for r in rows])
    targets = np.array([[int(r[n]) for n in LABELS] for r in rows])
    pixels = np.stack([
        np.asarray(Image.open(out / r["image_path"]).resize((32, 32), Image.Resampling.BOX), dtype=np.float32).ravel() / 255
        for r in rows
    ])
    rng = np.random.default_rng(123)
    projected = pixels @ rng.standard_normal((1024, 256)).astype(np.float32)
    random_features = np.maximum(pixels @ rng.standard_normal((1024, 512)).astype(np.float32), 0.0)
    reports = [r["report"] for r in rows]
    words = CountVectorizer(binary=True, ngram_range=(1, 2), min_df=2).fit([t for t, k in zip(reports, train) if k])
    text = words.transform(reports).toarray().astype(np.float32)
    vitals = np.array([[float(r[n]) if r[n] else np.nan for n in VITALS] for r in rows])
    missing = np.isnan(vitals)
    vitals = np.concatenate([np.where(missing, np.nanmedian(vitals[train], axis=0), vitals), missing], axis=1)

    def standard(x: np.ndarray) -> np.ndarray:
        return StandardScaler().fit(x[train]).transform(x)

    blocks = {"image": standard(projected), "text": standard(text), "vitals": standard(vitals)}
    blocks["all"] = np.concatenate([blocks["image"], blocks["text"], blocks["vitals"]], axis=1)
    blocks["random_features"] = standard(random_features)
    auroc = {}
    for name, x in blocks.items():
        scores = []
        for j in range(len(LABELS)):
            model = LogisticRegression(C=0.05, solver="liblinear").fit(x[train], targets[train, j])
            scores.append(roc_auc_score(targets[test, j], model.predict_proba(x[test])[:, 1]))
        auroc[name] = float(np.mean(scores))
    single = max(auroc["image"], auroc["text"], auroc["vitals"])
    assert auroc["all"] > single + 0.03, auroc  # fusion has something to win
    assert auroc["all"] < 0.97, auroc  # but the task is not solved
    assert all(0.6 < auroc[m] < 0.9 for m in ("image", "text", "vitals")), auroc  # each informative, none enough
    assert auroc["random_features"] < 0.9, auroc  # a linear probe on random features does not solve it


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_synthetic(tmp_path / "a", n=24, seed=7, image_size=64)
    b = generate_synthetic(tmp_path / "b", n=24, seed=7, image_size=64)
    c = generate_synthetic(tmp_path / "c", n=24, seed=8, image_size=64)
    files_a, files_b = _files(a.out_dir), _files(b.out_dir)
    assert files_a == files_b and len(files_a) == 24 + 2
    assert c.manifest_path.read_bytes() != a.manifest_path.read_bytes()
    assert (c.out_dir / "images").glob("*.png") and _files(c.out_dir) != files_a
    first = sorted((tmp_path / "a" / "images").glob("*.png"))[0].name
    assert (tmp_path / "c" / "images" / first).read_bytes() != (tmp_path / "a" / "images" / first).read_bytes()
    assert a.split_counts["train"] + a.split_counts["val"] + a.split_counts["test"] == 24


def test_dicom_output_matches_png(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom", reason="pydicom is needed for DICOM output (pip install 'medfuse[dicom]')")
    from medfuse.data.dicom import read_dicom
    from medfuse.data.images import load_image

    result = generate_synthetic(tmp_path, n=6, seed=1, image_size=64, dicom=True)
    with result.manifest_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        assert row["image_path"].endswith(".dcm")
        path = tmp_path / row["image_path"]
        image = read_dicom(path)
        png = load_image(path.with_suffix(".png"))
        np.testing.assert_allclose(image.pixels, png, atol=0.5 / 255 + 1e-3)
        ds = pydicom.dcmread(path)
        assert (ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored) == ("MONOCHROME2", 16, 12)
        assert ds.ViewPosition == row["view"] and ds.PatientSex == row["sex"]
        assert ds.PatientAge == f"{int(row['age']):03d}Y" and float(ds.RescaleIntercept) == -1024.0
        assert image.meta["view"] == row["view"] and image.meta["window"]["source"] == "header"


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"seed": -1}, {"image_size": 8}, {"split_fractions": (0.5, 0.2, 0.2)}, {"split_fractions": (0.0, 0.5, 0.5)},
     {"media": "all"}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path, **kwargs)  # type: ignore[arg-type]
