"""Bootstrap confidence intervals and paired bootstrap tests, with patient-level (cluster) resampling.

A resample draws N samples with replacement (Efron & Tibshirani 1993), or, when ``groups`` is given,
draws whole groups (patients) with replacement and keeps all their samples, so correlated samples of
one patient stay together (the cluster bootstrap; Field & Welsh 2007). Each resample is a vector of
draw counts per sample; a metric with a batched, weighted form (see ``_weights``) scores a block of
resamples in one call, any other metric is called once per resample on the repeated samples.
Resamples where the metric is undefined (NaN, or a ``ValueError`` from the metric) are skipped and
counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics._inputs import check_same_length, to_numpy
from medfuse.evaluate.metrics._weights import weighted_form

log = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 4_000_000  # resamples x samples per block of draw counts (32 MB of float64)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile bootstrap interval; unpacks as ``value, lo, hi``.

    n_valid: resamples where the metric was defined; n_skipped: resamples where it was not.
    """

    value: float
    lo: float
    hi: float
    n_valid: int
    n_skipped: int

    def __iter__(self) -> Iterator[float]:
        return iter((self.value, self.lo, self.hi))


def _as_sample_arrays(arrays: tuple[Any, ...]) -> list[Any]:
    """Return the inputs as numpy arrays (tensors, arrays) or lists (sequences of text and the like)."""
    out: list[Any] = []
    for i, array in enumerate(arrays):
        if isinstance(array, np.ndarray) or hasattr(array, "detach"):
            out.append(to_numpy(array, f"array {i}"))
        else:
            out.append(list(array))
    return out


def _take(array: Any, index: np.ndarray) -> Any:
    """Return the rows ``index`` of an array or the items of a list."""
    if isinstance(array, np.ndarray):
        return array[index]
    return [array[i] for i in index]


