"""Patient-level splits: split names, leakage checks and stratified, seeded assignment of patients.

Every row of one patient goes to the same split, so no patient is seen in training and in evaluation.
Assignment stratifies patients on their label (multi-class: the patient's most frequent label;
multi-label: the patient's most frequent positive label, ties to the rarer label) so each split keeps
the label mix, and is a pure function of the data and the seed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medfuse.core.errors import ConfigError, DataError
from medfuse.data.manifest import is_missing, parse_number, text_value

__all__ = [
    "SPLIT_ALIASES",
    "assign_splits",
    "canonical_split",
    "check_leakage",
    "find_leaks",
    "patient_strata",
    "resolve_split",
]

# Names that mean the same split in different data sets (train/dev, train/validate, ...).
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training", "trn"),
    "val": ("val", "valid", "validation", "validate", "dev", "development"),
    "test": ("test", "testing", "holdout", "eval"),
}
NO_POSITIVE = "(none)"
MISSING = "(missing)"


def canonical_split(name: str) -> str:
    """Return ``train``/``val``/``test`` for a known alias (``dev`` -> ``val``), else the name itself."""
    low = str(name).strip().lower()
    for canon, aliases in SPLIT_ALIASES.items():
        if low in aliases:
            return canon
    return str(name)


def resolve_split(requested: str, available: Iterable[str]) -> str:
    """Return the split name in ``available`` that ``requested`` means (exact, else the same alias group).

    ``resolve_split("val", ["train", "validate"])`` gives ``"validate"``. Raises :class:`ConfigError` naming
    the available splits when nothing fits.
    """
    names = sorted({str(a) for a in available})
    if requested in names:
        return requested
    canon = canonical_split(requested)
    matches = [n for n in names if canonical_split(n) == canon]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(f"split: unknown value '{requested}'; the manifest has: {', '.join(names) or '(no rows)'}")


def find_leaks(frame: pd.DataFrame, patient_col: str, split_col: str) -> dict[str, list[str]]:
    """Return ``{patient: sorted splits}`` for every patient whose rows lie in more than one split."""
    patients = frame[patient_col].map(text_value)
    splits = frame[split_col].map(text_value)
    pairs = pd.DataFrame({"p": patients, "s": splits})
    pairs = pairs[pairs["p"] != ""]
    counts = pairs.groupby("p", sort=True)["s"].nunique()
    leaking = counts[counts > 1].index
    sub = pairs[pairs["p"].isin(leaking)]
    return {str(p): sorted(set(g["s"])) for p, g in sub.groupby("p", sort=True)}


def check_leakage(
    frame: pd.DataFrame, patient_col: str, split_col: str, *, path: str | Path | None = None
) -> None:
    """Raise :class:`DataError` naming the patients (up to 10) found in more than one split."""
    for col in (patient_col, split_col):
        if col not in frame.columns:
            raise DataError(f"column '{col}' not in the manifest", path=path, field=col)
    leaks = find_leaks(frame, patient_col, split_col)
    if leaks:
        shown = "; ".join(f"'{p}' in {' and '.join(s)}" for p, s in list(leaks.items())[:10])
        more = f" (and {len(leaks) - 10} more)" if len(leaks) > 10 else ""
        raise DataError(
            f"{len(leaks)} patient(s) appear in more than one split: {shown}{more}; "
            "re-split by patient (medfuse.data.splits.assign_splits) or fix the patient ids",
            path=path,
            field=split_col,
        )


def patient_strata(
    frame: pd.DataFrame,
    patient_col: str | None,
    *,
    label: str | None = None,
    labels: Sequence[str] = (),
    label_sep: str | None = None,
) -> pd.Series:
    """Return one stratum per patient (index: patient id as text), sorted by patient.

    Multi-class: the patient's most frequent label (ties to the name that sorts first).
    Multi-label (``labels`` 0/1 columns, or ``label`` with ``label_sep``): the patient's most frequent
    positive label, ties to the label with fewer positive patients overall. No label: one stratum.
    """
    patients = _patient_ids(frame, patient_col)
    if labels or label_sep:
        positives = _positive_sets(frame, labels, label, label_sep)
        per_patient: dict[str, Counter[str]] = {}
        for pid, pos in zip(patients, positives):
            per_patient.setdefault(pid, Counter()).update(pos)
        overall = Counter(lab for c in per_patient.values() for lab in c)
        out = {}
        for pid, counts in per_patient.items():
            if not counts:
                out[pid] = NO_POSITIVE
            else:
                out[pid] = min(counts, key=lambda lab: (-counts[lab], overall[lab], lab))
        return pd.Series(out, dtype=object).sort_index()
    if label:
        values = frame[label].map(lambda v: MISSING if is_missing(v) else text_value(v))
        pairs = pd.DataFrame({"p": patients, "y": values.to_numpy()})
        out = {}
        for pid, group in pairs.groupby("p", sort=True):
            counts = Counter(group["y"])
            out[str(pid)] = min(counts, key=lambda y: (-counts[y], y))
        return pd.Series(out, dtype=object).sort_index()
    return pd.Series(dict.fromkeys(sorted(set(patients)), "all"), dtype=object).sort_index()


def assign_splits(
    frame: pd.DataFrame,
    patient_col: str | None,
    *,
    fractions: Mapping[str, float] | None = None,
    label: str | None = None,
    labels: Sequence[str] = (),
    label_sep: str | None = None,
    seed: int = 0,
) -> pd.Series:
    """Return the split name of each row (same index as ``frame``), assigned per patient.

    ``fractions`` maps split names to shares of patients (default train 0.8, val 0.1, test 0.1; they are
    normalised to sum to 1). Patients are stratified on their label (see :func:`patient_strata`) and shuffled
    with ``numpy.random.default_rng(seed)``; within each stratum the counts follow the fractions, with the
    rounding remainder carried to the next stratum so the totals also follow them. Rows without a patient
    id are their own patient. The result depends only on the data and ``seed``, not on row order.
    """
    fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
    if not fractions or any((not math.isfinite(f)) or f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise ConfigError(f"fractions: need non-negative shares with a positive sum, got {fractions}")
    names = list(fractions)
    shares = np.asarray([fractions[n] for n in names], dtype=np.float64)
    shares = shares / shares.sum()
    strata = patient_strata(frame, patient_col, label=label, labels=labels, label_sep=label_sep)
    rng = np.random.default_rng(seed)
    carry = np.zeros(len(names))
    chosen: dict[str, str] = {}
    for _, group in strata.groupby(strata.to_numpy(), sort=True):
        members = np.asarray(sorted(group.index), dtype=object)
        members = members[rng.permutation(len(members))]
        ideal = len(members) * shares + carry
        counts = np.floor(ideal).astype(int)
        short = len(members) - int(counts.sum())
        if short > 0:
            order = sorted(range(len(names)), key=lambda i: (-(ideal[i] - counts[i]), i))
            for i in order[:short]:
                counts[i] += 1
        carry = ideal - counts
        start = 0
        for name, count in zip(names, counts):
            for pid in members[start : start + count]:
                chosen[str(pid)] = name
            start += count
    patients = _patient_ids(frame, patient_col)
    return pd.Series([chosen[p] for p in patients], index=frame.index, dtype=object, name="split")


def _patient_ids(frame: pd.DataFrame, patient_col: str | None) -> list[str]:
    """Patient id per row as text; rows without one get a unique id of their own (``row:<line>``)."""
    if patient_col is None:
        return [f"row:{i}" for i in frame.index]
    ids = frame[patient_col].map(text_value).tolist()
    return [pid if pid else f"row:{idx}" for pid, idx in zip(ids, frame.index)]


def _positive_sets(
    frame: pd.DataFrame, labels: Sequence[str], label: str | None, label_sep: str | None
) -> list[list[str]]:
    """For each row, the names of its positive labels."""
    if labels:
        out: list[list[str]] = [[] for _ in range(len(frame))]
        for col in labels:
            for i, v in enumerate(frame[col].tolist()):
                try:
                    if (parse_number(v) or 0.0) > 0.5:
                        out[i].append(col)
                except ValueError:
                    continue
        return out
    assert label is not None and label_sep is not None
    return [split_names(v, label_sep) for v in frame[label].tolist()]


def split_names(value: object, sep: str) -> list[str]:
    """Return the non-empty names in a ``sep``-separated cell, in order, each once."""
    if is_missing(value):
        return []
    seen: dict[str, None] = {}
    for part in text_value(value).split(sep):
        part = part.strip()
        if part:
            seen.setdefault(part, None)
    return list(seen)
