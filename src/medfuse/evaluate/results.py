"""The ``results.json`` document: metric entries, task results, the whole-run record, writer and checker.

Layout (DESIGN.md)::

    {"task": "classification", "split": "test", "n": 512,
     "metrics": {"auroc": {"value": 0.91, "ci95": [0.88, 0.94]}, ...},
     "subgroups": {"sex": {"groups": {"F": {"n": 250, "small": false, "metrics": {...}, "gap": {...}}},
                           "equalized_odds_difference": 0.04, ...}},
     "config": {...}, "medfuse_version": "0.1.0",
     "tasks": {"classification": {"n": 512, "metrics": {...}, "artifacts": {...}}, ...},
     "artifacts": {"quarantine": "...", "report": "report.html"},
     "model_card": {...}, "data": {"manifest": ..., "read": ..., "kept": ..., "quarantined": ...},
     "seed": 0}

NaN and infinity are written as ``null``; numpy scalars and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.core.errors import ConfigError

RESULTS_FILE = "results.json"

# Stable headline metric names (DESIGN.md); the report and acceptance runs look these up.
STABLE_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "ece", "brier",
    "vqa_overall", "vqa_closed", "vqa_open",
    "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mrr", "map", "ndcg@10",
    "bleu4", "rouge_l", "cider", "clinical_f1",
)
REQUIRED_KEYS: tuple[str, ...] = (
    "task", "split", "n", "metrics", "subgroups", "config", "medfuse_version",
    "tasks", "artifacts", "model_card", "data", "seed",
)
DATA_KEYS: tuple[str, ...] = ("manifest", "read", "kept", "quarantined")


def _number(value: Any) -> float | None:
    """Return ``value`` as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_entry(value: Any, ci95: Any = None) -> dict[str, Any]:
    """Return ``{"value": float | None, "ci95": [lo, hi] | None}`` (NaN becomes None)."""
    interval = None
    if ci95 is not None:
        lo, hi = (_number(v) for v in ci95)
        interval = [lo, hi] if lo is not None and hi is not None else None
    return {"value": _number(value), "ci95": interval}


def entries(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return metric entries without intervals for a mapping of plain values."""
    return {name: metric_entry(value) for name, value in values.items()}


@dataclass
class TaskResult:
    """What an evaluation task gives back.

    metrics: name -> ``{"value", "ci95"}`` (see :func:`metric_entry`).
    artifacts: JSON-ready data for figures and tables (curves, matrices, examples).
    n: samples (or queries) the metrics are computed on.
    subgroups: per-subgroup results (the fairness task fills this; see the module docstring).
    """

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    n: int = 0
    subgroups: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        """Return the value of metric ``name`` (None when absent or undefined)."""
        entry = self.metrics.get(name)
        return None if entry is None else entry["value"]

    def to_dict(self) -> dict[str, Any]:
        """Return the task's entry of ``results["tasks"]``."""
        out: dict[str, Any] = {"n": int(self.n), "metrics": self.metrics, "artifacts": self.artifacts}
        if self.subgroups:
            out["subgroups"] = self.subgroups
        return out


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data: NaN/inf -> None, numpy -> Python, tuples -> lists, Paths -> str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return str(value)


def build_results(
    *, task: str, split: str | None, n: int, metrics: Mapping[str, Any], subgroups: Mapping[str, Any],
    config: Mapping[str, Any], tasks: Mapping[str, Any], artifacts: Mapping[str, Any],
    model_card: Mapping[str, Any], data: Mapping[str, Any], seed: int,
) -> dict[str, Any]:
    """Return the ``results.json`` document (JSON-ready, schema checked) from its parts."""
    import medfuse

    doc = jsonable({
        "task": task, "split": split, "n": int(n), "metrics": metrics, "subgroups": subgroups, "config": config,
        "medfuse_version": str(medfuse.__version__), "tasks": tasks, "artifacts": artifacts,
        "model_card": model_card, "data": data, "seed": int(seed),
    })
    check_results(doc)
    return doc


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``results.json`` into ``out_dir`` (atomically) after checking the schema; return its path."""
    doc = jsonable(results)
    check_results(doc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    staging = out / f".{RESULTS_FILE}.tmp"
    staging.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """Return a ``results.json`` (a file, or a folder holding one) after checking the schema."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no results file; run `medfuse evaluate` first")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    check_results(doc, where=str(path))
    return doc


