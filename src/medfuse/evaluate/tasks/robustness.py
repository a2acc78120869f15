"""Robustness: the headline metric as modalities go missing and as inputs are corrupted.

Missing-modality curves: for each modality the model reads, a fixed fraction r of the rows (r = 0, .25,
.5, .75, 1) has it marked absent (``present[m] = False``) and blanked (zeros, empty text, missing
vitals). Corruption curves: each image corruption and text corruption of
:mod:`~medfuse.evaluate.tasks.corruptions` at severities 1-5, applied to the batches with generators
seeded from the run's seed, the corruption, the severity and the batch number (so the numbers repeat).
The headline metric is AUROC for classifiers (accuracy where AUROC is undefined) and ``vqa_overall``
for VQA models.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medfuse.core import progress
from medfuse.evaluate.metrics import accuracy, auroc, predictions
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.batches import RowSubset, blank_modality, fixed_rows, spread_rows
from medfuse.evaluate.tasks.classification import labelled
from medfuse.evaluate.tasks.corruptions import IMAGE_CORRUPTIONS, SEVERITIES, TEXT_CORRUPTIONS
from medfuse.models.inference import Predictions, predict, unwrap

log = logging.getLogger(__name__)

RATES = (0.0, 0.25, 0.5, 0.75, 1.0)
Transform = Callable[[dict[str, Any], int], dict[str, Any]]


def model_inputs(ctx: EvalContext) -> list[str]:
    """Return the batch keys the model reads that the data provides (e.g. ``image``, ``text``, ``vitals``)."""
    keys = list(dict(getattr(unwrap(ctx.model), "inputs", {}) or {}).values())
    provided = set(ctx.dataset.modalities) | ({"question"} if ctx.dataset.config.question else set())
    return [k for k in dict.fromkeys(keys) if k in provided]


def headline(ctx: EvalContext) -> tuple[str, Callable[[Predictions], float]]:
    """Return the name of the headline metric and a function scoring predictions with it."""
    if ctx.kind == "vqa":
        from medfuse.evaluate.tasks.vqa import score_answers

        return "vqa_overall", lambda pred: float(np.mean(score_answers(ctx, pred).scores))
    task = ctx.label_task
    if task == "regression":
        raise TaskSkipped("robustness curves need a classification head")
    scored = labelled(ctx.predictions(), task)
    name = "auroc" if np.isfinite(auroc(scored.y, scored.probs, task=task)) else "accuracy"
    count = 1 if scored.probs.ndim == 1 else scored.probs.shape[1]
    threshold = ctx.threshold(count)

    def score(pred: Predictions) -> float:
        s = labelled(pred, task)
        if name == "auroc":
            return float(auroc(s.y, s.probs, task=task))
        return float(accuracy(s.y, predictions(s.probs, task, threshold)))

    return name, score


def _seed(ctx: EvalContext, name: str, level: Any, batch_number: int) -> list[int]:
    return [ctx.seed, zlib.crc32(name.encode()), int(round(float(level) * 1000)), batch_number]


def missing_transform(ctx: EvalContext, key: str, rate: float, n_rows: int) -> Transform:
    """Return a batch transform marking ``key`` absent (and blank) on a fixed ``rate`` share of rows."""
    absent_rows = fixed_rows(n_rows, rate, zlib.crc32(f"{ctx.seed}/{key}".encode()))

    def apply(batch: dict[str, Any], number: int) -> dict[str, Any]:
        del number
        absent = torch.as_tensor(absent_rows[batch["index"].cpu().numpy()])
        return blank_modality(batch, key, absent)

    return apply


def image_transform(ctx: EvalContext, name: str, severity: int) -> Transform:
    """Return a batch transform applying image corruption ``name`` in pixel space (absent images untouched)."""
    corrupt = IMAGE_CORRUPTIONS[name]
    pipeline = ctx.dataset.pipeline

    def apply(batch: dict[str, Any], number: int) -> dict[str, Any]:
        out = dict(batch)
        images = batch["image"]
        generator = torch.Generator().manual_seed(int(np.random.default_rng(_seed(ctx, name, severity, number))
                                                      .integers(2**62)))
        pixels = pipeline.denormalize(images.float())
        changed = (corrupt(pixels, severity, generator) - pipeline.mean.to(images.device)) / pipeline.std.to(images.device)
        present = batch.get("present", {}).get("image")
        if present is not None:
            keep = present.to(images.device).view(-1, 1, 1, 1)
            changed = torch.where(keep, changed, images)
        out["image"] = changed.to(images.dtype)
        return out

    return apply


def text_transform(ctx: EvalContext, name: str, severity: int, keys: Sequence[str]) -> Transform:
    """Return a batch transform applying text corruption ``name`` to the string inputs ``keys``."""
    corrupt = TEXT_CORRUPTIONS[name]

    def apply(batch: dict[str, Any], number: int) -> dict[str, Any]:
        out = dict(batch)
        rng = np.random.default_rng(_seed(ctx, name, severity, number))
        for key in keys:
            if isinstance(batch.get(key), list):
                out[key] = [corrupt(str(t), severity, rng) for t in batch[key]]
        return out

    return apply


@EVAL_TASKS.register("robustness")
def robustness(
    ctx: EvalContext, *, max_rows: int | None = 256, rates: Sequence[float] = RATES,
    image_corruptions: Sequence[str] | None = None, text_corruptions: Sequence[str] | None = None,
) -> TaskResult:
    """Missing-modality and corruption curves of the headline metric (``max_rows`` evenly spaced rows).

    The rows are decoded once and kept in memory (``max_rows`` bounds that memory).
    """
    if ctx.kind not in ("diagnosis", "vqa"):
        raise TaskSkipped(f"robustness curves are computed for diagnosis and VQA models; this is a {ctx.kind} model")
    name, score = headline(ctx)
    rows = spread_rows(len(ctx.dataset), max_rows)
    data = RowSubset(ctx.dataset, rows)
    inputs = model_inputs(ctx)
    text_keys = [k for k in inputs if k in ("text", "question")]
    image_names = list(IMAGE_CORRUPTIONS) if image_corruptions is None else list(image_corruptions)
    text_names = list(TEXT_CORRUPTIONS) if text_corruptions is None else list(text_corruptions)
    for chosen, known in ((image_names, IMAGE_CORRUPTIONS), (text_names, TEXT_CORRUPTIONS)):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise TaskSkipped(f"unknown corruption(s) {unknown}; known: {', '.join(known)}")
    jobs: list[tuple[str, str, Any, Transform | None]] = [("clean", "clean", 0, None)]
    for key in inputs:
        jobs += [("missing", key, r, missing_transform(ctx, key, float(r), len(ctx.dataset))) for r in rates]
    if "image" in inputs:
        jobs += [("image", c, s, image_transform(ctx, c, s)) for c in image_names for s in SEVERITIES]
    if text_keys:
        jobs += [("text", c, s, text_transform(ctx, c, s, text_keys)) for c in text_names for s in SEVERITIES]
    clean_batches = list(ctx.batches(data))  # decoded once; every job transforms copies of these
    values: dict[tuple[str, str], list[float]] = {}
    with progress.task("robustness", total=len(jobs)) as bar:
        for family, what, _level, transform in jobs:
            batches = (b if transform is None else transform(b, i) for i, b in enumerate(clean_batches))
            pred = predict(ctx.model, batches, ctx.label_task, temperature=ctx.temperature)
            values.setdefault((family, what), []).append(score(pred))
            bar.update()
    clean = values[("clean", "clean")][0]
    curves: dict[str, Any] = {"metric": name, "clean": clean, "rows": len(rows), "missing_modality": {},
                              "image_corruptions": {}, "text_corruptions": {}}
    metrics = {f"{name}_clean": metric_entry(clean)}
    for (family, what), vals in values.items():
        if family == "missing":
            curves["missing_modality"][what] = {"rates": [float(r) for r in rates], "values": vals}
            for r, v in zip(rates, vals):
                if r in (0.5, 1.0):
                    metrics[f"{name}_missing_{what}@{r:g}"] = metric_entry(v)
        elif family in ("image", "text"):
            curves[f"{family}_corruptions"][what] = {"severities": list(SEVERITIES), "values": vals}
            metrics[f"{name}_{what}_mean"] = metric_entry(float(np.nanmean(vals)))
    corrupted = [v for fam in ("image_corruptions", "text_corruptions") for c in curves[fam].values() for v in c["values"]]
    if corrupted:
        mean = float(np.nanmean(corrupted))
        metrics[f"{name}_corrupted_mean"] = metric_entry(mean)
        metrics["relative_robustness"] = metric_entry(mean / clean if clean else None)
    return TaskResult(metrics=metrics, artifacts={"curves": curves}, n=len(rows))
