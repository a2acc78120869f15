"""Fairness: every headline metric per subgroup, its gap to the whole, and the equalised-odds difference.

Subgroups are the data config's ``subgroups`` columns (numeric ones such as age banded by the data
layer). Groups under ``min_group_size`` rows are flagged ``small: true`` and still reported. The
equalised-odds difference (Hardt, Price & Srebro 2016, "Equality of Opportunity in Supervised
Learning", NeurIPS) is max(max_g TPR_g - min_g TPR_g, max_g FPR_g - min_g FPR_g) over groups at the
decision threshold, per label (one-vs-rest for multi-class), and its maximum over labels.

``results["subgroups"]`` layout::

    {column: {"groups": {value: {"n", "small", "metrics": {name: {"value", "ci95"}}, "gap": {name: diff},
                                 "tpr": [per label], "fpr": [per label]}},
              "equalized_odds_difference": float, "equalized_odds_per_label": {label: float},
              "tpr_difference": float, "fpr_difference": float, "metric": [names], "min_group_size": int}}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medfuse.evaluate.metrics import predictions
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.classification import HEADLINE, headline_entries, labelled

log = logging.getLogger(__name__)


def rates(y: np.ndarray, preds: np.ndarray, task: str, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Return true- and false-positive rates per label ``(K,)`` (NaN where a rate has no denominator)."""
    if task == "multiclass":
        truth = y[:, None] == np.arange(num_labels)[None, :]
        guess = preds[:, None] == np.arange(num_labels)[None, :]
    else:
        truth = y.reshape(len(y), -1).astype(bool)
        guess = preds.reshape(len(preds), -1).astype(bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = (truth & guess).sum(0) / truth.sum(0)
        fpr = (~truth & guess).sum(0) / (~truth).sum(0)
    return tpr.astype(np.float64), fpr.astype(np.float64)


def _spread(values: list[np.ndarray]) -> np.ndarray:
    """Per-label max minus min over groups, ignoring undefined rates ``(K,)`` (NaN when none is defined)."""
    stacked = np.stack(values)
    finite = np.isfinite(stacked)
    high = np.where(finite, stacked, -np.inf).max(axis=0)
    low = np.where(finite, stacked, np.inf).min(axis=0)
    return np.where(finite.any(axis=0), high - low, np.nan)


def _gap(group: dict[str, Any], whole: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for name, entry in group.items():
        a, b = entry["value"], whole.get(name, {}).get("value")
        out[name] = None if a is None or b is None else a - b
    return out


def classification_subgroups(ctx: EvalContext, min_group_size: int, n_resamples: int | None) -> tuple[dict, dict, int]:
    """Return (subgroups, overall metrics, n) for a diagnosis model."""
    task = ctx.label_task
    if task == "regression":
        raise TaskSkipped("fairness metrics need a classification head")
    pred = ctx.predictions()
    scored = labelled(pred, task)
    count = 1 if scored.probs.ndim == 1 else scored.probs.shape[1]
    names = ctx.output_names(count)
    threshold = ctx.threshold(count)
    preds = predictions(scored.probs, task, threshold)
    k = scored.probs.shape[1] if task == "multiclass" else count
    index = np.asarray(scored.index)
    groups_all = ctx.patient_groups(scored.index)
    whole = headline_entries(ctx, scored.y, scored.probs, task, threshold, scored.num_classes, groups_all)
    out: dict[str, Any] = {}
    for column in ctx.dataset.config.subgroups:
        values = np.asarray([ctx.dataset.subgroups[column][i] for i in index], dtype=object)
        groups: dict[str, Any] = {}
        tprs, fprs = [], []
        for value in sorted(set(values.tolist())):
            rows = values == value
            patients = groups_all[rows] if groups_all is not None else None
            metrics = headline_entries(ctx, scored.y[rows], scored.probs[rows], task, threshold,
                                       scored.num_classes, patients, n_resamples=n_resamples)
            tpr, fpr = rates(scored.y[rows], preds[rows], task, k)
            tprs.append(tpr)
            fprs.append(fpr)
            n = int(rows.sum())
            groups[str(value)] = {"n": n, "small": n < min_group_size, "metrics": metrics,
                                  "gap": _gap(metrics, whole), "tpr": tpr, "fpr": fpr}
        tpr_gap, fpr_gap = _spread(tprs), _spread(fprs)
        eod = np.fmax(tpr_gap, fpr_gap)
        label_names = names if task != "multiclass" else ctx.output_names(k)
        out[column] = {
            "groups": groups,
            "equalized_odds_difference": float(np.nanmax(eod)) if np.isfinite(eod).any() else None,
            "equalized_odds_per_label": dict(zip(label_names, eod.tolist())),
            "tpr_difference": float(np.nanmax(tpr_gap)) if np.isfinite(tpr_gap).any() else None,
            "fpr_difference": float(np.nanmax(fpr_gap)) if np.isfinite(fpr_gap).any() else None,
            "metric": list(HEADLINE), "min_group_size": min_group_size,
        }
    return out, whole, len(scored.y)


def vqa_subgroups(ctx: EvalContext, min_group_size: int, n_resamples: int | None) -> tuple[dict, dict, int]:
    """Return (subgroups, overall metrics, n) for a VQA model: ``vqa_overall`` per group."""
    from medfuse.evaluate.tasks.vqa import answer_rows

    rows_all = answer_rows(ctx)
    scores = np.asarray(rows_all.scores, dtype=np.float64)
    groups_all = ctx.patient_groups(rows_all.index)

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if len(x) else float("nan")

    whole = {"vqa_overall": ctx.interval(mean, scores, groups=groups_all)}
    out: dict[str, Any] = {}
    for column in ctx.dataset.config.subgroups:
        values = np.asarray([ctx.dataset.subgroups[column][i] for i in rows_all.index], dtype=object)
        groups = {}
        for value in sorted(set(values.tolist())):
            rows = values == value
            patients = groups_all[rows] if groups_all is not None else None
            metrics = {"vqa_overall": ctx.interval(mean, scores[rows], groups=patients, n_resamples=n_resamples)}
            n = int(rows.sum())
            groups[str(value)] = {"n": n, "small": n < min_group_size, "metrics": metrics, "gap": _gap(metrics, whole)}
        out[column] = {"groups": groups, "metric": ["vqa_overall"], "min_group_size": min_group_size}
    return out, whole, len(scores)


@EVAL_TASKS.register("fairness")
def fairness(ctx: EvalContext, *, min_group_size: int | None = None, n_resamples: int | None = None) -> TaskResult:
    """Headline metrics per subgroup with n, gap to the whole, small-group flags and equalised odds."""
    if not ctx.dataset.config.subgroups:
        raise TaskSkipped("the data config names no subgroup columns (set data.subgroups)")
    size = int(min_group_size or ctx.config.min_group_size)
    builders: dict[str, Callable[[EvalContext, int, int | None], tuple[dict, dict, int]]] = {
        "diagnosis": classification_subgroups, "vqa": vqa_subgroups,
    }
    if ctx.kind not in builders:
        raise TaskSkipped(f"fairness is reported for diagnosis and VQA models; this is a {ctx.kind} model")
    subgroups, whole, n = builders[ctx.kind](ctx, size, n_resamples)
    metrics: dict[str, dict[str, Any]] = {}
    for column, info in subgroups.items():
        if "equalized_odds_difference" in info:
            metrics[f"equalized_odds_difference/{column}"] = metric_entry(info["equalized_odds_difference"])
        gaps = [abs(g) for grp in info["groups"].values() for name, g in grp["gap"].items()
                if g is not None and name == _primary(info["metric"])]
        metrics[f"max_gap_{_primary(info['metric'])}/{column}"] = metric_entry(max(gaps) if gaps else None)
        small = sum(1 for grp in info["groups"].values() if grp["small"])
        if small:
            log.warning("fairness: %d group(s) of '%s' have fewer than %d rows (flagged small)", small, column, size)
    artifacts = {"overall": whole, "columns": list(subgroups)}
    return TaskResult(metrics=metrics, artifacts=artifacts, n=n, subgroups=subgroups)


def _primary(names: Sequence[str]) -> str:
    """The metric whose gap is summarised: AUROC for classifiers, the first otherwise."""
    return "auroc" if "auroc" in names else names[0]


__all__ = ["fairness", "rates"]
