"""All classification metrics of the evaluation standard in one dictionary with stable names.

``classification_metrics`` is what classification tasks call: it turns probabilities into predictions
(a threshold, or the arg-max class) and reports threshold-free metrics (AUROC, AUPRC, sensitivity at
fixed specificity) next to thresholded ones (accuracy, F1, ...), overall and per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medfuse.evaluate.metrics._inputs import check_task, label_matrix, label_names, to_numpy
from medfuse.evaluate.metrics._registry import METRICS
from medfuse.evaluate.metrics.ranking import (
    auprc_per_label,
    auroc_per_label,
    macro,
    sensitivity_at_specificity_per_label,
    specificity_at_sensitivity_per_label,
)
from medfuse.evaluate.metrics.thresholded import (
    accuracy,
    balanced_accuracy,
    label_stats,
    precision_recall_f1,
    predictions,
)


@METRICS.register("classification")
def classification_metrics(
    y_true: Any,
    y_prob: Any,
    *,
    task: str = "binary",
    threshold: float | Sequence[float] = 0.5,
    labels: Sequence[str] | None = None,
    specificities: Sequence[float] = (0.9,),
    sensitivities: Sequence[float] = (0.9,),
) -> dict[str, float]:
    """Return the classification metrics under their stable names.

    y_true: (N,) 0/1 (binary), (N,) class ids (multiclass) or (N, K) 0/1 (multilabel).
    y_prob: (N,) positive-class probability, (N, C) class probabilities or (N, K) label probabilities.
    threshold: cut for binary and multilabel predictions (one float, or one per label); multiclass
    predictions are the arg-max class.

    Keys: ``accuracy``, ``balanced_accuracy``, ``auroc``, ``auprc``, ``f1_macro``, ``f1_micro``,
    ``f1_weighted``, ``precision_macro``, ``recall_macro``, ``precision_micro``, ``recall_micro``,
    ``sensitivity@spec0.9``, ``specificity@sens0.9``; binary adds ``sensitivity``, ``specificity``,
    ``precision`` and ``f1`` of the positive class; multiclass and multilabel add per-label
    ``auroc/<label>``, ``auprc/<label>``, ``f1/<label>``, ``precision/<label>``, ``recall/<label>``,
    ``sensitivity@spec0.9/<label>``. Undefined values (a label with one class only) are NaN and left
    out of the macro means.
    """
    task = check_task(task)
    targets, scores, _ = label_matrix(y_true, y_prob, task)
    preds = predictions(to_numpy(y_prob, "y_prob", dtype=np.float64), task, threshold)
    truth = to_numpy(y_true, "y_true")
    num_classes = scores.shape[1] if task == "multiclass" else None
    if task == "binary":
        truth = truth.astype(np.int64)
        num_classes = 2

    out: dict[str, float] = {
        "accuracy": accuracy(truth, preds),
        "balanced_accuracy": balanced_accuracy(truth, preds),
    }
    auroc_k = auroc_per_label(targets, scores, task="multilabel", labels=labels if task != "binary" else None)
    auprc_k = auprc_per_label(targets, scores, task="multilabel", labels=labels if task != "binary" else None)
    out["auroc"] = macro(auroc_k)
    out["auprc"] = macro(auprc_k)
    for average in ("macro", "micro", "weighted"):
        prf = precision_recall_f1(truth, preds, average=average, num_classes=num_classes)
        out[f"f1_{average}"] = prf.f1
        if average != "weighted":
            out[f"precision_{average}"] = prf.precision
            out[f"recall_{average}"] = prf.recall
    sens_at = {
        spec: sensitivity_at_specificity_per_label(targets, scores, spec, task="multilabel")
        for spec in specificities
    }
    spec_at = {
        sens: specificity_at_sensitivity_per_label(targets, scores, sens, task="multilabel")
        for sens in sensitivities
    }
    for spec, values in sens_at.items():
        out[f"sensitivity@spec{spec:g}"] = macro(values)
    for sens, values in spec_at.items():
        out[f"specificity@sens{sens:g}"] = macro(values)

    stats = label_stats(truth, preds, num_classes=num_classes)
    if task == "binary":
        out["sensitivity"] = float(stats.recall[1])
        out["specificity"] = float(stats.recall[0])
        out["precision"] = float(stats.precision[1])
        out["f1"] = float(stats.f1[1])
        return out

    names = label_names(labels, scores.shape[1])
    for k, name in enumerate(names):
        out[f"auroc/{name}"] = float(auroc_k[k])
        out[f"auprc/{name}"] = float(auprc_k[k])
        out[f"f1/{name}"] = float(stats.f1[k])
        out[f"precision/{name}"] = float(stats.precision[k])
        out[f"recall/{name}"] = float(stats.recall[k])
        for spec, values in sens_at.items():
            out[f"sensitivity@spec{spec:g}/{name}"] = float(values[k])
    return out
