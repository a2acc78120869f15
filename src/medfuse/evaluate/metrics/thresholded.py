"""Metrics on hard predictions: accuracy, balanced accuracy, precision/recall/F1, confusion matrices.

Predictions come from :func:`predictions` (a threshold on probabilities, or the arg-max class).
Single-label inputs are ``(N,)`` class ids (binary is the two-class case: 0/1); multi-label inputs are
``(N, K)`` 0/1 matrices. Averages follow scikit-learn's ``precision_recall_fscore_support`` with
``zero_division=0``, except that a macro mean leaves out a label that appears neither in the targets
nor in the predictions (nothing to get right or wrong there), as torchmetrics does for multi-class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics._inputs import (
    check_binary,
    check_same_length,
    check_task,
    class_ids,
    to_numpy,
)
from medfuse.evaluate.metrics._registry import METRICS
from medfuse.evaluate.metrics._weights import supports_weights

Average = Literal["macro", "micro", "weighted"]
AVERAGES: tuple[str, ...] = ("macro", "micro", "weighted")


@dataclass(frozen=True)
class PrecisionRecallF1:
    """Averaged precision, recall and F1 (floats in [0, 1])."""

    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class LabelStats:
    """Per-label counts and scores, each ``(K,)``: one entry per class (single-label) or label (multi-label)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    support: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def predictions(y_prob: Any, task: str, threshold: float | Sequence[float] = 0.5) -> np.ndarray:
    """Return hard predictions from probabilities.

    binary: ``y_prob`` (N,) -> (N,) int64, 1 where ``y_prob >= threshold``.
    multiclass: ``y_prob`` (N, C) -> (N,) int64 arg-max class (``threshold`` is not used).
    multilabel: ``y_prob`` (N, K) -> (N, K) int64, 1 where ``y_prob >= threshold`` (a float or one per label).
    """
    task = check_task(task)
    probs = to_numpy(y_prob, "y_prob", dtype=np.float64)
    if task == "multiclass":
        if probs.ndim != 2:
            raise DataError(f"multiclass predictions need y_prob (N, C), got shape {probs.shape}")
        return probs.argmax(axis=1).astype(np.int64)
    cut = np.asarray(threshold, dtype=np.float64)
    if task == "binary" and (probs.ndim != 1 or cut.ndim != 0):
        raise DataError(f"binary predictions need y_prob (N,) and one threshold, got shape {probs.shape}")
    if task == "multilabel":
        if probs.ndim != 2:
            raise DataError(f"multilabel predictions need y_prob (N, K), got shape {probs.shape}")
        if cut.ndim == 1 and len(cut) != probs.shape[1]:
            raise ConfigError(f"threshold has {len(cut)} values but y_prob has {probs.shape[1]} labels")
    return (probs >= cut).astype(np.int64)


