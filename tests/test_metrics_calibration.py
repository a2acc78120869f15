"""Calibration metrics: parity with torchmetrics and scikit-learn, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional import classification as tmf

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics import (
    apply_temperature,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    reliability_diagram,
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@pytest.fixture
def overconfident() -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); logits 3 z are over-confident by a temperature of 3."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3000, 5)) * 1.5
    p = _softmax(z)
    y = np.array([rng.choice(5, p=row) for row in p])
    return 3.0 * z, y


@pytest.mark.parametrize("n_bins", [5, 15])
def test_binary_ece_mce_match_torchmetrics(n_bins):
    rng = np.random.default_rng(1)
    p = rng.random(800)
    y = (rng.random(800) < p**1.5).astype(int)
    tp, ty = torch.tensor(p), torch.tensor(y)
    ece_ref = tmf.binary_calibration_error(tp, ty, n_bins=n_bins, norm="l1").item()
    mce_ref = tmf.binary_calibration_error(tp, ty, n_bins=n_bins, norm="max").item()
    assert expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(ece_ref, abs=1e-6)
    assert maximum_calibration_error(y, p, n_bins=n_bins) == pytest.approx(mce_ref, abs=1e-6)


def test_multiclass_top_label_ece_matches_torchmetrics(overconfident):
    logits, y = overconfident
    p = _softmax(logits)
    ref = tmf.multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=5, n_bins=15).item()
    assert expected_calibration_error(y, p) == pytest.approx(ref, abs=1e-6)
    ref_max = tmf.multiclass_calibration_error(
        torch.tensor(p), torch.tensor(y), num_classes=5, n_bins=15, norm="max"
    ).item()
    assert maximum_calibration_error(y, p) == pytest.approx(ref_max, abs=1e-6)


def test_multilabel_ece_is_the_mean_of_binary_ece():
    rng = np.random.default_rng(2)
    p = rng.random((500, 3))
    y = (rng.random((500, 3)) < p).astype(int)
    per = [
        tmf.binary_calibration_error(torch.tensor(p[:, k]), torch.tensor(y[:, k])).item() for k in range(3)
    ]
    assert expected_calibration_error(y, p, task="multilabel") == pytest.approx(np.mean(per), abs=1e-6)


def test_brier_matches_sklearn_and_the_direct_formula(overconfident):
    rng = np.random.default_rng(3)
    p = rng.random(300)
    y = rng.integers(0, 2, 300)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    logits, yc = overconfident
    pc = _softmax(logits)
    direct = np.mean(np.sum((pc - np.eye(5)[yc]) ** 2, axis=1))
    assert brier_score(yc, pc) == pytest.approx(direct, abs=1e-12)
    # scikit-learn's multiclass Brier score (without halving) is the same quantity
    assert brier_score(yc, pc) == pytest.approx(brier_score_loss(yc, pc, scale_by_half=False), abs=1e-12)
    pm, ym = rng.random((200, 4)), rng.integers(0, 2, (200, 4))
    assert brier_score(ym, pm, task="multilabel") == pytest.approx(np.mean((pm - ym) ** 2))


def test_reliability_diagram_bins():
    y = np.array([0, 1, 1, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.55, 0.45, 0.95, 1.0])
    d = reliability_diagram(y, p, n_bins=10)
    np.testing.assert_allclose(d.edges, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(d.count, [1, 1, 0, 0, 1, 1, 0, 0, 0, 2])
    assert d.confidence[9] == pytest.approx(0.975) and d.accuracy[9] == 1.0
    assert np.isnan(d.confidence[2]) and np.isnan(d.accuracy[2])
    ece = sum(d.count[k] / 6 * abs(d.accuracy[k] - d.confidence[k]) for k in range(10) if d.count[k])
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(ece)


def test_perfectly_calibrated_bins_have_zero_error():
    p = np.repeat([0.25, 0.75], 8)
    y = np.array([1, 0, 0, 0] * 2 + [1, 1, 1, 0] * 2)
    assert expected_calibration_error(y, p, n_bins=4) == pytest.approx(0.0)
    assert maximum_calibration_error(y, p, n_bins=4) == pytest.approx(0.0)


def test_fit_temperature_recovers_overconfidence_and_minimises_nll(overconfident):
    logits, y = overconfident
    t = fit_temperature(logits, y)
    assert 2.6 < t < 3.4

    def nll(temperature: float) -> float:
        return log_loss(y, _softmax(logits / temperature), labels=range(5))

    best = optimize.minimize_scalar(nll, bounds=(0.1, 20), method="bounded", options={"xatol": 1e-8})
    assert t == pytest.approx(best.x, rel=1e-3)
    scaled = apply_temperature(logits, t)
    assert expected_calibration_error(y, _softmax(scaled)) < expected_calibration_error(y, _softmax(logits))
    assert isinstance(apply_temperature(torch.tensor(logits), t), torch.Tensor)


def test_fit_temperature_multilabel():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(4000, 3)) * 2
    y = (rng.random((4000, 3)) < 1 / (1 + np.exp(-z))).astype(int)
    t = fit_temperature(0.5 * z, y, multilabel=True)  # under-confident logits: T near 0.5
    assert 0.42 < t < 0.58


def test_errors_and_summary():
    with pytest.raises(DataError, match="probabilities"):
        expected_calibration_error([0, 1], [0.2, 1.7])
    with pytest.raises(ConfigError):
        apply_temperature(np.zeros(3), 0.0)
    with pytest.raises(ConfigError):
        expected_calibration_error([0, 1], [0.2, 0.7], n_bins=0)
    out = calibration_metrics([0, 1, 1], [0.1, 0.8, 0.6])
    assert set(out) == {"ece", "mce", "brier"}
