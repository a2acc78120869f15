"""Patient-level splits: no leakage, stratified, deterministic; leakage checks; split names."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from medfuse.core.errors import ConfigError, DataError
from medfuse.data import assign_splits, canonical_split, check_leakage, find_leaks, resolve_split
from medfuse.data.splits import patient_strata


def _cohort(n_patients: int = 300, seed: int = 0) -> pd.DataFrame:
    """Patients with 1-4 rows each; label 'rare' for ~10 % of patients, else 'a'/'b'."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "rare" if p % 10 == 0 else ("a" if p % 3 else "b")
        for _ in range(int(rng.integers(1, 5))):
            rows.append({"patient": f"P{p:04d}", "label": label,
                         "f1": int(label == "rare"), "f2": int(label == "b" or rng.random() < 0.2)})
    return pd.DataFrame(rows)


def test_assign_splits_is_patient_level_and_follows_fractions():
    frame = _cohort()
    splits = assign_splits(frame, "patient", label="label", seed=3)
    assert splits.index.equals(frame.index)
    assert find_leaks(frame.assign(split=splits), "patient", "split") == {}
    per_patient = splits.groupby(frame["patient"]).first().value_counts()
    assert per_patient["train"] == 240 and per_patient["val"] == 30 and per_patient["test"] == 30


def test_assign_splits_stratifies_on_the_label():
    frame = _cohort()
    splits = assign_splits(frame, "patient", label="label", seed=1)
    patients = frame.assign(split=splits).groupby("patient").first()
    for name in ("train", "val", "test"):
        share = (patients[patients["split"] == name]["label"] == "rare").mean()
        assert share == pytest.approx(0.1, abs=0.011), name


def test_assign_splits_is_deterministic_and_order_free():
    frame = _cohort()
    first = assign_splits(frame, "patient", label="label", seed=7)
    again = assign_splits(frame, "patient", label="label", seed=7)
    assert first.equals(again)
    shuffled = frame.sample(frac=1.0, random_state=0)
    reordered = assign_splits(shuffled, "patient", label="label", seed=7)
    assert reordered.reindex(frame.index).equals(first)
    other = assign_splits(frame, "patient", label="label", seed=8)
    assert not other.equals(first)


def test_multilabel_strata_use_the_most_frequent_positive():
    frame = pd.DataFrame({
        "patient": ["A", "A", "A", "B", "B", "C", "D"],
        "f1": [1, 1, 0, 1, 0, 0, 1],
        "f2": [1, 0, 1, 1, 1, 0, 1],
    })
    strata = patient_strata(frame, "patient", labels=["f1", "f2"])
    # A: f1 twice, f2 twice -> tie goes to the label fewer patients have (f1: A,B,D; f2: A,B,D -> name order)
    # B: f2 twice; C: none; D: tie -> same rule
    assert strata.to_dict() == {"A": "f1", "B": "f2", "C": "(none)", "D": "f1"}
    sep = pd.DataFrame({"patient": ["A", "A", "B"], "dx": ["x;y", "y", ""]})
    assert patient_strata(sep, "patient", label="dx", label_sep=";").to_dict() == {"A": "y", "B": "(none)"}
    frame_big = _cohort()
    splits = assign_splits(frame_big, "patient", labels=["f1", "f2"], fractions={"train": 0.5, "test": 0.5}, seed=0)
    assert set(splits) == {"train", "test"} and find_leaks(frame_big.assign(s=splits), "patient", "s") == {}


def test_rows_without_patient_are_their_own_patient():
    frame = pd.DataFrame({"patient": ["A", "A", "", None, "B"], "y": ["a"] * 5})
    splits = assign_splits(frame, "patient", fractions={"x": 1, "y": 1}, seed=0)
    assert splits.iloc[0] == splits.iloc[1]
    # four patients (A, two rows without an id, B): two per split
    per_patient = [splits.iloc[0], splits.iloc[2], splits.iloc[3], splits.iloc[4]]
    assert Counter(per_patient) == Counter({"x": 2, "y": 2})
    # without a patient column every row is a patient; the odd one goes to the first split
    assert Counter(assign_splits(frame, None, fractions={"x": 1, "y": 1}, seed=0)) == Counter({"x": 3, "y": 2})


def test_bad_fractions():
    with pytest.raises(ConfigError, match="fractions"):
        assign_splits(_cohort(10), "patient", fractions={"train": -1.0, "val": 0.5})


def test_check_leakage_names_patients_and_splits():
    frame = pd.DataFrame({"pid": ["p1", "p1", "p2", "p3", "p3"], "split": ["train", "val", "train", "test", "train"]})
    assert find_leaks(frame, "pid", "split") == {"p1": ["train", "val"], "p3": ["test", "train"]}
    with pytest.raises(DataError) as info:
        check_leakage(frame, "pid", "split")
    message = str(info.value)
    assert "2 patient(s)" in message and "'p1' in train and val" in message and "'p3' in test and train" in message
    check_leakage(frame[frame["pid"] == "p2"], "pid", "split")
    with pytest.raises(DataError, match="column 'patient'"):
        check_leakage(frame, "patient", "split")


def test_split_names():
    assert [canonical_split(s) for s in ("dev", "validate", "VAL", "train", "test", "holdout", "fold3")] == [
        "val", "val", "val", "train", "test", "test", "fold3"]
    assert resolve_split("val", ["train", "validate"]) == "validate"
    assert resolve_split("val", ["train", "dev"]) == "dev"
    assert resolve_split("test", ["train", "test"]) == "test"
    assert resolve_split("fold3", ["fold3"]) == "fold3"
    with pytest.raises(ConfigError, match="the manifest has: dev, train"):
        resolve_split("test", ["train", "dev"])