def _single_or_multi(y_true: Any, y_pred: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (targets, predictions, K): class ids ``(N,)`` with K classes, or 0/1 matrices ``(N, K)``."""
    targets = to_numpy(y_true, "y_true")
    preds = to_numpy(y_pred, "y_pred")
    check_same_length(("y_true", targets), ("y_pred", preds))
    if targets.ndim == 2 or preds.ndim == 2:
        if targets.shape != preds.shape:
            raise DataError(f"multi-label y_true {targets.shape} and y_pred {preds.shape} differ in shape")
        return check_binary(targets, "y_true"), check_binary(preds, "y_pred"), targets.shape[1]
    if num_classes is None:
        num_classes = int(max(targets.max(initial=0), preds.max(initial=0))) + 1
        num_classes = max(num_classes, 2)
    return class_ids(targets, num_classes, "y_true"), class_ids(preds, num_classes, "y_pred"), num_classes


@METRICS.register("confusion_matrix")
def confusion_matrix(y_true: Any, y_pred: Any, *, num_classes: int | None = None) -> np.ndarray:
    """Return the confusion matrix ``(C, C)`` int64: rows are true classes, columns predicted classes.

    y_true, y_pred: (N,) class ids. Matches ``sklearn.metrics.confusion_matrix(labels=range(C))``.
    """
    targets, preds, k = _single_or_multi(y_true, y_pred, num_classes)
    if targets.ndim == 2:
        raise DataError("confusion_matrix takes class ids; use multilabel_confusion_matrix for (N, K) inputs")
    return np.bincount(targets * k + preds, minlength=k * k).reshape(k, k).astype(np.int64)


def multilabel_confusion_matrix(y_true: Any, y_pred: Any) -> np.ndarray:
    """Return one 2x2 matrix per label ``(K, 2, 2)``: ``[[tn, fp], [fn, tp]]``, as scikit-learn."""
    targets, preds, _ = _single_or_multi(y_true, y_pred, None)
    if targets.ndim != 2:
        raise DataError("multilabel_confusion_matrix takes (N, K) 0/1 matrices")
    tp = (targets & preds).sum(0)
    fp = (~targets & preds).sum(0)
    fn = (targets & ~preds).sum(0)
    tn = len(targets) - tp - fp - fn
    return np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], 1).astype(np.int64)


def label_stats(y_true: Any, y_pred: Any, *, num_classes: int | None = None) -> LabelStats:
    """Return per-label tp/fp/fn/support and precision/recall/F1 (0 where a ratio has no denominator)."""
    targets, preds, k = _single_or_multi(y_true, y_pred, num_classes)
    if targets.ndim == 2:
        tp = (targets & preds).sum(0)
        fp = (~targets & preds).sum(0)
        fn = (targets & ~preds).sum(0)
    else:
        matrix = np.bincount(targets * k + preds, minlength=k * k).reshape(k, k)
        tp = np.diag(matrix)
        fp = matrix.sum(0) - tp
        fn = matrix.sum(1) - tp
    tp, fp, fn = (x.astype(np.float64) for x in (tp, fp, fn))
    precision = _safe_ratio(tp, tp + fp)
    recall = _safe_ratio(tp, tp + fn)
    f1 = _safe_ratio(2 * tp, 2 * tp + fp + fn)
    return LabelStats(tp, fp, fn, tp + fn, precision, recall, f1)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return ``numerator / denominator`` with 0 where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def precision_recall_f1(
    y_true: Any, y_pred: Any, *, average: str = "macro", num_classes: int | None = None
) -> PrecisionRecallF1:
    """Return precision, recall and F1 averaged over classes (single-label) or labels (multi-label).

    average: ``macro`` (unweighted mean over labels present in targets or predictions), ``micro``
    (pooled counts) or ``weighted`` (mean weighted by support). Binary 0/1 inputs average both classes,
    as scikit-learn's ``average="macro"`` does; :func:`label_stats` gives the positive class alone.
    """
    if average not in AVERAGES:
        raise ConfigError(f"average '{average}' is not known; choose one of {', '.join(AVERAGES)}")
    stats = label_stats(y_true, y_pred, num_classes=num_classes)
    if average == "micro":
        tp, fp, fn = stats.tp.sum(), stats.fp.sum(), stats.fn.sum()
        p = tp / (tp + fp) if tp + fp > 0 else 0.0
        r = tp / (tp + fn) if tp + fn > 0 else 0.0
        f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
        return PrecisionRecallF1(float(p), float(r), float(f))
    if average == "weighted":
        weights = stats.support
    else:
        weights = ((stats.tp + stats.fp + stats.fn) > 0).astype(np.float64)
    total = weights.sum()
    if total == 0:
        return PrecisionRecallF1(0.0, 0.0, 0.0)
    return PrecisionRecallF1(
        *(float((weights * v).sum() / total) for v in (stats.precision, stats.recall, stats.f1))
    )


@METRICS.register("f1")
def f1_score(y_true: Any, y_pred: Any, *, average: str = "macro", num_classes: int | None = None) -> float:
    """Return the F1 score averaged as in :func:`precision_recall_f1` (macro by default)."""
    return precision_recall_f1(y_true, y_pred, average=average, num_classes=num_classes).f1


def _correct(y_true: Any, y_pred: Any) -> np.ndarray:
    """Return per-sample correctness ``(N,)`` in [0, 1]: exact for class ids, mean over labels for (N, K)."""
    targets, preds, _ = _single_or_multi(y_true, y_pred, None)
    hits = targets == preds
    return hits.mean(axis=1) if hits.ndim == 2 else hits.astype(np.float64)


def _accuracy_weighted(weights: np.ndarray, y_true: Any, y_pred: Any) -> np.ndarray:
    """Accuracy under each row of sample weights ``(B, N)`` -> ``(B,)``."""
    weights = np.atleast_2d(weights).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return weights @ _correct(y_true, y_pred) / weights.sum(axis=1)


@METRICS.register("accuracy")
@supports_weights(_accuracy_weighted)
def accuracy(y_true: Any, y_pred: Any) -> float:
    """Return the fraction of correct predictions.

    y_true, y_pred: (N,) class ids, or (N, K) 0/1 for multi-label, where it is the fraction of correct
    (sample, label) entries (torchmetrics' ``MultilabelAccuracy``); see :func:`subset_accuracy`.
    """
    return float(_accuracy_weighted(np.ones((1, len(to_numpy(y_true, "y_true")))), y_true, y_pred)[0])


def subset_accuracy(y_true: Any, y_pred: Any) -> float:
    """Return the fraction of samples whose whole label vector is right (scikit-learn's multi-label accuracy)."""
    targets, preds, _ = _single_or_multi(y_true, y_pred, None)
    hits = targets == preds
    return float((hits.all(axis=1) if hits.ndim == 2 else hits).mean())


def _balanced_accuracy_weighted(weights: np.ndarray, y_true: Any, y_pred: Any) -> np.ndarray:
    """Balanced accuracy under each row of sample weights ``(B, N)`` -> ``(B,)``."""
    weights = np.atleast_2d(weights).astype(np.float64)
    targets, preds, k = _single_or_multi(y_true, y_pred, None)
    if targets.ndim == 2:  # mean over labels of the binary balanced accuracy (mean of TPR and TNR)
        per_label = []
        for j in range(k):
            both = [_class_recall(weights, targets[:, j] == c, preds[:, j] == c) for c in (False, True)]
            per_label.append(_nanmean_rows(np.stack(both, axis=1)))
        return _nanmean_rows(np.stack(per_label, axis=1))
    recalls = np.stack([_class_recall(weights, targets == c, preds == c) for c in range(k)], axis=1)
    return _nanmean_rows(recalls)


def _class_recall(weights: np.ndarray, is_class: np.ndarray, predicted_class: np.ndarray) -> np.ndarray:
    """Weighted recall of one class ``(B,)``, NaN where the class has no weight."""
    support = weights @ is_class.astype(np.float64)
    hits = weights @ (is_class & predicted_class).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means over finite entries ``(B, K) -> (B,)``, NaN for a row without any."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            finite.any(axis=1), np.where(finite, values, 0.0).sum(axis=1) / finite.sum(axis=1), np.nan
        )


@METRICS.register("balanced_accuracy")
@supports_weights(_balanced_accuracy_weighted)
def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Return the mean recall over the classes present in ``y_true``.

    y_true, y_pred: (N,) class ids (matches ``sklearn.metrics.balanced_accuracy_score``), or (N, K) 0/1,
    where it is the mean over labels of (sensitivity + specificity) / 2.
    """
    n = len(to_numpy(y_true, "y_true"))
    return float(_balanced_accuracy_weighted(np.ones((1, n)), y_true, y_pred)[0])
