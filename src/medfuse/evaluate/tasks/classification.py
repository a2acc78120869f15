"""Supervised diagnosis: headline metrics with patient-level bootstrap intervals, curves, calibration.

``classification`` scores a diagnosis model's probabilities (after the checkpoint's temperature) against
the labels; ``calibration`` reports the calibration part alone. Both fit a temperature on
``calibration_split`` when one is named (Guo et al. 2017) and report the calibration it would give.
:func:`score_probabilities` is shared with zero-shot classification.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import (
    accuracy,
    auprc,
    auroc,
    balanced_accuracy,
    brier_score,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    f1_score,
    fit_temperature,
    maximum_calibration_error,
    multilabel_confusion_matrix,
    pr_curve,
    predictions,
    reliability_diagram,
    roc_curve,
)
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.models.inference import Predictions, probabilities

log = logging.getLogger(__name__)

HEADLINE = ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "ece", "brier")
CALIBRATION = ("ece", "brier")


@dataclass
class Scored:
    """Labelled rows of a prediction run: targets, probabilities, logits, dataset positions, task."""

    y: np.ndarray
    probs: np.ndarray
    logits: np.ndarray
    index: list[int]
    task: str
    keep: np.ndarray

    @property
    def num_classes(self) -> int | None:
        """Classes for thresholded metrics: 2 (binary), C (multiclass), None (multilabel)."""
        return {"binary": 2, "multiclass": self.probs.shape[-1] if self.probs.ndim == 2 else 2}.get(self.task)


def labelled(pred: Predictions, task: str) -> Scored:
    """Return the rows of ``pred`` that carry a label, shaped for the metrics of ``task``."""
    if pred.labels is None:
        raise TaskSkipped("the data names no label column, so there is nothing to score against")
    y = pred.labels
    if task in ("binary", "multiclass"):
        keep = y >= 0 if y.dtype.kind in "iu" else np.isfinite(y)
        if y.ndim != 1:
            raise DataError(f"a {task} head needs one class id per row, the data gives labels of shape {y.shape}")
    elif task == "multilabel":
        if y.ndim != 2 or y.shape[1] != pred.probs.shape[1]:
            raise DataError(f"a multilabel head with {pred.probs.shape[1]} outputs needs (N, K) labels, got {y.shape}")
        keep = np.isfinite(y).all(axis=1)
    else:
        keep = np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if not keep.all():
        log.warning("%d of %d rows have no label and are left out of the scores", int((~keep).sum()), len(keep))
    y, probs, logits = y[keep], pred.probs[keep], pred.logits[keep]
    if task in ("binary", "multiclass"):
        y = y.astype(np.int64)
    if task == "multiclass" and len(y) and y.max() >= probs.shape[1]:
        raise DataError(f"labels hold class {int(y.max())} but the head has {probs.shape[1]} outputs; "
                        "the data's classes do not match the checkpoint's")
    if task == "binary" and len(y) and y.max() > 1:
        raise DataError("a binary head needs 0/1 labels; the data has more than two classes")
    if len(y) == 0:
        raise DataError("no labelled rows to score")
    index = [i for i, k in zip(pred.index, keep) if k]
    return Scored(y, probs, logits, index, task, keep)


def headline_fns(task: str, num_classes: int | None) -> dict[str, tuple[Any, bool, dict[str, Any]]]:
    """Return name -> (metric function, takes probabilities?, keyword arguments) for the headline metrics."""
    return {
        "accuracy": (accuracy, False, {}),
        "balanced_accuracy": (balanced_accuracy, False, {}),
        "auroc": (auroc, True, {"task": task}),
        "auprc": (auprc, True, {"task": task}),
        "f1_macro": (f1_score, False, {"average": "macro", "num_classes": num_classes}),
        "ece": (expected_calibration_error, True, {"task": task}),
        "brier": (brier_score, True, {"task": task}),
    }


def headline_entries(
    ctx: EvalContext, y: np.ndarray, probs: np.ndarray, task: str, threshold: Any, num_classes: int | None,
    groups: Any, names: Sequence[str] = HEADLINE, n_resamples: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Return the headline metrics of ``probs`` against ``y`` with bootstrap intervals (NaN where undefined)."""
    preds = predictions(probs, task, threshold)
    out = {}
    for name, (fn, uses_probs, kwargs) in headline_fns(task, num_classes).items():
        if name not in names:
            continue
        try:
            out[name] = ctx.interval(fn, y, probs if uses_probs else preds, groups=groups, kwargs=kwargs,
                                     n_resamples=n_resamples)
        except (ValueError, DataError) as exc:  # e.g. one class only in a subgroup
            log.debug("%s undefined: %s", name, exc)
            out[name] = metric_entry(None)
    return out


def _thin(*columns: np.ndarray, max_points: int) -> list[list[float]]:
    """Return the columns as lists, keeping at most ``max_points`` evenly spaced points (ends kept)."""
    n = len(columns[0])
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    return [np.asarray(c, dtype=np.float64)[keep].tolist() for c in columns]