def _check_metrics(metrics: Any, where: str) -> None:
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{where}: expected a mapping of metric entries, got {type(metrics).__name__}")
    for name, entry in metrics.items():
        if not isinstance(entry, Mapping) or set(entry) != {"value", "ci95"}:
            raise ConfigError(f"{where}.{name}: expected {{'value', 'ci95'}}, got {entry!r}")
        value, ci = entry["value"], entry["ci95"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}.{name}.value: expected a number or null, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{name}.value: NaN/inf must be written as null")
        if ci is not None and (
            not isinstance(ci, (list, tuple)) or len(ci) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in ci)
        ):
            raise ConfigError(f"{where}.{name}.ci95: expected [lo, hi] numbers or null, got {ci!r}")


def check_results(doc: Any, *, where: str = "results") -> None:
    """Raise :class:`ConfigError` naming the first key of ``doc`` that breaks the results schema."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(doc).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, kind in (("task", str), ("medfuse_version", str)):
        if not isinstance(doc[key], kind):
            raise ConfigError(f"{where}.{key}: expected a string, got {doc[key]!r}")
    if doc["split"] is not None and not isinstance(doc["split"], str):
        raise ConfigError(f"{where}.split: expected a string or null, got {doc['split']!r}")
    for key in ("n", "seed"):
        if isinstance(doc[key], bool) or not isinstance(doc[key], int):
            raise ConfigError(f"{where}.{key}: expected an integer, got {doc[key]!r}")
    _check_metrics(doc["metrics"], f"{where}.metrics")
    for key in ("subgroups", "config", "tasks", "artifacts", "model_card", "data"):
        if not isinstance(doc[key], Mapping):
            raise ConfigError(f"{where}.{key}: expected a mapping, got {type(doc[key]).__name__}")
    for name, task in doc["tasks"].items():
        if not isinstance(task, Mapping):
            raise ConfigError(f"{where}.tasks.{name}: expected a mapping")
        if "error" in task or "skipped" in task:
            continue
        for key in ("n", "metrics", "artifacts"):
            if key not in task:
                raise ConfigError(f"{where}.tasks.{name}: missing key '{key}'")
        _check_metrics(task["metrics"], f"{where}.tasks.{name}.metrics")
    absent = [k for k in DATA_KEYS if k not in doc["data"]]
    if absent:
        raise ConfigError(f"{where}.data: missing key(s) {', '.join(absent)}")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


@dataclass
class EvaluationResult:
    """The outcome of :func:`medfuse.evaluate.evaluate_checkpoint`.

    results: the ``results.json`` document; out_dir: where files went; results_path / report_path:
    the written files (report_path None when no report was written).
    """

    results: dict[str, Any]
    out_dir: Path
    results_path: Path
    report_path: Path | None = None

    @property
    def metrics(self) -> dict[str, float | None]:
        """Headline metric name -> value."""
        return {name: entry["value"] for name, entry in self.results["metrics"].items()}

    def summary(self, max_rows: int = 40) -> str:
        """Return a compact table of the headline metrics with their 95% intervals, and task outcomes."""
        res = self.results
        lines = [f"{res['task']} on split {res['split']!r}: n={res['n']} (seed {res['seed']})"]
        rows = list(res["metrics"].items())
        stable = [r for r in rows if r[0] in STABLE_METRICS]
        ordered = stable + [r for r in rows if r[0] not in STABLE_METRICS]
        width = max([len(name) for name, _ in ordered[:max_rows]] + [6])
        lines.append(f"{'metric':<{width}}  {'value':>9}  95% CI")
        for name, entry in ordered[:max_rows]:
            ci = entry["ci95"]
            interval = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            lines.append(f"{name:<{width}}  {_fmt(entry['value']):>9}  {interval}")
        if len(ordered) > max_rows:
            lines.append(f"... {len(ordered) - max_rows} more in {self.results_path}")
        for name, task in res["tasks"].items():
            if "error" in task:
                lines.append(f"task {name}: failed: {task['error']}")
            elif "skipped" in task:
                lines.append(f"task {name}: skipped: {task['skipped']}")
        data = res["data"]
        lines.append(f"data: read {data['read']}, kept {data['kept']}, quarantined {data['quarantined']}")
        lines.append(f"results: {self.results_path}" + (f"; report: {self.report_path}" if self.report_path else ""))
        return "\n".join(lines)
