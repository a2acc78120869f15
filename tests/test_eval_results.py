"""results.json: metric entries, JSON cleaning (NaN -> null), the schema check, the writer and the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medfuse.core.errors import ConfigError
from medfuse.evaluate.results import (
    EvaluationResult,
    TaskResult,
    build_results,
    check_results,
    jsonable,
    metric_entry,
    read_results,
    write_results,
)


def _doc() -> dict:
    return {
        "task": "classification", "split": "test", "n": 3,
        "metrics": {"auroc": metric_entry(0.8, (0.7, 0.9)), "ece": metric_entry(float("nan"))},
        "subgroups": {}, "config": {"seed": 0}, "medfuse_version": "0.1.0",
        "tasks": {"classification": TaskResult({"auroc": metric_entry(0.8, (0.7, 0.9))}, {"curve": np.arange(3)}, 3).to_dict(),
                  "zero_shot": {"skipped": "not a dual encoder"}},
        "artifacts": {}, "model_card": {}, "data": {"manifest": "m.csv", "read": 4, "kept": 3, "quarantined": 1},
        "seed": 0,
    }


def test_metric_entry_writes_undefined_values_and_intervals_as_null() -> None:
    assert metric_entry(np.float32(0.5), (0.25, np.float64(0.75))) == {"value": 0.5, "ci95": [0.25, 0.75]}
    assert metric_entry(float("nan")) == {"value": None, "ci95": None}
    assert metric_entry(0.5, (float("nan"), 1.0)) == {"value": 0.5, "ci95": None}
    assert metric_entry(float("inf"))["value"] is None


def test_jsonable_turns_numpy_and_nan_into_plain_json() -> None:
    out = jsonable({"a": np.array([1.0, np.nan]), "b": (np.int64(2), Path("x")), 3: np.bool_(True)})
    assert out == {"a": [1.0, None], "b": [2, "x"], "3": True}
    json.dumps(out, allow_nan=False)


def test_write_and_read_round_trip_with_nan_as_null(tmp_path: Path) -> None:
    path = write_results(_doc(), tmp_path)
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["metrics"]["ece"] == {"value": None, "ci95": None}
    doc = read_results(tmp_path)
    assert doc["tasks"]["classification"]["artifacts"]["curve"] == [0, 1, 2]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("seed"), "missing key"),
        (lambda d: d.update(n="3"), "results.n"),
        (lambda d: d["metrics"].update(auroc={"value": 0.8}), "results.metrics.auroc"),
        (lambda d: d["metrics"].update(auroc={"value": math.nan, "ci95": None}), "NaN"),
        (lambda d: d["metrics"].update(auroc={"value": 0.8, "ci95": [0.7]}), "ci95"),
        (lambda d: d["data"].pop("kept"), "results.data"),
        (lambda d: d["tasks"]["classification"].pop("artifacts"), "tasks.classification"),
    ],
)
def test_check_results_names_the_broken_key(change, message: str) -> None:
    doc = jsonable(_doc())
    doc["metrics"]["auroc"] = dict(doc["metrics"]["auroc"])
    change(doc)
    with pytest.raises(ConfigError, match=message):
        check_results(doc)


def test_summary_lists_metrics_intervals_and_task_outcomes(tmp_path: Path) -> None:
    doc = jsonable(_doc())
    result = EvaluationResult(doc, tmp_path, tmp_path / "results.json")
    text = result.summary()
    assert "auroc" in text and "[0.7, 0.9]" in text and "skipped: not a dual encoder" in text
    assert result.metrics == {"auroc": 0.8, "ece": None}


def test_build_results_fills_the_version_and_checks_the_parts() -> None:
    import medfuse

    parts = {k: v for k, v in _doc().items() if k != "medfuse_version"}
    doc = build_results(**parts)
    assert doc["medfuse_version"] == medfuse.__version__ and doc["tasks"]["classification"]["artifacts"]["curve"] == [0, 1, 2]
    with pytest.raises(ConfigError, match="data"):
        build_results(**{**parts, "data": {"manifest": "m.csv"}})
