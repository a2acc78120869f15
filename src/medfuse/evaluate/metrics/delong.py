"""DeLong's test for two correlated AUROCs, with the fast midrank algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach", Biometrics 44(3). Sun & Xu (2014), "Fast
implementation of DeLong's algorithm for comparing the areas under correlated receiver operating
characteristic curves", IEEE Signal Processing Letters 21(11): the structural components come from
midranks, O(N log N) instead of O(m n).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics._inputs import check_binary, check_finite, check_same_length, to_numpy


class DeLongResult(NamedTuple):
    """AUROCs of models A and B, the z statistic of ``auc_a - auc_b`` and its two-sided p-value."""

    auc_a: float
    auc_b: float
    z: float
    p: float


def delong_covariance(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return the AUROCs ``(M,)`` of M score vectors and their DeLong covariance ``(M, M)``.

    y_true: (N,) 0/1 with both classes present; scores: (M, N), one row per model.
    With m positives and n negatives, V10 (per positive) and V01 (per negative) are the structural
    components; Cov = S10 / m + S01 / n with S the sample covariances (ddof 1) of the components.
    """
    targets = check_binary(to_numpy(y_true, "y_true"), "y_true")
    preds = np.atleast_2d(to_numpy(scores, "scores", dtype=np.float64))
    check_same_length(("y_true", targets), ("scores row", preds[0]))
    check_finite(preds, "scores")
    m, n = int(targets.sum()), int((~targets).sum())
    if m < 2 or n < 2:
        raise DataError(
            f"DeLong's test needs at least two positives and two negatives, got {m} and {n}", field="y_true"
        )
    positives, negatives = preds[:, targets], preds[:, ~targets]
    rank_pos = stats.rankdata(positives, axis=1)  # midranks within each class
    rank_neg = stats.rankdata(negatives, axis=1)
    rank_all = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    aucs = rank_all[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2.0 * n)
    v10 = (rank_all[:, :m] - rank_pos) / n  # share of negatives below each positive (ties half)
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # share of positives above each negative
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_test(y_true: Any, prob_a: Any, prob_b: Any) -> DeLongResult:
    """Return both AUROCs, z and the two-sided p-value of DeLong's test that they are equal.

    y_true: (N,) 0/1; prob_a, prob_b: (N,) scores of two models on the same samples. Identical
    scores give z = 0 and p = 1.
    """
    a = to_numpy(prob_a, "prob_a", dtype=np.float64)
    b = to_numpy(prob_b, "prob_b", dtype=np.float64)
    check_same_length(("prob_a", a), ("prob_b", b))
    aucs, cov = delong_covariance(y_true, np.stack([a, b]))
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    difference = aucs[0] - aucs[1]
    if variance <= 1e-15 * max(1.0, cov[0, 0] + cov[1, 1]):
        z = 0.0 if abs(difference) < 1e-12 else float(np.sign(difference) * np.inf)
    else:
        z = float(difference / np.sqrt(variance))
    p = float(2 * stats.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), z, p)
