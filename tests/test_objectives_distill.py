"""Distillation losses against straightforward formulas; the teacher never receives a gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.objectives import (
    EmbeddingDistillLoss,
    LogitDistillLoss,
    RelationalDistillLoss,
    kd_logits_loss,
    rkd_angle_loss,
    rkd_distance_loss,
)


def _randn(*shape, seed=0, grad=False):
    return torch.randn(
        *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    ).requires_grad_(grad)


def test_hinton_loss_matches_the_formula_and_leaves_the_teacher_alone():
    student, teacher = _randn(6, 5, seed=0, grad=True), _randn(6, 5, seed=1, grad=True)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    T, alpha = 3.0, 0.7
    out = LogitDistillLoss(temperature=T, alpha=alpha)(student, teacher, targets)
    p_teacher = torch.softmax(teacher.detach() / T, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / T, -1))).sum(-1).mean()
    hard = -torch.log_softmax(student, -1)[torch.arange(6), targets].mean()
    torch.testing.assert_close(out.parts["soft"], T**2 * kl)
    torch.testing.assert_close(out.parts["hard"], hard)
    torch.testing.assert_close(out.total, alpha * T**2 * kl + (1 - alpha) * hard)
    out.total.backward()
    assert teacher.grad is None and student.grad is not None


def test_soft_only_and_sequence_positions_without_labels():
    student, teacher = _randn(2, 4, 7, seed=2), _randn(2, 4, 7, seed=3)
    soft_only = kd_logits_loss(student, teacher, temperature=2.0, alpha=0.5)
    assert set(soft_only.parts) == {"soft"}
    targets = torch.tensor([[1, -100, 3, 4], [-100, -100, 6, 0]])
    out = kd_logits_loss(student, teacher, targets, temperature=2.0, alpha=0.5)
    keep = targets != -100
    expected = kd_logits_loss(student[keep], teacher[keep], targets[keep], temperature=2.0, alpha=0.5)
    torch.testing.assert_close(out.total, expected.total)
    none_labelled = kd_logits_loss(student, teacher, torch.full((2, 4), -100))
    assert none_labelled.total.item() == 0.0


def test_embedding_distillation_cosine_mse_and_projection():
    student, teacher = _randn(5, 4, seed=4, grad=True), _randn(5, 4, seed=5, grad=True)
    cosine = EmbeddingDistillLoss(kind="cosine")(student, teacher).total
    manual = torch.stack(
        [1 - student[i] @ teacher[i] / (student[i].norm() * teacher[i].norm()) for i in range(5)]
    )
    torch.testing.assert_close(cosine, manual.mean())
    mse = EmbeddingDistillLoss(kind="mse")(student, teacher).total
    torch.testing.assert_close(mse, ((student - teacher) ** 2).mean())
    mse.backward()
    assert teacher.grad is None

    projected = EmbeddingDistillLoss(student_dim=4, teacher_dim=3).double()
    assert projected.projection is not None
    out = projected(student, _randn(5, 3, seed=6))
    out.total.backward()
    assert projected.projection.weight.grad is not None
    assert EmbeddingDistillLoss(student_dim=4, teacher_dim=4).projection is None
    with pytest.raises(ConfigError, match="differs"):
        EmbeddingDistillLoss(student_dim=4, teacher_dim=3, project=False)


def _reference_rkd(student, teacher):
    """Park et al.'s definitions written out element by element (Huber = smooth L1 with beta 1)."""
    n = student.shape[0]

    def distances(x):
        d = torch.zeros(n, n, dtype=x.dtype)
        for i in range(n):
            for j in range(n):
                if i != j:
                    d[i, j] = (x[i] - x[j]).norm()
        return d / d[d > 0].mean()

    def angles(x):
        a = torch.zeros(n, n, n, dtype=x.dtype)
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    if i != j and k != j:
                        e_ij = (x[i] - x[j]) / (x[i] - x[j]).norm()
                        e_kj = (x[k] - x[j]) / (x[k] - x[j]).norm()
                        a[j, i, k] = e_ij @ e_kj
        return a

    distance = F.smooth_l1_loss(distances(student), distances(teacher))
    angle = F.smooth_l1_loss(angles(student), angles(teacher))
    return distance, angle


def test_relational_kd_matches_elementwise_definitions():
    student, teacher = _randn(5, 3, seed=7), _randn(5, 8, seed=8) * 4
    ref_distance, ref_angle = _reference_rkd(student, teacher)
    torch.testing.assert_close(rkd_distance_loss(student, teacher), ref_distance)
    torch.testing.assert_close(rkd_angle_loss(student, teacher), ref_angle)
    out = RelationalDistillLoss(distance_weight=1.0, angle_weight=2.0)(student, teacher)
    torch.testing.assert_close(out.total, ref_distance + 2 * ref_angle)


def test_relational_kd_is_scale_invariant_and_has_finite_gradients_with_duplicates():
    student, teacher = _randn(6, 4, seed=9), _randn(6, 4, seed=10)
    same = RelationalDistillLoss()(student, 5.0 * student).total
    assert same.item() == pytest.approx(0.0, abs=1e-12)  # distances are normalised, angles scale-free
    with_duplicate = torch.cat([student, student[:1]]).requires_grad_()
    loss = RelationalDistillLoss()(with_duplicate, torch.cat([teacher, teacher[:1]])).total
    loss.backward()
    assert torch.isfinite(with_duplicate.grad).all()
    with pytest.raises(ConfigError, match="samples"):
        RelationalDistillLoss()(student, teacher[:3])