def draw_counts(n: int, n_resamples: int, groups: Any, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield blocks of draw counts per sample ``(b, N)`` float64, ``n_resamples`` rows in all.

    Without ``groups`` every row is a multinomial draw of N samples; with ``groups`` (N,) ids, whole
    groups are drawn (as many as there are groups) and each sample gets its group's count.
    """
    if groups is None:
        inverse, n_units = np.arange(n), n
    else:
        ids = np.asarray(to_numpy(groups, "groups") if hasattr(groups, "detach") else list(groups))
        if len(ids) != n:
            raise DataError(
                f"groups has {len(ids)} ids but the arrays have {n} samples; pass one id per sample"
            )
        _, inverse = np.unique(ids, return_inverse=True)
        n_units = int(inverse.max()) + 1
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_resamples:
        b = min(block, n_resamples - done)
        unit_counts = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=b)
        yield unit_counts[:, inverse].astype(np.float64)
        done += b


def _resampled_values(
    metric_fn: Callable[..., Any],
    arrays: list[Any],
    kwargs: Mapping[str, Any],
    counts: np.ndarray,
) -> np.ndarray:
    """Return the metric on each resample of a block ``(b,)``, NaN where it is undefined."""
    batched = weighted_form(metric_fn)
    if batched is not None:
        return np.asarray(batched(counts, *arrays, **kwargs), dtype=np.float64)
    values = np.full(len(counts), np.nan)
    positions = np.arange(counts.shape[1])
    for b, row in enumerate(counts.astype(np.int64)):
        index = np.repeat(positions, row)
        try:
            values[b] = float(metric_fn(*(_take(a, index) for a in arrays), **kwargs))
        except ValueError as exc:  # e.g. scikit-learn's "Only one class present in y_true"
            log.debug("bootstrap resample %d undefined: %s", b, exc)
    return values


def _check_settings(n_resamples: int, alpha: float) -> None:
    """Raise a ConfigError for a non-positive resample count or a level outside (0, 1)."""
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: Any,
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metric_kwargs: Mapping[str, Any] | None = None,
) -> ConfidenceInterval:
    """Return the metric with its percentile bootstrap interval at level ``1 - alpha``.

    metric_fn: ``metric_fn(*arrays, **metric_kwargs) -> float``; arrays: one entry per sample each
    (N, ...), numpy arrays, tensors or lists. groups: (N,) cluster ids (e.g. patient ids): whole
    clusters are resampled. The interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles of the valid
    resample values (Efron & Tibshirani 1993, ch. 13).
    """
    _check_settings(n_resamples, alpha)
    kwargs = dict(metric_kwargs or {})
    data = _as_sample_arrays(arrays)
    if not data:
        raise ConfigError("bootstrap_ci needs at least one array to resample")
    n = check_same_length(*((f"array {i}", a) for i, a in enumerate(data)))
    value = float(metric_fn(*data, **kwargs))
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            _resampled_values(metric_fn, data, kwargs, counts)
            for counts in draw_counts(n, n_resamples, groups, rng)
        ]
    )
    valid = values[np.isfinite(values)]
    skipped = n_resamples - len(valid)
    if skipped:
        log.warning(
            "bootstrap: metric undefined on %d of %d resamples; they were skipped", skipped, n_resamples
        )
    if len(valid) == 0:
        return ConfidenceInterval(value, float("nan"), float("nan"), 0, skipped)
    lo, hi = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return ConfidenceInterval(value, float(lo), float(hi), len(valid), skipped)


def bootstrap_metrics(
    metrics_fn: Callable[..., Mapping[str, float]],
    *arrays: Any,
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metric_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, ConfidenceInterval]:
    """Return a percentile bootstrap interval for every entry of a dictionary-valued metric.

    metrics_fn: ``metrics_fn(*arrays, **metric_kwargs) -> {name: value}`` such as
    ``classification_metrics``; it is called once per resample (no batched form), so keep
    ``n_resamples`` moderate for slow metrics. Entries that are NaN or missing on a resample are
    skipped for that entry and counted. Resampling as :func:`bootstrap_ci` (same ``seed``, same draws).
    """
    _check_settings(n_resamples, alpha)
    kwargs = dict(metric_kwargs or {})
    data = _as_sample_arrays(arrays)
    if not data:
        raise ConfigError("bootstrap_metrics needs at least one array to resample")
    n = check_same_length(*((f"array {i}", a) for i, a in enumerate(data)))
    point = {name: float(value) for name, value in metrics_fn(*data, **kwargs).items()}
    samples: dict[str, list[float]] = {name: [] for name in point}
    positions = np.arange(n)
    rng = np.random.default_rng(seed)
    for counts in draw_counts(n, n_resamples, groups, rng):
        for row in counts.astype(np.int64):
            index = np.repeat(positions, row)
            try:
                values = metrics_fn(*(_take(a, index) for a in data), **kwargs)
            except ValueError as exc:
                log.debug("bootstrap resample undefined: %s", exc)
                continue
            for name in point:
                value = float(values.get(name, float("nan")))
                if np.isfinite(value):
                    samples[name].append(value)
    out = {}
    for name, value in point.items():
        valid = np.asarray(samples[name])
        if len(valid) == 0:
            out[name] = ConfidenceInterval(value, float("nan"), float("nan"), 0, n_resamples)
            continue
        lo, hi = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
        out[name] = ConfidenceInterval(value, float(lo), float(hi), len(valid), n_resamples - len(valid))
    return out


def paired_bootstrap_test(
    metric_fn: Callable[..., Any],
    y: Any,
    pred_a: Any,
    pred_b: Any,
    *,
    groups: Any = None,
    n_resamples: int = 1000,
    seed: int = 0,
    metric_kwargs: Mapping[str, Any] | None = None,
) -> float:
    """Return the two-sided p-value that models A and B score the same ``metric_fn(y, pred)``.

    Both models are scored on the same resamples (paired). With d = m(A) - m(B) observed and d*_b on
    resample b, p = (1 + #{|d*_b - d| >= |d|}) / (1 + B): the bootstrap distribution shifted to the null
    of no difference (Hall & Wilson 1991; Koehn 2004). y, pred_a, pred_b: one entry per sample (N, ...).
    """
    _check_settings(n_resamples, 0.5)
    kwargs = dict(metric_kwargs or {})
    targets, a, b = _as_sample_arrays((y, pred_a, pred_b))
    n = check_same_length(("y", targets), ("pred_a", a), ("pred_b", b))
    observed = float(metric_fn(targets, a, **kwargs)) - float(metric_fn(targets, b, **kwargs))
    if not np.isfinite(observed):
        raise DataError("the metric is undefined on the full data, so the models cannot be compared")
    rng = np.random.default_rng(seed)
    deltas = []
    for counts in draw_counts(n, n_resamples, groups, rng):
        deltas.append(
            _resampled_values(metric_fn, [targets, a], kwargs, counts)
            - _resampled_values(metric_fn, [targets, b], kwargs, counts)
        )
    delta = np.concatenate(deltas)
    delta = delta[np.isfinite(delta)]
    if len(delta) < n_resamples:
        log.warning(
            "paired bootstrap: metric undefined on %d of %d resamples", n_resamples - len(delta), n_resamples
        )
    extreme = int((np.abs(delta - observed) >= abs(observed)).sum())
    return (1 + extreme) / (1 + len(delta))
