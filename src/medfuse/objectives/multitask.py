"""Combining several task losses into one: fixed weights, or weights learned from task uncertainty."""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, as_loss_output, prefixed


def _collect(losses: Mapping[str, LossOutput | Tensor]) -> dict[str, LossOutput]:
    if not losses:
        raise ConfigError("multi-task loss: no task losses were given")
    return {
        name: as_loss_output(value, where=f"multi-task loss, task '{name}'") for name, value in losses.items()
    }


def weighted_sum(losses: Mapping[str, Tensor], weights: Mapping[str, float | Tensor]) -> Tensor:
    """Return ``sum_i w_i * L_i`` over the tasks in ``losses`` (each () scalar)."""
    # Added one by one (not stacked) so that losses of different dtypes under autocast promote.
    terms = [weights[name] * loss for name, loss in losses.items()]
    return functools.reduce(operator.add, terms)


def uncertainty_weighted_sum(losses: Mapping[str, Tensor], log_vars: Mapping[str, Tensor]) -> Tensor:
    """Return ``sum_i exp(-s_i) * L_i + s_i`` with ``s_i = log sigma_i^2`` (Kendall et al. 2018, "Multi-Task
    Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", Eqs. 7 and 10, with the
    constant 1/2 absorbed and ``log sigma^2`` learned for numerical stability as in Sec. 3.2)."""
    terms = [torch.exp(-log_vars[name]) * loss + log_vars[name] for name, loss in losses.items()]
    return functools.reduce(operator.add, terms)


def _parts(tasks: Mapping[str, LossOutput], weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    parts: dict[str, Tensor] = {}
    for name, output in tasks.items():
        parts[name] = output.total
        parts[f"{name}/weight"] = weights[name].detach()
        parts.update(prefixed(name, output.parts))
    return parts


@LOSSES.register("multitask_fixed")
class FixedWeighting(nn.Module):
    """Weighted sum of task losses with fixed weights; tasks without a weight get ``default_weight``.

    A batch may carry a subset of the tasks (a missing modality); only the present ones are summed.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, default_weight: float = 1.0) -> None:
        super().__init__()
        self.weights = dict(weights or {})
        for name, value in self.weights.items():
            if value < 0:
                raise ConfigError(
                    f"multitask_fixed: weight of task '{name}' is {value}; weights must be >= 0"
                )
        if default_weight < 0:
            raise ConfigError(f"multitask_fixed: default_weight={default_weight} must be >= 0")
        self.default_weight = default_weight

    def forward(self, losses: Mapping[str, LossOutput | Tensor]) -> LossOutput:
        """Return ``sum_i w_i L_i``; parts hold each task's loss ``{task}``, ``{task}/weight`` and its parts."""
        tasks = _collect(losses)
        like = next(iter(tasks.values())).total
        weights = {
            name: torch.tensor(
                self.weights.get(name, self.default_weight), dtype=like.dtype, device=like.device
            )
            for name in tasks
        }
        total = weighted_sum({name: out.total for name, out in tasks.items()}, weights)
        return LossOutput(total, _parts(tasks, weights))


@LOSSES.register("multitask_uncertainty")
class UncertaintyWeighting(nn.Module):
    """Task weights learned from homoscedastic uncertainty (Kendall et al. 2018).

    Holds one learned ``s_i = log sigma_i^2`` per task (``log_vars``, initialised to ``init_log_var``); the
    effective weight of task ``i`` is ``exp(-s_i)``. Add this module's parameters to the optimiser.
    """

    def __init__(self, tasks: Sequence[str], init_log_var: float = 0.0) -> None:
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ConfigError(
                f"multitask_uncertainty: tasks={list(tasks)} must list one or more distinct names"
            )
        self.log_vars = nn.ParameterDict(
            {name: nn.Parameter(torch.tensor(float(init_log_var))) for name in tasks}
        )

    def forward(self, losses: Mapping[str, LossOutput | Tensor]) -> LossOutput:
        """Return ``sum_i exp(-s_i) L_i + s_i``; parts hold ``{task}``, ``{task}/weight`` (``exp(-s_i)``),
        ``{task}/log_var`` and the task's own parts."""
        tasks = _collect(losses)
        unknown = [name for name in tasks if name not in self.log_vars]
        if unknown:
            raise ConfigError(
                f"multitask_uncertainty: no learned weight for tasks {unknown}; known tasks: "
                f"{list(self.log_vars)}. List every task in `tasks`"
            )
        log_vars = {name: self.log_vars[name] for name in tasks}
        total = uncertainty_weighted_sum({name: out.total for name, out in tasks.items()}, log_vars)
        parts = _parts(tasks, {name: torch.exp(-s) for name, s in log_vars.items()})
        parts.update({f"{name}/log_var": s.detach() for name, s in log_vars.items()})
        return LossOutput(total, parts)
