"""Modality comparison: does fusion beat each single modality?

The fused model is re-evaluated with one modality at a time (the others marked absent and blanked),
and separately trained single-modality checkpoints (``checkpoints={"image only": DIR, ...}``) are
evaluated on the same rows. Each configuration gets the headline metric with a 95% interval and a
paired test against the fused model on the same rows: DeLong's test of two correlated AUROCs for
binary tasks (DeLong et al. 1988), a paired bootstrap of the macro AUROC otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.core.errors import DataError
from medfuse.data import ManifestDataset
from medfuse.evaluate.metrics import auroc, delong_test, paired_bootstrap_test
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.batches import blank_modality
from medfuse.evaluate.tasks.classification import Scored, headline_entries, labelled
from medfuse.evaluate.tasks.robustness import model_inputs
from medfuse.evaluate.tasks.sources import data_config_for, resolve_checkpoint

log = logging.getLogger(__name__)


def only(keys: list[str], kept: str):  # type: ignore[no-untyped-def]
    """Return a batch transform that marks every modality in ``keys`` but ``kept`` absent."""

    def apply(batch: dict[str, Any], number: int) -> dict[str, Any]:
        del number
        out = batch
        for key in keys:
            if key != kept:
                out = blank_modality(out, key, torch.ones(len(batch["index"]), dtype=torch.bool))
        return out

    return apply


def _aligned(reference: Scored, other: Scored) -> tuple[np.ndarray, np.ndarray]:
    """Return positions into ``reference`` and ``other`` of the rows both scored, in reference order."""
    where = {row: i for i, row in enumerate(other.index)}
    ref_pos = [i for i, row in enumerate(reference.index) if row in where]
    return np.asarray(ref_pos, dtype=np.int64), np.asarray([where[reference.index[i]] for i in ref_pos], dtype=np.int64)


def paired_p_value(ctx: EvalContext, y: np.ndarray, fused: np.ndarray, other: np.ndarray, task: str,
                   groups: Any, n_resamples: int) -> tuple[float | None, str]:
    """Return the two-sided p-value that both score the same AUROC, and the test's name."""
    try:
        if task == "binary":
            return delong_test(y, fused, other).p, "delong"
        if n_resamples == 0:
            return None, "none"
        p = paired_bootstrap_test(auroc, y, fused, other, groups=groups, n_resamples=n_resamples, seed=ctx.seed,
                                  metric_kwargs={"task": task})
        return float(p), "paired_bootstrap"
    except DataError as exc:
        log.warning("modality comparison: no paired test (%s)", exc)
        return None, "none"


def _checkpoint_rows(ctx: EvalContext, source: Any) -> tuple[torch.nn.Module, ManifestDataset, float]:
    """Return the model of an extra checkpoint, the evaluated rows read with its data config, its temperature."""
    ckpt = resolve_checkpoint(source)
    manifest = ctx.report.kept_manifest() if ctx.report is not None else ctx.dataset.manifest
    cfg = data_config_for(ckpt, manifest.columns, ctx.config.data, path=manifest.path)
    source_rows = ctx.report if ctx.report is not None else manifest
    ds = ManifestDataset(source_rows, cfg, split=ctx.dataset.split, classes=ctx.dataset.classes,
                         max_rows=ctx.config.max_rows)
    return ckpt.model, ds, float(ckpt.extra.get("temperature", 1.0) or 1.0)


@EVAL_TASKS.register("modality_comparison")
def modality_comparison(
    ctx: EvalContext, *, checkpoints: Mapping[str, Any] | None = None, n_resamples: int | None = None,
) -> TaskResult:
    """The fused model next to each single modality and to single-modality checkpoints, with paired tests."""
    if ctx.kind != "diagnosis":
        raise TaskSkipped(f"modality comparison applies to diagnosis models; this is a {ctx.kind} model")
    task = ctx.label_task
    if task == "regression":
        raise TaskSkipped("modality comparison needs a classification head")
    keys = model_inputs(ctx)
    if len(keys) < 2 and not checkpoints:
        raise TaskSkipped(f"the model reads one modality ({', '.join(keys) or 'none'}); nothing to compare")
    resamples = ctx.config.n_resamples if n_resamples is None else n_resamples
    fused = labelled(ctx.predictions(), task)
    runs: list[tuple[str, str, dict[str, Any], Scored]] = []
    if len(keys) >= 2:
        for key in keys:
            pred = ctx.predictions(ctx.dataset, transform=only(keys, key), temperature=ctx.temperature)
            runs.append((f"{key}_only", "single_modality", {"modalities": [key]}, labelled(pred, task)))
    for name, source in (checkpoints or {}).items():
        model, ds, temperature = _checkpoint_rows(ctx, source)
        pred = ctx.predictions(ds, model=model, temperature=temperature)
        label = str(source) if isinstance(source, (str, Path)) else getattr(source, "path", None)
        runs.append((str(name), "checkpoint", {"checkpoint": str(label)}, labelled(pred, task)))
    count = 1 if fused.probs.ndim == 1 else fused.probs.shape[1]
    threshold = ctx.threshold(count)
    groups = ctx.patient_groups(fused.index)
    names = ("auroc", "accuracy")
    fused_entries = headline_entries(ctx, fused.y, fused.probs, task, threshold, fused.num_classes, groups,
                                     names=names, n_resamples=resamples)
    configurations: list[dict[str, Any]] = [{"name": "fused", "kind": "fused", "n": len(fused.y), "metrics": fused_entries,
                       "p_value": None, "test": None}]
    metrics = {f"{m}/fused": e for m, e in fused_entries.items()}
    for name, kind, info, scored in runs:
        ref_pos, other_pos = _aligned(fused, scored)
        if len(ref_pos) == 0:
            log.warning("modality comparison: '%s' scored none of the fused model's rows", name)
            continue
        y = fused.y[ref_pos]
        rows_groups = groups[ref_pos] if groups is not None else None
        entries = headline_entries(ctx, y, scored.probs[other_pos], task, threshold, fused.num_classes, rows_groups,
                                   names=names, n_resamples=resamples)
        p, test = paired_p_value(ctx, y, fused.probs[ref_pos], scored.probs[other_pos], task, rows_groups, resamples)
        configurations.append({"name": name, "kind": kind, **info, "n": int(len(ref_pos)), "metrics": entries,
                               "p_value": p, "test": test})
        metrics.update({f"{m}/{name}": e for m, e in entries.items()})
        metrics[f"p_value/{name}"] = metric_entry(p)
    fused_value = fused_entries["auroc"]["value"]
    others = [c["metrics"]["auroc"]["value"] for c in configurations[1:]]
    beats = None if fused_value is None or any(v is None for v in others) else all(fused_value > v for v in others)
    artifacts = {"metric": "auroc", "configurations": configurations, "fusion_beats_all": beats}
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(fused.y))