def curves(scored: Scored, names: Sequence[str], max_points: int = 200) -> dict[str, Any]:
    """Return ROC and precision-recall curve points per output (one-vs-rest for multiclass)."""
    probs = scored.probs.reshape(len(scored.y), -1)
    if scored.task == "multiclass":
        targets = scored.y[:, None] == np.arange(probs.shape[1])[None, :]
    else:
        targets = scored.y.reshape(len(scored.y), -1).astype(bool)
    roc: dict[str, Any] = {}
    pr: dict[str, Any] = {}
    for k, name in enumerate(names):
        t, s = targets[:, k], probs[:, k]
        if t.all() or not t.any():
            roc[name] = pr[name] = None  # undefined with one class
            continue
        r = roc_curve(t.astype(np.int64), s)
        fpr, tpr, thr = _thin(r.fpr, r.tpr, np.nan_to_num(r.thresholds, posinf=1.0), max_points=max_points)
        roc[name] = {"fpr": fpr, "tpr": tpr, "thresholds": thr}
        p = pr_curve(t.astype(np.int64), s)
        precision, recall = _thin(p.precision, p.recall, max_points=max_points)
        pr[name] = {"precision": precision, "recall": recall, "prevalence": float(t.mean())}
    return {"roc_curves": roc, "pr_curves": pr}


