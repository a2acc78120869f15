"""Input checks shared by the metric functions: arrays in, clear errors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medfuse.core.errors import ConfigError, DataError

Task = Literal["binary", "multiclass", "multilabel"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")


def to_numpy(values: Any, name: str, *, dtype: Any = None) -> np.ndarray:
    """Return ``values`` (numpy array, torch tensor or nested list) as a numpy array."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":
            values = values.float()
        values = values.numpy()
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} cannot be read as a numeric array: {exc}", field=name) from None
    return array


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise naming the first position when ``array`` holds NaN or infinity."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        where = np.argwhere(~np.isfinite(array))[0].tolist()
        raise DataError(
            f"{name} holds NaN or infinite values (first at index {where}); drop or impute those rows",
            field=name,
        )


def check_same_length(*named: tuple[str, Any]) -> int:
    """Return the common first dimension of the named arrays, or raise naming the mismatch."""
    lengths = {name: len(value) for name, value in named}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise DataError(f"inputs differ in length ({shown}); pass one entry per sample")
    return next(iter(lengths.values()))


def check_binary(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as bool after checking it holds only 0/1 (or True/False)."""
    if array.dtype == bool:
        return array
    values = np.unique(array)
    if not np.isin(values, (0, 1)).all():
        raise DataError(
            f"{name} must hold 0/1 targets, found values {values[:6].tolist()}; binarise the labels first",
            field=name,
        )
    return array.astype(bool)


def check_task(task: str) -> Task:
    """Return ``task`` after checking it is one of :data:`TASKS`."""
    if task not in TASKS:
        raise ConfigError(f"task '{task}' is not known; choose one of {', '.join(TASKS)}")
    return task  # type: ignore[return-value]


def infer_task(y_true: np.ndarray, y_score: np.ndarray) -> Task:
    """Return the task implied by the shapes: 1-D scores binary, 2-D targets multilabel, else multiclass."""
    if y_score.ndim == 1:
        return "binary"
    if y_true.ndim == 2:
        return "multilabel"
    return "multiclass"


def label_matrix(y_true: Any, y_score: Any, task: str | None) -> tuple[np.ndarray, np.ndarray, Task]:
    """Return one-vs-rest targets ``(N, K)`` bool, scores ``(N, K)`` float64 and the task.

    binary: ``y_true`` (N,) 0/1, ``y_score`` (N,) -> K = 1.
    multiclass: ``y_true`` (N,) class ids in [0, C), ``y_score`` (N, C) -> K = C (one-hot targets).
    multilabel: ``y_true`` (N, K) 0/1, ``y_score`` (N, K).
    """
    targets = to_numpy(y_true, "y_true")
    scores = to_numpy(y_score, "y_score", dtype=np.float64)
    kind = check_task(task) if task is not None else infer_task(targets, scores)
    check_same_length(("y_true", targets), ("y_score", scores))
    check_finite(scores, "y_score")
    if len(targets) == 0:
        raise DataError("no samples to evaluate (y_true is empty)", field="y_true")
    if kind == "binary":
        if targets.ndim != 1 or scores.ndim != 1:
            raise DataError(
                f"binary task expects y_true (N,) and y_score (N,), got {targets.shape} and {scores.shape}"
            )
        return check_binary(targets, "y_true")[:, None], scores[:, None], kind
    if kind == "multiclass":
        if targets.ndim != 1 or scores.ndim != 2:
            raise DataError(
                f"multiclass task expects y_true (N,) class ids and y_score (N, C), "
                f"got {targets.shape} and {scores.shape}"
            )
        ids = class_ids(targets, scores.shape[1], "y_true")
        return ids[:, None] == np.arange(scores.shape[1])[None, :], scores, kind
    if targets.shape != scores.shape or targets.ndim != 2:
        raise DataError(
            f"multilabel task expects y_true and y_score of the same (N, K) shape, "
            f"got {targets.shape} and {scores.shape}"
        )
    return check_binary(targets, "y_true"), scores, kind


def class_ids(values: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    """Return ``values`` as int64 class ids after checking they lie in ``[0, num_classes)``."""
    if values.dtype.kind == "f":
        if not np.all(np.mod(values, 1) == 0):
            raise DataError(f"{name} must hold integer class ids, found fractional values", field=name)
    elif values.dtype.kind not in "iub":
        raise DataError(f"{name} must hold integer class ids, found dtype {values.dtype}", field=name)
    ids = values.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= num_classes):
        raise DataError(
            f"{name} holds class ids outside [0, {num_classes}) (min {ids.min()}, max {ids.max()}); "
            "check the label mapping or the number of score columns",
            field=name,
        )
    return ids


def label_names(labels: Sequence[str] | None, count: int) -> list[str]:
    """Return ``labels`` as strings (or ``"0".."K-1"``) after checking there is one per column."""
    if labels is None:
        return [str(i) for i in range(count)]
    names = [str(label) for label in labels]
    if len(names) != count:
        raise ConfigError(f"labels has {len(names)} names but the scores have {count} columns")
    return names
