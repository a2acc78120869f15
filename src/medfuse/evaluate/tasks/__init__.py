"""Evaluation tasks: each maps (model, data, settings) to a :class:`~medfuse.evaluate.results.TaskResult`.

Importing this package registers every task in :data:`EVAL_TASKS`: ``classification``, ``calibration``,
``zero_shot``, ``retrieval``, ``linear_probe``, ``few_shot``, ``vqa``, ``report_generation``,
``robustness``, ``efficiency``, ``fairness``, ``modality_comparison``, ``interpretability`` and
``drafting`` (:mod:`medfuse.evaluate.drafting`).
"""

from medfuse.evaluate import drafting  # registers "drafting"
from medfuse.evaluate.tasks import (
    classification,
    efficiency,
    fairness,
    interpret,
    modality,
    probe,
    report_generation,
    retrieval,
    robustness,
    vqa,
    zero_shot,
)
from medfuse.evaluate.tasks.base import (
    EVAL_TASKS,
    EvalConfig,
    EvalContext,
    TaskSkipped,
    model_kind,
    run_task,
)
from medfuse.evaluate.tasks.zero_shot import PromptSet

__all__ = [
    "drafting",
    "EVAL_TASKS",
    "EvalConfig",
    "EvalContext",
    "PromptSet",
    "TaskSkipped",
    "classification",
    "efficiency",
    "fairness",
    "interpret",
    "model_kind",
    "modality",
    "probe",
    "report_generation",
    "retrieval",
    "robustness",
    "run_task",
    "vqa",
    "zero_shot",
]