def confusion(scored: Scored, preds: np.ndarray, names: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """Return the confusion matrix (rows true, columns predicted) or one 2x2 ``[[tn, fp], [fn, tp]]`` per label."""
    if scored.task == "multilabel":
        mats = multilabel_confusion_matrix(scored.y.astype(np.int64), preds)
        return {"per_label": {name: m.tolist() for name, m in zip(names, mats)}}
    k = scored.num_classes or 2
    matrix = confusion_matrix(scored.y, preds, num_classes=k)
    labels = list(class_names) if len(class_names) == k else [str(i) for i in range(k)]
    return {"labels": labels, "matrix": matrix.tolist()}


def per_label(scored: Scored, all_metrics: dict[str, float], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Return per-label metrics (AUROC, AUPRC, F1, precision, recall, prevalence) from classification_metrics."""
    out: dict[str, dict[str, Any]] = {}
    targets = (scored.y[:, None] == np.arange(len(names))[None, :]) if scored.task == "multiclass" else \
        scored.y.reshape(len(scored.y), -1)
    for k, name in enumerate(names):
        row = {m: all_metrics.get(f"{m}/{name}") for m in ("auroc", "auprc", "f1", "precision", "recall")}
        if scored.task == "binary":
            row = {"auroc": all_metrics.get("auroc"), "auprc": all_metrics.get("auprc"), "f1": all_metrics.get("f1"),
                   "precision": all_metrics.get("precision"), "recall": all_metrics.get("sensitivity")}
        row["support"] = int(np.asarray(targets[:, k]).sum())
        row["prevalence"] = float(np.asarray(targets[:, k]).mean())
        out[name] = row
    return out


def calibration_part(ctx: EvalContext, scored: Scored, groups: Any, *, n_bins: int = 15) -> tuple[dict, dict]:
    """Return calibration metrics (ece, mce, brier with intervals) and the reliability diagram."""
    metrics = headline_entries(ctx, scored.y, scored.probs, scored.task, 0.5, scored.num_classes, groups,
                               names=CALIBRATION)
    metrics["mce"] = metric_entry(maximum_calibration_error(scored.y, scored.probs, n_bins=n_bins, task=scored.task))
    diagram = reliability_diagram(scored.y, scored.probs, n_bins=n_bins, task=scored.task)
    artifact = {"edges": diagram.edges, "confidence": diagram.confidence, "accuracy": diagram.accuracy,
                "count": diagram.count, "task": scored.task}
    return metrics, {"reliability_diagram": artifact}


def temperature_part(ctx: EvalContext, scored: Scored, split: str, groups: Any, n_bins: int) -> tuple[dict, dict]:
    """Fit a temperature on ``split`` (raw logits) and report it with the calibration it gives on the evaluated rows."""
    if ctx.dataset.split is not None and ctx.split_dataset(split).split == ctx.dataset.split:
        log.warning("calibration_split '%s' is the evaluated split: the scaled calibration is optimistic", split)
    cal = labelled(ctx.predictions(ctx.split_dataset(split), temperature=1.0), scored.task)
    multilabel = scored.task != "multiclass"
    labels = cal.y.reshape(cal.logits.shape) if multilabel else cal.y
    temperature = fit_temperature(cal.logits, labels, multilabel=multilabel)
    probs = probabilities(torch.from_numpy(scored.logits), scored.task, temperature).numpy()
    after = headline_entries(ctx, scored.y, probs, scored.task, 0.5, scored.num_classes, groups, names=CALIBRATION)
    metrics = {"temperature": metric_entry(temperature)}
    metrics.update({f"{k}_scaled": v for k, v in after.items()})
    diagram = reliability_diagram(scored.y, probs, n_bins=n_bins, task=scored.task)
    artifact = {"split": split, "n": len(cal.y), "temperature": temperature,
                "reliability_diagram": {"edges": diagram.edges, "confidence": diagram.confidence,
                                        "accuracy": diagram.accuracy, "count": diagram.count}}
    return metrics, {"temperature_scaling": artifact}


def score_probabilities(
    ctx: EvalContext, scored: Scored, *, names: Sequence[str], class_names: Sequence[str], threshold: Any,
    groups: Any, n_bins: int = 15, max_curve_points: int = 200,
) -> TaskResult:
    """Return the full classification result of labelled probabilities (metrics, curves, matrices)."""
    metrics = headline_entries(ctx, scored.y, scored.probs, scored.task, threshold, scored.num_classes, groups,
                               names=("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro"))
    everything = classification_metrics(scored.y, scored.probs, task=scored.task, threshold=threshold,
                                        labels=list(names) if scored.task != "binary" else None)
    for name, value in everything.items():
        if "/" not in name and name not in metrics:
            metrics[name] = metric_entry(value)
    cal_metrics, cal_artifacts = calibration_part(ctx, scored, groups, n_bins=n_bins)
    metrics.update(cal_metrics)
    preds = predictions(scored.probs, scored.task, threshold)
    artifacts: dict[str, Any] = {
        "task": scored.task, "labels": list(names), "threshold": threshold,
        "per_label": per_label(scored, everything, names),
        "confusion_matrix": confusion(scored, preds, names, class_names),
        **curves(scored, names, max_curve_points), **cal_artifacts,
    }
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(scored.y))


def _regression(ctx: EvalContext, pred: Predictions) -> TaskResult:
    scored = labelled(pred, "regression")
    y = scored.y.reshape(len(scored.y), -1).astype(np.float64)
    p = scored.probs.reshape(len(y), -1).astype(np.float64)
    groups = ctx.patient_groups(scored.index)

    def mae(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean())

    def rmse(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sqrt(((a - b) ** 2).mean()))

    metrics = {"mae": ctx.interval(mae, y, p, groups=groups), "rmse": ctx.interval(rmse, y, p, groups=groups)}
    return TaskResult(metrics=metrics, artifacts={"task": "regression"}, n=len(y))


@EVAL_TASKS.register("classification")
def classification(
    ctx: EvalContext, *, calibration_split: str | None = None, n_bins: int = 15, max_curve_points: int = 200,
) -> TaskResult:
    """Supervised diagnosis: accuracy to AUROC with patient-level 95% intervals, curves, calibration."""
    if ctx.kind != "diagnosis":
        raise TaskSkipped(f"classification scores diagnosis models; this is a {ctx.kind} model")
    task = ctx.label_task
    pred = ctx.predictions()
    if task == "regression":
        return _regression(ctx, pred)
    scored = labelled(pred, task)
    count = 1 if scored.probs.ndim == 1 else scored.probs.shape[1]
    names = ctx.output_names(count)
    class_names = list(ctx.label_names or []) or names
    groups = ctx.patient_groups(scored.index)
    result = score_probabilities(ctx, scored, names=names, class_names=class_names, threshold=ctx.threshold(count),
                                 groups=groups, n_bins=n_bins, max_curve_points=max_curve_points)
    result.artifacts["temperature_applied"] = ctx.temperature
    result.artifacts["resampling"] = "patient" if groups is not None else "row"
    split = calibration_split or ctx.config.calibration_split
    if split:
        metrics, artifacts = temperature_part(ctx, scored, split, groups, n_bins)
        result.metrics.update(metrics)
        result.artifacts.update(artifacts)
    return result


@EVAL_TASKS.register("calibration")
def calibration(ctx: EvalContext, *, calibration_split: str | None = None, n_bins: int = 15) -> TaskResult:
    """Calibration alone: ECE, MCE, Brier, the reliability diagram and a fitted temperature."""
    if ctx.kind != "diagnosis":
        raise TaskSkipped(f"calibration scores diagnosis models; this is a {ctx.kind} model")
    task = ctx.label_task
    if task == "regression":
        raise TaskSkipped("a regression head has no probabilities to calibrate")
    scored = labelled(ctx.predictions(), task)
    groups = ctx.patient_groups(scored.index)
    metrics, artifacts = calibration_part(ctx, scored, groups, n_bins=n_bins)
    split = calibration_split or ctx.config.calibration_split
    if split:
        extra_metrics, extra_artifacts = temperature_part(ctx, scored, split, groups, n_bins)
        metrics.update(extra_metrics)
        artifacts.update(extra_artifacts)
    artifacts["temperature_applied"] = ctx.temperature
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(scored.y))
