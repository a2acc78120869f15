"""Evaluation: tasks (classification to robustness), metrics, ``results.json`` and one-off predictions.

>>> result = evaluate_checkpoint("runs/demo/best", "data/manifest.csv", out="runs/demo/eval")  # doctest: +SKIP
>>> print(result.summary())                                                                   # doctest: +SKIP

Names are imported on first use, so ``medfuse.evaluate.metrics`` stays light to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_checkpoint": "medfuse.evaluate.runner",
    "eval_config": "medfuse.evaluate.runner",
    "DEFAULT_TASKS": "medfuse.evaluate.runner",
    "EVAL_TASKS": "medfuse.evaluate.tasks",
    "EvalConfig": "medfuse.evaluate.tasks",
    "EvalContext": "medfuse.evaluate.tasks",
    "PromptSet": "medfuse.evaluate.tasks",
    "TaskSkipped": "medfuse.evaluate.tasks",
    "run_task": "medfuse.evaluate.tasks",
    "EvaluationResult": "medfuse.evaluate.results",
    "TaskResult": "medfuse.evaluate.results",
    "build_results": "medfuse.evaluate.results",
    "check_results": "medfuse.evaluate.results",
    "metric_entry": "medfuse.evaluate.results",
    "read_results": "medfuse.evaluate.results",
    "write_results": "medfuse.evaluate.results",
    "predict_files": "medfuse.evaluate.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names lazily (``medfuse.evaluate.evaluate_checkpoint`` and the rest)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medfuse.evaluate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
