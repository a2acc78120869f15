"""Every registered part, for ``medfuse models list``: encoders, fusions, heads, losses, tasks, metrics."""

from __future__ import annotations

from medfuse.core.registry import Registry


def registries() -> dict[str, Registry]:
    """Name -> registry, with every part module imported so the registries are full."""
    import medfuse.evaluate as evaluate
    import medfuse.models  # noqa: F401  (fills ENCODERS, FUSIONS, HEADS)
    import medfuse.objectives  # noqa: F401  (fills LOSSES)
    import medfuse.train.tasks as train_tasks
    from medfuse.evaluate.metrics import METRICS
    from medfuse.models.base import ENCODERS, FUSIONS, HEADS
    from medfuse.objectives import LOSSES

    return {
        "encoders": ENCODERS, "fusions": FUSIONS, "heads": HEADS, "losses": LOSSES,
        "training tasks": train_tasks.TASKS, "evaluation tasks": evaluate.EVAL_TASKS, "metrics": METRICS,
    }


def registered_parts() -> dict[str, list[str]]:
    """Kind -> sorted registered names."""
    return {kind: reg.names() for kind, reg in registries().items()}
