"""Paired significance tests between two runs evaluated on the same rows.

Binary and multi-label outputs: DeLong's test per output on AUROC (DeLong et al. 1988), and for
multi-label heads a paired bootstrap of the macro AUROC; multiclass heads: a paired bootstrap of the
accuracy (Koehn 2004). Resampling is by patient when the predictions name patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfuse.core.errors import DataError
from medfuse.tracking.predictions import PredictionTable


@dataclass(frozen=True)
class PairedTest:
    """One test: the metric, the output it is on, both values, the statistic (z for DeLong) and the p-value."""

    metric: str
    output: str
    test: str
    value_a: float
    value_b: float
    statistic: float | None
    p: float
    n: int


@dataclass
class PairedComparison:
    """The tests between runs ``a`` and ``b`` (by name) and notes on what could not be tested."""

    a: str
    b: str
    tests: list[PairedTest]
    notes: list[str]


def align(a: PredictionTable, b: PredictionTable) -> tuple[PredictionTable, PredictionTable, list[str]]:
    """Return both tables restricted to their shared rows in one order, and notes on what was dropped."""
    position_b = {row: i for i, row in enumerate(b.rows.tolist())}
    pairs = [(i, position_b[row]) for i, row in enumerate(a.rows.tolist()) if row in position_b]
    notes = []
    if len(pairs) < max(len(a.rows), len(b.rows)):
        notes.append(f"{len(pairs)} shared rows (of {len(a.rows)} and {len(b.rows)})")
    index_a = np.asarray([p[0] for p in pairs], dtype=np.int64)
    index_b = np.asarray([p[1] for p in pairs], dtype=np.int64)
    return a.take(index_a), b.take(index_b), notes


def _same_labels(a: np.ndarray, b: np.ndarray) -> bool:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return x.shape == y.shape and bool(np.all((x == y) | (np.isnan(x) & np.isnan(y))))


def paired_tests(a: PredictionTable, b: PredictionTable, *, n_resamples: int = 1000,
                 seed: int = 0) -> tuple[list[PairedTest], list[str]]:
    """Return the paired tests of ``a`` against ``b`` on their shared rows, and notes on what was skipped."""
    from medfuse.evaluate.metrics import accuracy, auroc, delong_test, paired_bootstrap_test

    if a.task != b.task or a.names != b.names:
        return [], [f"the runs predict different outputs ({a.task} {a.names} vs {b.task} {b.names})"]
    a, b, notes = align(a, b)
    if len(a.rows) == 0:
        return [], notes + ["the runs share no evaluated rows (different manifests or splits)"]
    if not _same_labels(a.y, b.y):
        return [], notes + ["the labels differ on the shared rows, so these are not the same samples"]
    groups = a.patients
    tests: list[PairedTest] = []
    if a.task == "multiclass":
        y = a.y.astype(np.int64)
        pred_a, pred_b = a.probs.argmax(1), b.probs.argmax(1)
        try:
            p = paired_bootstrap_test(accuracy, y, pred_a, pred_b, groups=groups, n_resamples=n_resamples, seed=seed)
        except DataError as exc:
            return tests, notes + [f"accuracy: {exc}"]
        tests.append(PairedTest("accuracy", "all", "paired bootstrap", accuracy(y, pred_a), accuracy(y, pred_b),
                                None, p, len(y)))
        return tests, notes
    labels = a.y.reshape(len(a.rows), -1)
    for k, name in enumerate(a.names):
        keep = np.isfinite(labels[:, k])
        try:
            result = delong_test(labels[keep, k].astype(np.int64), a.probs[keep, k], b.probs[keep, k])
        except DataError as exc:
            notes.append(f"{name}: {exc}")
            continue
        tests.append(PairedTest("auroc", name, "DeLong", result.auc_a, result.auc_b, result.z, result.p,
                                int(keep.sum())))
    if a.task == "multilabel":
        keep = np.isfinite(labels).all(axis=1)
        y = labels[keep].astype(np.int64)
        kwargs = {"task": "multilabel"}
        try:
            p = paired_bootstrap_test(auroc, y, a.probs[keep], b.probs[keep],
                                      groups=groups[keep] if groups is not None else None,
                                      n_resamples=n_resamples, seed=seed, metric_kwargs=kwargs)
            tests.append(PairedTest("auroc", "macro", "paired bootstrap", auroc(y, a.probs[keep], **kwargs),
                                    auroc(y, b.probs[keep], **kwargs), None, p, int(keep.sum())))
        except (DataError, ValueError) as exc:
            notes.append(f"macro auroc: {exc}")
    return tests, notes
