"""Knowledge distillation from a teacher: soft logits, embeddings, and the relations between samples.

Teacher outputs are detached inside every function: gradients reach the student only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_ndim, check_range, check_same_shape, empty_loss

IGNORE_INDEX = -100
EMBED_KINDS = ("cosine", "mse")


def kd_logits_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor | None = None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> LossOutput:
    """Return Hinton et al.'s distillation loss (2015, "Distilling the Knowledge in a Neural Network", Sec. 2):

        L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

    The ``T^2`` keeps the soft term's gradient scale independent of ``T``; the KL is averaged over samples.

    student_logits, teacher_logits: (N, C) or (N, L, C) logits (a sequence is flattened to positions).
    targets: (N,) or (N, L) class ids, ``-100`` where a position has no label (excluded from both terms);
        None for soft targets only (``alpha`` is then taken as 1).
    Returns ``total`` and parts ``soft`` (the ``T^2``-scaled KL) and ``hard`` (when targets are given).
    """
    where = "logit distillation"
    if temperature <= 0:
        raise ConfigError(f"{where}: temperature={temperature} must be > 0")
    check_range("alpha", alpha, 0.0, 1.0, where=where)
    check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits, where=where)
    check_ndim("student_logits", student_logits, (2, 3), where=where, shape="(N, C) or (N, L, C)")
    classes = student_logits.shape[-1]
    student = student_logits.reshape(-1, classes)
    teacher = teacher_logits.detach().reshape(-1, classes)
    flat_targets = None
    if targets is not None:
        if targets.shape != student_logits.shape[:-1]:
            raise ConfigError(
                f"{where}: targets has shape {tuple(targets.shape)}; expected {tuple(student_logits.shape[:-1])}"
            )
        flat_targets = targets.reshape(-1)
        keep = flat_targets != IGNORE_INDEX
        student, teacher, flat_targets = student[keep], teacher[keep], flat_targets[keep]
    if student.shape[0] == 0:
        zero = empty_loss(student_logits)
        return LossOutput(zero, {"soft": zero})
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    if flat_targets is None:
        return LossOutput(soft, {"soft": soft})
    hard = F.cross_entropy(student, flat_targets)
    return LossOutput(alpha * soft + (1 - alpha) * hard, {"soft": soft, "hard": hard})


def embedding_distill_loss(
    student_embeds: Tensor, teacher_embeds: Tensor, *, kind: Literal["cosine", "mse"] = "cosine"
) -> Tensor:
    """Return the () distance between student and (detached) teacher embeddings, FitNets-style hints
    (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", the hint loss).

    ``"cosine"``: ``mean_i (1 - cos(s_i, t_i))``; ``"mse"``: mean squared error over all elements.
    student_embeds, teacher_embeds: (N, D) of the same width (project the student first when they differ).
    """
    check_choice("embedding distillation kind", kind, EMBED_KINDS)
    teacher_embeds = teacher_embeds.detach()
    check_same_shape(
        "student_embeds", student_embeds, "teacher_embeds", teacher_embeds, where="embedding distillation"
    )
    if kind == "cosine":
        return (1 - F.cosine_similarity(student_embeds, teacher_embeds, dim=-1)).mean()
    return F.mse_loss(student_embeds, teacher_embeds)


def _pairwise_distances(x: Tensor) -> Tensor:
    """Return the (N, N) Euclidean distances of (N, D) rows, with a zero diagonal and finite gradients."""
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).square().sum(-1)
    off_diagonal = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return squared.clamp_min(1e-12).sqrt() * off_diagonal


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Return the distance-wise relational KD loss (Park et al. 2019, "Relational Knowledge Distillation"):
    Huber loss between pairwise distances, each divided by its mean over distinct pairs.

    student: (N, Ds), teacher: (N, Dt) embeddings of the same N samples; the widths may differ.
    """
    teacher_d = _pairwise_distances(teacher.detach())
    teacher_d = teacher_d / teacher_d[teacher_d > 0].mean()
    student_d = _pairwise_distances(student)
    student_d = student_d / student_d[student_d > 0].mean()
    return F.smooth_l1_loss(student_d, teacher_d)


def _angles(x: Tensor) -> Tensor:
    """Return (N, N, N) cosines ``<e_ij, e_kj>`` with ``e_ij`` the unit vector from ``x_j`` to ``x_i``,
    zero when two of the points coincide."""
    directions = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # [j, i] = unit(x_i - x_j)
    return torch.bmm(directions, directions.transpose(1, 2))  # [j, i, k]


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Return the angle-wise relational KD loss (Park et al. 2019, angle-wise loss): Huber loss between the
    cosines of the angles formed by every triplet of samples in the student and in the teacher space.

    student: (N, Ds), teacher: (N, Dt) embeddings of the same N samples; memory is O(N^2 D + N^3).
    """
    return F.smooth_l1_loss(_angles(student), _angles(teacher.detach()))


@LOSSES.register("distill_logits")
class LogitDistillLoss(nn.Module):
    """Soft-target distillation with temperature, mixed with the hard-label loss (Hinton et al. 2015)."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"distill_logits: temperature={temperature} must be > 0")
        check_range("alpha", alpha, 0.0, 1.0, where="distill_logits")
        self.temperature = temperature
        self.alpha = alpha

    def forward(
        self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor | None = None
    ) -> LossOutput:
        """Return the distillation loss of (N, C) or (N, L, C) logits; see :func:`kd_logits_loss`."""
        return kd_logits_loss(
            student_logits, teacher_logits, targets, temperature=self.temperature, alpha=self.alpha
        )


@LOSSES.register("distill_embed")
class EmbeddingDistillLoss(nn.Module):
    """Embedding distillation by cosine or MSE, through a learned linear projection when widths differ
    (the FitNets regressor, Romero et al. 2015)."""

    def __init__(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        kind: Literal["cosine", "mse"] = "cosine",
        project: bool | None = None,
    ) -> None:
        super().__init__()
        check_choice("distill_embed kind", kind, EMBED_KINDS)
        differ = student_dim is not None and teacher_dim is not None and student_dim != teacher_dim
        if project is None:
            project = differ
        if differ and not project:
            raise ConfigError(
                f"distill_embed: student_dim={student_dim} differs from teacher_dim={teacher_dim}; "
                "leave project unset (or true) to learn a projection"
            )
        if project and (student_dim is None or teacher_dim is None):
            raise ConfigError("distill_embed: a projection needs student_dim and teacher_dim")
        self.kind = kind
        self.projection = nn.Linear(student_dim, teacher_dim) if project else None  # type: ignore[arg-type]

    def forward(self, student_embeds: Tensor, teacher_embeds: Tensor) -> LossOutput:
        """Return the distance of (N, Ds) student embeddings (projected to Dt) from (N, Dt) teacher ones."""
        if self.projection is not None:
            student_embeds = self.projection(student_embeds)
        loss = embedding_distill_loss(student_embeds, teacher_embeds, kind=self.kind)
        return LossOutput(loss, {self.kind: loss})


@LOSSES.register("distill_relational")
class RelationalDistillLoss(nn.Module):
    """Relational KD: distance-wise plus angle-wise structure of the batch (Park et al. 2019).

    ``total = distance_weight * distance + angle_weight * angle``; the paper's weights are 1 and 2.
    """

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ConfigError(
                f"distill_relational: distance_weight={distance_weight}, angle_weight={angle_weight}; "
                "both must be >= 0 and one > 0"
            )
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(self, student_embeds: Tensor, teacher_embeds: Tensor) -> LossOutput:
        """Return the relational loss of (N, Ds) student and (N, Dt) teacher embeddings (N >= 2 samples)."""
        check_ndim("student_embeds", student_embeds, 2, where="distill_relational", shape="(N, Ds)")
        check_ndim("teacher_embeds", teacher_embeds, 2, where="distill_relational", shape="(N, Dt)")
        if student_embeds.shape[0] != teacher_embeds.shape[0] or student_embeds.shape[0] < 2:
            raise ConfigError(
                f"distill_relational: student has {student_embeds.shape[0]} samples and teacher "
                f"{teacher_embeds.shape[0]}; they must match and be at least 2"
            )
        parts: dict[str, Tensor] = {}
        total = student_embeds.new_zeros(())
        if self.distance_weight:
            parts["distance"] = rkd_distance_loss(student_embeds, teacher_embeds)
            total = total + self.distance_weight * parts["distance"]
        if self.angle_weight:
            parts["angle"] = rkd_angle_loss(student_embeds, teacher_embeds)
            total = total + self.angle_weight * parts["angle"]
        return LossOutput(total, parts)
