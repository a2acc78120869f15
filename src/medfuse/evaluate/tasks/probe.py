"""Linear probes and few-shot learning on frozen features: logistic regression from scikit-learn.

Features are the fused vector of a diagnosis model or the image embedding of a dual encoder, computed
once per split with the model frozen. ``linear_probe`` fits on every labelled training row and scores
the evaluated split with bootstrap intervals (the linear evaluation protocol of Kolesnikov, Zhai &
Beyer 2019 and CLIP). ``few_shot`` fits on k rows per class (k = 1, 2, 4, 8, 16; for multi-label k
positives and k negatives per label), over several seeds, and reports the mean and standard
deviation per k.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medfuse.core import progress
from medfuse.core.errors import ConfigError
from medfuse.data import ManifestDataset
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.classification import HEADLINE, headline_entries
from medfuse.evaluate.tasks.embeddings import image_embeddings

log = logging.getLogger(__name__)

PROBE_METRICS = ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro")


def features(ctx: EvalContext, ds: ManifestDataset) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Return frozen features ``(N, D)``, data labels and positions of the labelled rows of ``ds``."""
    if ds.targets is None or ds.task not in ("binary", "multiclass", "multilabel"):
        raise TaskSkipped("probes need class labels in the data (label or labels columns)")
    if ctx.kind == "dual_encoder":
        emb, index = image_embeddings(ctx, ds)
        feats = emb.numpy()
    else:
        pred = ctx.predictions(None if ds is ctx.dataset else ds, keep_fused=True)
        if pred.fused is None:
            raise TaskSkipped("the model gives no fused features to probe")
        feats, index = pred.fused, pred.index
    y = ds.targets[index]
    keep = (y >= 0) if ds.task != "multilabel" else np.isfinite(y).all(axis=1)
    rows = [i for i, k in zip(index, keep) if k]
    y = y[keep].astype(np.int64)
    return np.asarray(feats, dtype=np.float64)[keep], y, rows


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, task: str, num_classes: int,
                c: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """Fit standardised logistic regression and return eval probabilities shaped for ``task``.

    binary -> (N,), multiclass -> (N, C) (classes absent from training get 0), multilabel -> (N, K)
    (a label with one class in training predicts that class's rate).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xt, xe = scaler.transform(x_train), scaler.transform(x_eval)

    def one(target: np.ndarray) -> np.ndarray:
        seen = np.unique(target)
        out = np.zeros((len(xe), max(int(seen.max()) + 1, 2)))
        if len(seen) == 1:  # nothing to separate: predict the only class seen
            out[:, int(seen[0])] = 1.0
            return out
        model = LogisticRegression(C=c, max_iter=max_iter).fit(xt, target)
        out[:, model.classes_] = model.predict_proba(xe)
        return out

    if task == "binary":
        return one(y_train)[:, 1]
    if task == "multilabel":
        return np.stack([one(y_train[:, k])[:, 1] for k in range(y_train.shape[1])], axis=1)
    probs = one(y_train)
    full = np.zeros((len(xe), num_classes))
    full[:, : probs.shape[1]] = probs[:, :num_classes]
    return full


def _num_classes(ds: ManifestDataset) -> int:
    return len(ds.classes or []) if ds.task != "multilabel" else len(ds.config.labels or ds.classes or [])


def _train_split(ctx: EvalContext, split: str | None) -> ManifestDataset:
    name = split or ctx.config.train_split
    if ctx.dataset.split is not None and ctx.dataset.split == name:
        raise ConfigError(f"train_split: '{name}' is also the evaluated split; probe on other rows")
    return ctx.split_dataset(name)


@EVAL_TASKS.register("linear_probe")
def linear_probe(ctx: EvalContext, *, train_split: str | None = None, c: float = 1.0) -> TaskResult:
    """Logistic regression on frozen features of all training rows, scored on the split with intervals."""
    train = _train_split(ctx, train_split)
    x_train, y_train, _ = features(ctx, train)
    x_eval, y_eval, rows = features(ctx, ctx.dataset)
    if len(x_train) < 2 or len(x_eval) == 0:
        raise TaskSkipped(f"too few labelled rows (train {len(x_train)}, evaluated {len(x_eval)})")
    task, k = str(ctx.dataset.task), _num_classes(ctx.dataset)
    probs = fit_predict(x_train, y_train, x_eval, task, k, c)
    metrics = headline_entries(ctx, y_eval, probs, task, 0.5, {"binary": 2, "multiclass": k}.get(task),
                               ctx.patient_groups(rows), names=HEADLINE)
    return TaskResult(metrics=metrics, artifacts={"n_train": len(x_train), "feature_dim": x_train.shape[1],
                                                  "c": c, "task": task}, n=len(y_eval))


def sample_shots(y: np.ndarray, task: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Return training row positions: k per class (multi-label: k positives and k negatives per label)."""
    chosen: set[int] = set()
    columns = [y == c for c in np.unique(y)] if task != "multilabel" else \
        [side for j in range(y.shape[1]) for side in (y[:, j] == 1, y[:, j] == 0)]
    for mask in columns:
        rows = np.flatnonzero(mask)
        chosen.update(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    return np.asarray(sorted(chosen), dtype=np.int64)


@EVAL_TASKS.register("few_shot")
def few_shot(
    ctx: EvalContext, *, ks: Sequence[int] = (1, 2, 4, 8, 16), seeds: int = 5, train_split: str | None = None,
    c: float = 1.0,
) -> TaskResult:
    """Few-shot logistic regression: mean and standard deviation over seeds for each k (shots per class)."""
    if seeds < 1 or not ks or any(int(k) < 1 for k in ks):
        raise ConfigError(f"few_shot: ks must be positive integers and seeds >= 1, got ks={list(ks)}, seeds={seeds}")
    train = _train_split(ctx, train_split)
    x_train, y_train, _ = features(ctx, train)
    x_eval, y_eval, _ = features(ctx, ctx.dataset)
    if len(x_train) < 2 or len(x_eval) == 0:
        raise TaskSkipped(f"too few labelled rows (train {len(x_train)}, evaluated {len(x_eval)})")
    task, n_cls = str(ctx.dataset.task), _num_classes(ctx.dataset)
    num_classes = {"binary": 2, "multiclass": n_cls}.get(task)
    curve: dict[str, dict[str, list[float | None]]] = {m: {"mean": [], "std": []} for m in PROBE_METRICS}
    per_seed: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    ks = sorted({int(k) for k in ks})
    with progress.task("few-shot", total=len(ks) * seeds) as bar:
        for k in ks:
            values: dict[str, list[float]] = {m: [] for m in PROBE_METRICS}
            sizes = []
            for s in range(seeds):
                rng = np.random.default_rng([ctx.seed, k, s])
                rows = sample_shots(y_train, task, k, rng)
                sizes.append(len(rows))
                probs = fit_predict(x_train[rows], y_train[rows], x_eval, task, n_cls, c)
                scores = headline_entries(ctx, y_eval, probs, task, 0.5, num_classes, None,
                                          names=PROBE_METRICS, n_resamples=0)
                for m in PROBE_METRICS:
                    values[m].append(np.nan if scores[m]["value"] is None else scores[m]["value"])
                bar.update()
            per_seed[str(k)] = {"train_rows": sizes, **values}
            for m in PROBE_METRICS:
                arr = np.asarray(values[m], dtype=np.float64)
                finite = arr[np.isfinite(arr)]
                mean = float(finite.mean()) if len(finite) else None
                std = float(finite.std(ddof=1)) if len(finite) > 1 else (0.0 if len(finite) else None)
                curve[m]["mean"].append(mean)
                curve[m]["std"].append(std)
                metrics[f"{m}@{k}shot"] = metric_entry(mean)
    artifacts = {"k_curve": {"ks": ks, "seeds": seeds, "metrics": curve}, "per_seed": per_seed, "task": task}
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(y_eval))
