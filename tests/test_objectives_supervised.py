"""Supervised losses: parity with scikit-learn and explicit formulas; NaN targets are missing labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.core.errors import ConfigError
from medfuse.objectives import CrossEntropy, MeanSquaredError, MultiLabelBCE


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cross_entropy_matches_sklearn_log_loss():
    metrics = pytest.importorskip("sklearn.metrics")
    logits = _randn(8, 3)
    targets = torch.tensor([0, 1, 2, 2, 1, 0, 0, 2])
    out = CrossEntropy()(logits, targets)
    expected = metrics.log_loss(targets.numpy(), torch.softmax(logits, -1).numpy(), labels=[0, 1, 2])
    assert out.total.item() == pytest.approx(expected, rel=1e-9)
    accuracy = (logits.argmax(-1) == targets).double().mean().item()
    assert out.parts["accuracy"].item() == pytest.approx(accuracy)


def test_cross_entropy_class_weights_smoothing_and_ignored_samples():
    logits = _randn(6, 4, seed=1)
    targets = torch.tensor([0, 3, -100, 1, 3, 2])
    weights = [1.0, 2.0, 0.5, 3.0]
    log_p = torch.log_softmax(logits, -1)
    kept = [i for i in range(6) if targets[i] != -100]
    w = torch.tensor(weights, dtype=torch.float64)
    weighted = sum(w[targets[i]] * -log_p[i, targets[i]] for i in kept) / sum(w[targets[i]] for i in kept)
    torch.testing.assert_close(CrossEntropy(class_weights=weights)(logits, targets).total, weighted)
    eps = 0.1
    smoothed = sum((1 - eps) * -log_p[i, targets[i]] + eps * -log_p[i].mean() for i in kept) / len(kept)
    torch.testing.assert_close(CrossEntropy(label_smoothing=eps)(logits, targets).total, smoothed)


def test_bce_ignores_missing_labels_and_applies_pos_weight():
    logits = _randn(4, 3, seed=2).requires_grad_()
    targets = torch.tensor(
        [[1.0, 0.0, float("nan")], [0.0, float("nan"), 1.0], [1.0, 1.0, 0.0], [float("nan")] * 3],
        dtype=torch.float64,
    )
    pos_weight = [2.0, 1.0, 0.5]
    out = MultiLabelBCE(pos_weight=pos_weight)(logits, targets)
    terms = []
    for b in range(4):
        for k in range(3):
            y = targets[b, k].item()
            if np.isnan(y):
                continue
            s = torch.sigmoid(logits[b, k])
            terms.append(-(pos_weight[k] * y * torch.log(s) + (1 - y) * torch.log(1 - s)))
    torch.testing.assert_close(out.total, torch.stack(terms).mean())
    assert out.parts["observed"].item() == pytest.approx(7 / 12)
    out.total.backward()
    assert bool((logits.grad[torch.isnan(targets)] == 0).all())
    assert bool((logits.grad[~torch.isnan(targets)] != 0).all())


def test_bce_matches_sklearn_without_missing_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    logits = _randn(10, 2, seed=3)
    targets = (torch.arange(20).reshape(10, 2) % 3 == 0).double()
    out = MultiLabelBCE()(logits, targets)
    expected = metrics.log_loss(targets.flatten().numpy(), torch.sigmoid(logits).flatten().numpy())
    assert out.total.item() == pytest.approx(expected, rel=1e-9)


def test_all_missing_targets_give_a_connected_zero():
    logits = _randn(2, 3).requires_grad_()
    out = MultiLabelBCE()(logits, torch.full((2, 3), float("nan"), dtype=torch.float64))
    assert out.total.item() == 0.0
    out.total.backward()
    assert bool((logits.grad == 0).all())


def test_mse_over_observed_targets():
    predictions = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    targets = torch.tensor([[0.0, float("nan")], [5.0, 4.0]])
    out = MeanSquaredError()(predictions, targets)
    assert out.total.item() == pytest.approx((1 + 4 + 0) / 3)
    assert out.parts["mae"].item() == pytest.approx((1 + 2 + 0) / 3)


def test_supervised_errors():
    with pytest.raises(ConfigError, match="targets"):
        CrossEntropy()(torch.randn(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="integer class ids"):
        CrossEntropy()(torch.randn(3, 2), torch.zeros(3))
    with pytest.raises(ConfigError, match="class_weights"):
        CrossEntropy(class_weights=[1.0, 2.0, 3.0])(torch.randn(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="pos_weight"):
        MultiLabelBCE(pos_weight=[-1.0])
    with pytest.raises(ConfigError, match="shape"):
        MeanSquaredError()(torch.zeros(3), torch.zeros(4))
