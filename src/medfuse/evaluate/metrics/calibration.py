"""Calibration: expected/maximum calibration error, Brier score, reliability diagrams, temperature scaling.

Binning follows torchmetrics' ``CalibrationError``: ``n_bins`` equal-width bins ``[k/n, (k+1)/n)``; a
confidence of exactly 1.0 falls in the last bin (torchmetrics gives it a bin of its own). What is
binned depends on the task: binary uses the positive-class probability against the positive rate;
multiclass the top-label confidence against top-label accuracy (Guo et al. 2017, "On Calibration of
Modern Neural Networks", ICML); multilabel scores each label as binary and averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics._inputs import (
    check_binary,
    check_finite,
    check_same_length,
    check_task,
    class_ids,
    infer_task,
    to_numpy,
)
from medfuse.evaluate.metrics._registry import METRICS


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin data of a reliability diagram.

    edges: (n_bins + 1,) bin edges; confidence, accuracy: (n_bins,) mean confidence and observed
    frequency per bin (NaN for an empty bin); count: (n_bins,) samples per bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def _confidence_and_hits(y_true: Any, y_prob: Any, task: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Return confidences and 0/1 outcomes, each ``(N, K)`` (K = 1 except multilabel), and the task."""
    targets = to_numpy(y_true, "y_true")
    probs = to_numpy(y_prob, "y_prob", dtype=np.float64)
    kind = check_task(task) if task is not None else infer_task(targets, probs)
    check_same_length(("y_true", targets), ("y_prob", probs))
    check_finite(probs, "y_prob")
    if len(probs) == 0:
        raise DataError("no samples to evaluate (y_prob is empty)", field="y_prob")
    if probs.min() < 0 or probs.max() > 1:
        raise DataError(
            "y_prob must hold probabilities in [0, 1]; apply a sigmoid or softmax to logits first",
            field="y_prob",
        )
    if kind == "multiclass":
        if probs.ndim != 2 or targets.ndim != 1:
            raise DataError(
                f"multiclass expects y_true (N,) and y_prob (N, C), got {targets.shape}, {probs.shape}"
            )
        ids = class_ids(targets, probs.shape[1], "y_true")
        return probs.max(axis=1)[:, None], (probs.argmax(axis=1) == ids)[:, None].astype(np.float64), kind
    if targets.shape != probs.shape:
        raise DataError(
            f"y_true {targets.shape} and y_prob {probs.shape} must have the same shape for {kind}"
        )
    hits = check_binary(targets, "y_true").astype(np.float64)
    if kind == "binary":
        return probs[:, None], hits[:, None], kind
    return probs, hits, kind


