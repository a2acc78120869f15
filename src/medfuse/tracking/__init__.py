"""Experiment tracking and a model registry (optional: ``pip install 'medfuse[tracking]'``).

A recipe with a ``tracking:`` section logs its training to MLflow (default store: ``runs/mlruns.db``)
or TensorBoard; ``log_evaluation`` attaches an evaluation to the run; ``medfuse runs list|show|compare``
reads runs back; ``register_checkpoint`` / ``resolve_checkpoint`` give checkpoints ``name@version``
names. MLflow is imported only when used, and a failing store never stops a training.

>>> from medfuse.tracking import log_evaluation, register_checkpoint          # doctest: +SKIP
>>> log_evaluation("runs/fused", "runs/fused/eval")                            # doctest: +SKIP
>>> register_checkpoint("runs/fused", "chest-fusion")                          # doctest: +SKIP
1
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_callbacks": "medfuse.tracking.callbacks",
    "TrackingConfig": "medfuse.tracking.callbacks",
    "tracking_config": "medfuse.tracking.callbacks",
    "MlflowCallback": "medfuse.tracking.mlflow_cb",
    "log_checkpoint": "medfuse.tracking.mlflow_cb",
    "TensorBoardCallback": "medfuse.tracking.tensorboard_cb",
    "log_evaluation": "medfuse.tracking.evaluation",
    "attach_evaluation": "medfuse.tracking.evaluation",
    "EvaluationLog": "medfuse.tracking.evaluation",
    "Store": "medfuse.tracking.store",
    "resolve_store": "medfuse.tracking.store",
    "RunRef": "medfuse.tracking.runs",
    "RunSummary": "medfuse.tracking.runs",
    "resolve_run": "medfuse.tracking.runs",
    "get_run": "medfuse.tracking.runs",
    "list_runs": "medfuse.tracking.runs",
    "compare_runs": "medfuse.tracking.compare_report",
    "Comparison": "medfuse.tracking.compare_report",
    "register_checkpoint": "medfuse.tracking.registry",
    "resolve_checkpoint": "medfuse.tracking.registry",
    "list_models": "medfuse.tracking.registry",
    "RegisteredVersion": "medfuse.tracking.registry",
    "cli_runs": "medfuse.tracking.commands",
    "cli_registry": "medfuse.tracking.commands",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so ``import medfuse.tracking`` stays light."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medfuse.tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
