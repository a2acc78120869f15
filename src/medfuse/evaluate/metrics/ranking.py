"""Threshold-free classification metrics: AUROC, AUPRC, ROC/PR curves, sensitivity at fixed specificity.

Every binary metric is computed from the scores grouped by distinct value, so tied scores count half
(AUROC, as the Mann-Whitney statistic) or enter a precision-recall step together (AUPRC, as
scikit-learn's ``average_precision_score``). The ``*_weighted`` forms take a matrix of sample weights
``(B, N)`` and score B weightings at once; integer weights are equivalent to repeating samples, which is
what the bootstrap in :mod:`medfuse.evaluate.metrics.uncertainty` uses.

Multi-class scores are one-vs-rest (a class against all others), multi-label scores are per label; the
macro mean skips labels where the metric is undefined (only one class present) after a logged warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfuse.evaluate.metrics._inputs import label_matrix, label_names
from medfuse.evaluate.metrics._registry import METRICS
from medfuse.evaluate.metrics._weights import supports_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RocCurve:
    """Points of a ROC curve, thresholds decreasing; the first point is (0, 0) at threshold +inf.

    fpr, tpr, thresholds: (G + 1,) for G distinct scores.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class PrCurve:
    """Points of a precision-recall curve in scikit-learn's layout.

    precision, recall: (G + 1,), recall decreasing, ending at (precision 1, recall 0).
    thresholds: (G,) increasing distinct scores; point i predicts positive when score >= thresholds[i].
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def _grouped(
    y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray, descending: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return positive and negative weight per distinct score ``(B, G)`` and the distinct scores ``(G,)``."""
    order = np.argsort(-y_score if descending else y_score, kind="stable")
    scores = y_score[order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    w = weights[:, order]
    positive = y_true[order]
    pos = np.add.reduceat(np.where(positive[None, :], w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive[None, :], 0.0, w), starts, axis=1)
    return pos, neg, scores[starts]


def binary_auroc_weighted(weights: np.ndarray, y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Return the AUROC under each row of sample weights, ``(B,)``; NaN where one class has no weight.

    weights: (B, N) non-negative; y_true: (N,) bool; y_score: (N,).
    AUROC = sum_i w_i+ (W-(s < s_i) + W-(s = s_i) / 2) / (W+ W-), the weighted Mann-Whitney U statistic
    (Hanley & McNeil 1982), equal to the trapezoidal area under the ROC curve.
    """
    pos, neg, _ = _grouped(y_true, y_score, np.atleast_2d(weights).astype(np.float64), descending=False)
    neg_below = np.cumsum(neg, axis=1) - neg
    numerator = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def binary_average_precision_weighted(
    weights: np.ndarray, y_true: np.ndarray, y_score: np.ndarray
) -> np.ndarray:
    """Return average precision under each row of sample weights, ``(B,)``; NaN without positives.

    AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds n (no interpolation), as scikit-learn's
    ``average_precision_score`` and torchmetrics' ``AveragePrecision``.
    """
    pos, neg, _ = _grouped(y_true, y_score, np.atleast_2d(weights).astype(np.float64), descending=True)
    tp = np.cumsum(pos, axis=1)
    predicted = tp + np.cumsum(neg, axis=1)
    total_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1.0), 0.0)
        ap = (precision * pos).sum(axis=1) / total_pos
    return np.where(total_pos > 0, ap, np.nan)


def roc_curve(y_true: Any, y_score: Any) -> RocCurve:
    """Return the ROC curve of a binary problem at every distinct score (no points dropped).

    y_true: (N,) 0/1; y_score: (N,). Matches ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
    """
    targets, scores, _ = label_matrix(y_true, y_score, "binary")
    pos, neg, thresholds = _grouped(targets[:, 0], scores[:, 0], np.ones((1, len(scores))), descending=True)
    tps = np.r_[0.0, np.cumsum(pos[0])]
    fps = np.r_[0.0, np.cumsum(neg[0])]
    with np.errstate(invalid="ignore", divide="ignore"):
        return RocCurve(fpr=fps / fps[-1], tpr=tps / tps[-1], thresholds=np.r_[np.inf, thresholds])


def pr_curve(y_true: Any, y_score: Any) -> PrCurve:
    """Return the precision-recall curve of a binary problem at every distinct score.

    y_true: (N,) 0/1; y_score: (N,). Matches ``sklearn.metrics.precision_recall_curve``.
    """
    targets, scores, _ = label_matrix(y_true, y_score, "binary")
    pos, neg, thresholds = _grouped(targets[:, 0], scores[:, 0], np.ones((1, len(scores))), descending=True)
    tps = np.cumsum(pos[0])
    predicted = tps + np.cumsum(neg[0])
    precision = tps / predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return PrCurve(
        precision=np.r_[precision[::-1], 1.0], recall=np.r_[recall[::-1], 0.0], thresholds=thresholds[::-1]
    )


def _binary_sens_spec(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return sensitivity and specificity at every ROC point, ``(G + 1,)`` each."""
    pos, neg, _ = _grouped(targets, scores, np.ones((1, len(scores))), descending=True)
    tps = np.r_[0.0, np.cumsum(pos[0])]
    fps = np.r_[0.0, np.cumsum(neg[0])]
    return tps / tps[-1], 1.0 - fps / fps[-1]


def _per_label(
    name: str,
    y_true: Any,
    y_score: Any,
    task: str | None,
    labels: Sequence[str] | None,
    fn: Callable[[np.ndarray, np.ndarray], float],
    needs_negatives: bool = True,
) -> np.ndarray:
    """Apply a binary ``fn(targets, scores)`` to each label column, NaN (with a warning) where undefined."""
    targets, scores, _ = label_matrix(y_true, y_score, task)
    names = label_names(labels, targets.shape[1])
    values = np.full(targets.shape[1], np.nan)
    for k in range(targets.shape[1]):
        n_pos = int(targets[:, k].sum())
        if n_pos == 0 or (needs_negatives and n_pos == len(targets)):
            log.warning(
                "%s is undefined for label '%s': y_true holds only %s; reported as NaN and left out of "
                "the macro mean",
                name,
                names[k],
                "negatives" if n_pos == 0 else "positives",
            )
            continue
        values[k] = fn(targets[:, k], scores[:, k])
    return values


def macro(values: np.ndarray) -> float:
    """Return the mean of the finite entries of ``values`` (NaN when there are none)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def auroc_per_label(
    y_true: Any, y_score: Any, *, task: str | None = None, labels: Sequence[str] | None = None
) -> np.ndarray:
    """Return AUROC per label ``(K,)`` (K = 1 for binary, C one-vs-rest for multiclass), NaN where undefined."""
    return _per_label(
        "auroc",
        y_true,
        y_score,
        task,
        labels,
        lambda t, s: float(binary_auroc_weighted(np.ones((1, len(s))), t, s)[0]),
    )


def auprc_per_label(
    y_true: Any, y_score: Any, *, task: str | None = None, labels: Sequence[str] | None = None
) -> np.ndarray:
    """Return average precision per label ``(K,)``, NaN for a label without positives."""
    return _per_label(
        "auprc",
        y_true,
        y_score,
        task,
        labels,
        lambda t, s: float(binary_average_precision_weighted(np.ones((1, len(s))), t, s)[0]),
        needs_negatives=False,
    )


def _macro_weighted(
    binary_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> Callable[..., np.ndarray]:
    """Lift a weighted binary metric to the macro mean over label columns, ``(B,)``."""

    def weighted(weights: np.ndarray, y_true: Any, y_score: Any, *, task: str | None = None) -> np.ndarray:
        targets, scores, _ = label_matrix(y_true, y_score, task)
        per_label = np.stack(
            [binary_fn(weights, targets[:, k], scores[:, k]) for k in range(targets.shape[1])]
        )
        finite = np.isfinite(per_label)
        with np.errstate(invalid="ignore"):
            return np.where(finite.any(axis=0), np.nansum(per_label, axis=0) / finite.sum(axis=0), np.nan)

    return weighted


@METRICS.register("auroc")
@supports_weights(_macro_weighted(binary_auroc_weighted))
def auroc(y_true: Any, y_score: Any, *, task: str | None = None) -> float:
    """Return the area under the ROC curve (macro one-vs-rest mean for multiclass and multilabel).

    y_true: (N,) 0/1, (N,) class ids or (N, K) 0/1; y_score: (N,), (N, C) or (N, K) scores.
    The task follows from the shapes unless given. Labels with one class only are NaN, excluded from
    the mean. Matches ``sklearn.metrics.roc_auc_score`` (``multi_class="ovr"``, ``average="macro"``).
    """
    return macro(auroc_per_label(y_true, y_score, task=task))


@METRICS.register("auprc")
@supports_weights(_macro_weighted(binary_average_precision_weighted))
def auprc(y_true: Any, y_score: Any, *, task: str | None = None) -> float:
    """Return the area under the precision-recall curve as average precision (macro over labels).

    Shapes as :func:`auroc`. Matches ``sklearn.metrics.average_precision_score`` per label.
    """
    return macro(auprc_per_label(y_true, y_score, task=task))


def sensitivity_at_specificity_per_label(
    y_true: Any,
    y_score: Any,
    min_specificity: float,
    *,
    task: str | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Return the highest sensitivity reached at specificity >= ``min_specificity`` per label, ``(K,)``.

    As torchmetrics' ``sensitivity_at_specificity``: the best ROC point that meets the constraint.
    """

    def best(t: np.ndarray, s: np.ndarray) -> float:
        sens, spec = _binary_sens_spec(t, s)
        return float(sens[spec >= min_specificity].max())

    return _per_label(f"sensitivity@spec{min_specificity:g}", y_true, y_score, task, labels, best)


def specificity_at_sensitivity_per_label(
    y_true: Any,
    y_score: Any,
    min_sensitivity: float,
    *,
    task: str | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Return the highest specificity reached at sensitivity >= ``min_sensitivity`` per label, ``(K,)``."""

    def best(t: np.ndarray, s: np.ndarray) -> float:
        sens, spec = _binary_sens_spec(t, s)
        return float(spec[sens >= min_sensitivity].max())

    return _per_label(f"specificity@sens{min_sensitivity:g}", y_true, y_score, task, labels, best)


@METRICS.register("sensitivity_at_specificity")
def sensitivity_at_specificity(
    y_true: Any, y_score: Any, min_specificity: float = 0.9, *, task: str | None = None
) -> float:
    """Return the best sensitivity at specificity >= ``min_specificity`` (macro mean over labels)."""
    return macro(sensitivity_at_specificity_per_label(y_true, y_score, min_specificity, task=task))


@METRICS.register("specificity_at_sensitivity")
def specificity_at_sensitivity(
    y_true: Any, y_score: Any, min_sensitivity: float = 0.9, *, task: str | None = None
) -> float:
    """Return the best specificity at sensitivity >= ``min_sensitivity`` (macro mean over labels)."""
    return macro(specificity_at_sensitivity_per_label(y_true, y_score, min_sensitivity, task=task))