def _bins(confidence: np.ndarray, hits: np.ndarray, n_bins: int) -> ReliabilityDiagram:
    """Return the per-bin statistics of one column of confidences ``(N,)`` and outcomes ``(N,)``."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        mean_hit = np.bincount(index, weights=hits, minlength=n_bins) / count
    return ReliabilityDiagram(edges, mean_conf, mean_hit, count.astype(np.int64))


def reliability_diagram(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, task: str | None = None
) -> ReliabilityDiagram:
    """Return the reliability diagram data; multilabel pools all (sample, label) pairs into one diagram.

    y_true: (N,) 0/1 or class ids, or (N, K) 0/1; y_prob: (N,), (N, C) or (N, K) probabilities.
    """
    confidence, hits, _ = _confidence_and_hits(y_true, y_prob, task)
    return _bins(confidence.ravel(), hits.ravel(), n_bins)


def _calibration_error(y_true: Any, y_prob: Any, n_bins: int, task: str | None, norm: str) -> float:
    confidence, hits, _ = _confidence_and_hits(y_true, y_prob, task)
    errors = []
    for k in range(confidence.shape[1]):
        diagram = _bins(confidence[:, k], hits[:, k], n_bins)
        filled = diagram.count > 0
        gap = np.abs(diagram.accuracy[filled] - diagram.confidence[filled])
        weight = diagram.count[filled] / diagram.count.sum()
        errors.append(float((weight * gap).sum()) if norm == "l1" else float(gap.max()))
    return float(np.mean(errors))


@METRICS.register("ece")
def expected_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, task: str | None = None
) -> float:
    """Return the expected calibration error: sum over bins of (n_bin / N) |accuracy - confidence|.

    y_true/y_prob shapes as :func:`reliability_diagram`; multilabel returns the mean over labels.
    Naeini et al. (2015), "Obtaining Well Calibrated Probabilities Using Bayesian Binning", AAAI.
    """
    return _calibration_error(y_true, y_prob, n_bins, task, "l1")


@METRICS.register("mce")
def maximum_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, task: str | None = None
) -> float:
    """Return the maximum calibration error: the largest |accuracy - confidence| over non-empty bins."""
    return _calibration_error(y_true, y_prob, n_bins, task, "max")


@METRICS.register("brier")
def brier_score(y_true: Any, y_prob: Any, *, task: str | None = None) -> float:
    """Return the Brier score, the mean squared error of the probabilities (Brier 1950).

    binary: mean (p - y)^2 (``sklearn.metrics.brier_score_loss``); multiclass: mean over samples of
    sum_c (p_c - [y = c])^2, in [0, 2]; multilabel: mean of the per-label binary scores.
    """
    targets = to_numpy(y_true, "y_true")
    probs = to_numpy(y_prob, "y_prob", dtype=np.float64)
    kind = check_task(task) if task is not None else infer_task(targets, probs)
    confidence, _, _ = _confidence_and_hits(targets, probs, kind)  # validates shapes and ranges
    del confidence
    if kind == "multiclass":
        onehot = class_ids(targets, probs.shape[1], "y_true")[:, None] == np.arange(probs.shape[1])[None, :]
        return float(((probs - onehot) ** 2).sum(axis=1).mean())
    return float(((probs - check_binary(targets, "y_true")) ** 2).mean())


def fit_temperature(logits: Any, labels: Any, multilabel: bool = False, *, max_iter: int = 100) -> float:
    """Return the temperature T > 0 that minimises the NLL of ``logits / T`` on held-out data.

    logits: (N, C) class logits (softmax cross-entropy) or, with ``multilabel``, (N, K) or (N,) logits
    (sigmoid binary cross-entropy); labels: (N,) class ids, or 0/1 of the logits' shape.
    Optimises log T with L-BFGS (Guo et al. 2017, section 4.2). Deterministic: starts at T = 1.
    """
    scores = torch.as_tensor(to_numpy(logits, "logits", dtype=np.float64))
    target_np = to_numpy(labels, "labels")
    check_same_length(("logits", scores), ("labels", target_np))
    check_finite(scores.numpy(), "logits")
    if multilabel:
        if tuple(target_np.shape) != tuple(scores.shape):
            raise DataError(
                f"labels {target_np.shape} must match logits {tuple(scores.shape)} when multilabel"
            )
        targets = torch.as_tensor(check_binary(target_np, "labels").astype(np.float64))

        def nll(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.binary_cross_entropy_with_logits(scores / t, targets)

    else:
        if scores.ndim != 2:
            raise DataError(
                f"logits must be (N, C) for softmax temperature scaling, got {tuple(scores.shape)}"
            )
        targets = torch.as_tensor(class_ids(target_np, scores.shape[1], "labels"))

        def nll(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(scores / t, targets)

    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nll(log_t.exp())
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def apply_temperature(logits: Any, temperature: float) -> Any:
    """Return ``logits / temperature`` in the type given (torch tensor or numpy array), same shape."""
    if temperature <= 0 or not np.isfinite(temperature):
        raise ConfigError(f"temperature must be a positive finite number, got {temperature}")
    if isinstance(logits, torch.Tensor):
        return logits / temperature
    return to_numpy(logits, "logits", dtype=np.float64) / temperature


@METRICS.register("calibration")
def calibration_metrics(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, task: str | None = None
) -> dict[str, float]:
    """Return ``{"ece", "mce", "brier"}`` for the given probabilities."""
    return {
        "ece": expected_calibration_error(y_true, y_prob, n_bins=n_bins, task=task),
        "mce": maximum_calibration_error(y_true, y_prob, n_bins=n_bins, task=task),
        "brier": brier_score(y_true, y_prob, task=task),
    }
