"""Interpretability: Grad-CAM / attention-rollout overlays and per-modality contributions for the report."""

from __future__ import annotations

from typing import Any

import torch

from medfuse.evaluate.results import TaskResult
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.models.diagnosis import DiagnosisModel
from medfuse.models.encoders.image import TimmImageEncoder
from medfuse.models.inference import model_device, to_device, unwrap


@EVAL_TASKS.register("interpretability")
def interpretability(ctx: EvalContext, *, samples: int = 6, encoder: str = "image") -> TaskResult:
    """Saliency overlays on the first ``samples`` rows with an image, and mean Shapley contributions per modality."""
    from medfuse.evaluate.explain import modality_contributions, saliency_gallery

    model = unwrap(ctx.model)
    if not isinstance(model, DiagnosisModel):
        raise TaskSkipped("interpretability explains diagnosis models (encoders + fusion + head)")
    batch = next(ctx.batches(batch_size=max(samples, 1)), None)
    if batch is None:
        raise TaskSkipped("no rows to explain")
    batch = to_device(batch, model_device(model))
    artifacts: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    tower = model.encoders[encoder] if encoder in model.encoders else None  # noqa: SIM401 (a ModuleDict has no get)
    if isinstance(tower, TimmImageEncoder) and "image" in batch:
        names = ctx.output_names(int(model(batch).logits.shape[-1]))
        titles = [f"row {int(i)}" for i in batch["index"].tolist()]
        artifacts["gradcam"] = saliency_gallery(model, batch, encoder=encoder, class_names=names, titles=titles,
                                                limit=samples)
    if len(model.encoders) > 1:
        with torch.enable_grad():
            contrib = modality_contributions(model, batch)
        scores = contrib.shapley if contrib.shapley is not None else contrib.occlusion
        if scores is not None:
            per = scores.detach().abs().mean(0).cpu().numpy()
            values = {m: float(v) for m, v in zip(contrib.modalities, per)}
            method = "Shapley value" if contrib.shapley is not None else "occlusion"
            artifacts["modality_contribution"] = {"method": f"mean |{method}| of the explained logit", "values": values}
            for m, v in values.items():
                metrics[f"shapley/{m}"] = {"value": v, "ci95": None}
    if not artifacts:
        raise TaskSkipped("the model has no timm image tower and a single modality: nothing to explain")
    return TaskResult(metrics=metrics, artifacts=artifacts, n=int(len(batch["index"])))
