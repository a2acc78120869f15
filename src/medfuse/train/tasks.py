"""Training tasks: what the loss on a batch is and how validation is scored, per kind of model.

A task never owns the loop; :func:`medfuse.train.loop.fit` calls ``task.loss`` and ``task.validate``.
The trained object is a :class:`TaskModule` (the model plus its criterion, so learnable loss parameters
such as uncertainty weights are optimised and checkpointed with it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.core.registry import Registry
from medfuse.models.inference import embed_pairs, predict, text_groups, unwrap
from medfuse.objectives import LossOutput, build_loss, clip_loss, siglip_loss

TASKS: Registry = Registry("training task")


class TaskModule(nn.Module):
    """The model being trained and the criterion whose parameters train with it."""

    def __init__(self, model: nn.Module, criterion: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion if criterion is not None else nn.Identity()


def _criterion(module: nn.Module) -> nn.Module:
    m = getattr(module, "_orig_mod", module)
    m = getattr(m, "module", m)
    return m.criterion


@TASKS.register("classification")
class ClassificationTask:
    """Supervised diagnosis: encoders + fusion + head, cross-entropy (multi-class) or BCE (binary, multi-label)."""

    name = "classification"

    def __init__(self, label_task: str, label_names: list[str], loss: Mapping[str, Any] | None = None) -> None:
        self.label_task = label_task
        self.label_names = label_names
        self.loss_cfg = dict(loss or {})

    def criterion(self) -> nn.Module:
        cfg = dict(self.loss_cfg)
        default = {"multiclass": "cross_entropy", "binary": "bce", "multilabel": "bce", "regression": "mse"}[self.label_task]
        name = cfg.pop("name", default)
        return build_loss(name, **cfg)

    def targets(self, batch: Mapping[str, Any], logits: Tensor) -> Tensor:
        y = batch["labels"]
        if self.label_task == "binary":
            return y.float().reshape(logits.shape)
        if self.label_task in ("multilabel", "regression"):
            return y.float()
        return y.long()

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        out = unwrap(module)(batch)
        logits = out.logits
        return _criterion(module)(logits.float(), self.targets(batch, logits))

    def validate(self, module: nn.Module, loader: Any) -> dict[str, float]:
        from medfuse.evaluate.metrics import classification_metrics
        from medfuse.evaluate.metrics.calibration import expected_calibration_error

        pred = predict(module, loader, self.label_task)
        probs, labels = pred.probs, pred.labels
        if self.label_task == "regression":
            return {"mse": float(np.nanmean((probs - labels) ** 2))}
        m = classification_metrics(labels, probs, task=self.label_task, labels=self.label_names)
        out = {k: v for k, v in m.items() if "/" not in k}
        out["ece"] = float(expected_calibration_error(labels, probs, task=self.label_task))
        return {k: float(v) for k, v in out.items()}


@TASKS.register("contrastive")
class ContrastiveTask:
    """CLIP/SigLIP alignment of a dual encoder on image-text pairs; validation is retrieval R@K and MRR."""

    name = "contrastive"

    def __init__(self, loss: Mapping[str, Any] | None = None) -> None:
        cfg = dict(loss or {})
        self.kind = cfg.pop("name", "clip")
        if self.kind not in ("clip", "siglip"):
            raise ConfigError(f"loss.name: contrastive training uses 'clip' or 'siglip', got '{self.kind}'")
        self.label_smoothing = float(cfg.pop("label_smoothing", 0.0))
        self.local_loss = bool(cfg.pop("local_loss", False))
        self.max_logit_scale = float(cfg.pop("max_logit_scale", 100.0))
        if cfg:
            raise ConfigError(f"loss: unknown keys for contrastive training: {sorted(cfg)}; known: name, label_smoothing, local_loss, max_logit_scale")

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        model = module.model if isinstance(module, TaskModule) else module
        out = model(batch)
        img = F.normalize(out.image_embeds.float(), dim=-1)
        txt = F.normalize(out.text_embeds.float(), dim=-1)
        # DualEncoderOutput.logit_scale is already exp(s) (capped by the model): exponentiating it again
        # pinned the scale at the cap and left the temperature without a gradient
        scale = out.logit_scale.float().clamp(max=self.max_logit_scale)
        dist_kw = {"local_loss": self.local_loss}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            dist_kw["gather_with_grad"] = True
        if self.kind == "clip":
            res = clip_loss(img, txt, scale, label_smoothing=self.label_smoothing, **dist_kw)
        else:
            if out.logit_bias is None:
                raise ConfigError("loss 'siglip' needs a dual encoder with a logit bias: set model.init_logit_bias (e.g. -10)")
            res = siglip_loss(img, txt, scale, out.logit_bias.float(), **dist_kw)
        res.parts["logit_scale"] = scale.detach()
        return res

    def validate(self, module: nn.Module, loader: Any) -> dict[str, float]:
        from medfuse.evaluate.metrics import retrieval_metrics

        emb = embed_pairs(module, loader)
        groups = text_groups(emb.texts)
        m = retrieval_metrics(emb.image, emb.text, groups, groups)
        m["rsum"] = sum(v for k, v in m.items() if "_R@" in k)
        return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}



class _DistillCriterion(nn.Module):
    """Hard-label loss, soft teacher targets, and an optional learned projection for embedding distillation."""

    def __init__(self, hard: nn.Module, embed: nn.Module | None) -> None:
        super().__init__()
        self.hard = hard
        self.embed = embed


@TASKS.register("distillation")
class DistillationTask(ClassificationTask):
    """Knowledge distillation (Hinton et al. 2015) from a frozen teacher checkpoint into any registered model.

    Multi-class: ``alpha * T^2 KL(teacher/T || student/T) + (1 - alpha) CE``. Binary and multi-label: the same mix
    with per-label sigmoid soft targets at temperature T. With ``distill.embed_weight > 0`` the fused features are
    also matched (cosine, through a learned projection when widths differ; Romero et al. 2015).
    """

    name = "distillation"

    def __init__(self, recipe: Any, train: Any) -> None:
        from medfuse.models import load_checkpoint

        super().__init__(train.task, train.label_names or [], recipe.loss)
        if not recipe.distill.teacher:
            raise ConfigError("distill.teacher: name the teacher checkpoint directory for task 'distillation'")
        loaded = load_checkpoint(recipe.distill.teacher)
        if loaded.label_names and train.label_names and list(loaded.label_names) != list(train.label_names):
            raise ConfigError(f"distill.teacher: its labels {loaded.label_names} differ from the data's {train.label_names}")
        self.teacher = loaded.model.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.cfg = recipe.distill
        self._student_dim = int(recipe.model.get("fusion", {}).get("dim", 0) or 0)
        self._teacher_dim = int(getattr(loaded.config.fusion, "dim", 0) or 0)

    def criterion(self) -> nn.Module:
        embed = None
        if self.cfg.embed_weight > 0:
            embed = build_loss("distill_embed", student_dim=self._student_dim, teacher_dim=self._teacher_dim)
        return _DistillCriterion(super().criterion(), embed)

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        from medfuse.objectives import kd_logits_loss

        student = unwrap(module)
        crit = _criterion(module)
        out = student(batch)
        device = out.logits.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            t_out = self.teacher(batch)
        z_s, z_t = out.logits.float(), t_out.logits.float()
        T, alpha = self.cfg.temperature, self.cfg.alpha
        if self.label_task == "multiclass":
            res = kd_logits_loss(z_s, z_t, batch["labels"].long(), temperature=T, alpha=alpha)
        else:
            soft_targets = torch.sigmoid(z_t / T)
            soft = F.binary_cross_entropy_with_logits(z_s / T, soft_targets) * T * T
            hard = crit.hard(z_s, self.targets(batch, z_s)).total
            res = LossOutput(alpha * soft + (1 - alpha) * hard, {"soft": soft.detach(), "hard": hard.detach()})
        if crit.embed is not None:
            e = crit.embed(out.fused.float(), t_out.fused.float()).total
            res = LossOutput(res.total + self.cfg.embed_weight * e, {**res.parts, "embed": e.detach()})
        return res
