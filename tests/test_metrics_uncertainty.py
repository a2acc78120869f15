"""Bootstrap intervals, paired bootstrap test and DeLong's test."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics import (
    accuracy,
    auroc,
    bootstrap_ci,
    bootstrap_metrics,
    classification_metrics,
    delong_covariance,
    delong_test,
    f1_score,
    paired_bootstrap_test,
)


def _binormal(rng: np.random.Generator, n: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.4).astype(int)
    return y, rng.normal(size=n) + shift * y


def test_vectorised_bootstrap_equals_the_per_resample_loop():
    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 300)
    fast = bootstrap_ci(auroc, y, s, n_resamples=200, seed=7)
    slow = bootstrap_ci(lambda a, b: auroc(a, b), y, s, n_resamples=200, seed=7)
    assert fast.value == pytest.approx(roc_auc_score(y, s))
    assert (fast.lo, fast.hi) == pytest.approx((slow.lo, slow.hi), abs=1e-12)
    value, lo, hi = fast  # unpacks as a triple
    assert lo < value < hi
    # one group per sample is the ordinary bootstrap
    grouped = bootstrap_ci(auroc, y, s, groups=np.arange(300), n_resamples=200, seed=7)
    assert (grouped.lo, grouped.hi) == pytest.approx((fast.lo, fast.hi))


def test_bootstrap_auroc_2k_samples_1000_resamples_is_fast():
    rng = np.random.default_rng(1)
    y, s = _binormal(rng, 2000)
    start = time.process_time()  # CPU time of this process: robust to other load on the machine
    ci = bootstrap_ci(auroc, y, s, n_resamples=1000, seed=0)
    assert time.process_time() - start < 4.0
    assert ci.n_valid == 1000 and ci.lo < ci.value < ci.hi


def test_cluster_bootstrap_widens_the_interval_for_repeated_patients():
    rng = np.random.default_rng(2)
    y, s = _binormal(rng, 100)
    patients = np.repeat(np.arange(100), 5)  # five identical samples per patient
    yy, ss = np.repeat(y, 5), np.repeat(s, 5)
    naive = bootstrap_ci(auroc, yy, ss, n_resamples=400, seed=0)
    cluster = bootstrap_ci(auroc, yy, ss, groups=patients, n_resamples=400, seed=0)
    per_patient = bootstrap_ci(auroc, y, s, n_resamples=400, seed=0)
    assert (cluster.hi - cluster.lo) > 1.8 * (naive.hi - naive.lo)
    assert (cluster.hi - cluster.lo) == pytest.approx(per_patient.hi - per_patient.lo, rel=0.25)
    # string patient ids work as well
    labelled = bootstrap_ci(auroc, yy, ss, groups=[f"p{i}" for i in patients], n_resamples=50, seed=0)
    assert labelled.n_valid == 50


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_undefined_resamples_are_skipped_and_counted():
    y = np.array([1] + [0] * 9)
    s = np.linspace(1, 0, 10)
    ci = bootstrap_ci(auroc, y, s, n_resamples=100, seed=0)
    assert 0 < ci.n_skipped < 100 and ci.n_valid + ci.n_skipped == 100
    # a metric without a batched form (scikit-learn's, NaN on one class) is skipped the same way
    ci_sk = bootstrap_ci(roc_auc_score, y, s, n_resamples=100, seed=0)
    assert ci_sk.n_skipped == ci.n_skipped

    def raising(t: np.ndarray, p: np.ndarray) -> float:
        if len(set(t.tolist())) < 2:
            raise ValueError("one class")
        return roc_auc_score(t, p)

    assert bootstrap_ci(raising, y, s, n_resamples=100, seed=0).n_skipped == ci.n_skipped


def test_bootstrap_of_a_text_metric_on_lists():
    preds = ["a", "b", "a", "c"] * 10
    truth = ["a", "b", "b", "c"] * 10

    def exact(t: list[str], p: list[str]) -> float:
        return float(np.mean([x == y for x, y in zip(t, p)]))

    ci = bootstrap_ci(exact, truth, preds, n_resamples=100, seed=0)
    assert ci.value == 0.75 and ci.lo < 0.75 < ci.hi


@pytest.mark.parametrize("metric", ["auroc", "accuracy"])
def test_interval_coverage_is_near_nominal(metric):
    rng = np.random.default_rng(3)
    covered = 0
    draws = 200
    true_auc = stats.norm.cdf(1 / np.sqrt(2))  # binormal, unit variances, shift 1
    for _ in range(draws):
        if metric == "auroc":
            y, s = _binormal(rng, 200)
            ci = bootstrap_ci(auroc, y, s, n_resamples=300, seed=int(rng.integers(1 << 31)))
            covered += ci.lo <= true_auc <= ci.hi
        else:
            y = rng.integers(0, 3, 150)
            pred = np.where(rng.random(150) < 0.8, y, (y + 1) % 3)
            ci = bootstrap_ci(accuracy, y, pred, n_resamples=300, seed=int(rng.integers(1 << 31)))
            covered += ci.lo <= 0.8 <= ci.hi
    assert 0.88 <= covered / draws <= 0.99


def test_bootstrap_metrics_gives_an_interval_per_entry():
    rng = np.random.default_rng(6)
    y, s = _binormal(rng, 300)
    prob = 1 / (1 + np.exp(-s))
    out = bootstrap_metrics(classification_metrics, y, prob, n_resamples=40, seed=3)
    single = bootstrap_ci(auroc, y, prob, n_resamples=40, seed=3)
    assert out["auroc"].value == pytest.approx(single.value)
    assert (out["auroc"].lo, out["auroc"].hi) == pytest.approx((single.lo, single.hi))  # same draws
    for name in ("accuracy", "f1_macro", "sensitivity@spec0.9"):
        ci = out[name]
        assert ci.lo <= ci.value <= ci.hi and ci.n_valid == 40


def test_paired_bootstrap_test():
    rng = np.random.default_rng(4)
    y, s = _binormal(rng, 400)
    assert paired_bootstrap_test(auroc, y, s, s, n_resamples=200) == 1.0
    weak = s * 0.2 + rng.normal(size=400)
    assert paired_bootstrap_test(auroc, y, s, weak, n_resamples=500) < 0.01
    pred_a = np.where(rng.random(400) < 0.9, y, 1 - y)
    p_loop = paired_bootstrap_test(f1_score, y, pred_a, 1 - pred_a, n_resamples=100)
    assert p_loop < 0.05
    # under the null (two equally good, independent models) the test rejects at about its level
    rejections = 0
    for _ in range(60):
        y, _ = _binormal(rng, 200)
        a, b = rng.normal(size=200) + y, rng.normal(size=200) + y
        rejections += (
            paired_bootstrap_test(auroc, y, a, b, n_resamples=200, seed=int(rng.integers(1000))) < 0.05
        )
    assert rejections / 60 <= 0.15


def _delong_reference(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) from the O(m n) kernel psi(x, y) = [x > y] + [x = y] / 2."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10 = psi.mean(axis=2)  # (M, m)
    v01 = psi.mean(axis=1)  # (M, n)
    return psi.mean(axis=(1, 2)), np.cov(v10) / pos.shape[1] + np.cov(v01) / neg.shape[1]


def test_fast_delong_matches_the_quadratic_definition():
    rng = np.random.default_rng(5)
    y, s = _binormal(rng, 300)
    other = np.round(s + rng.normal(size=300), 1)  # ties
    third = np.round(rng.normal(size=300), 1)
    scores = np.stack([np.round(s, 1), other, third])
    aucs, cov = delong_covariance(y, scores)
    ref_aucs, ref_cov = _delong_reference(y, scores)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, row) for row in scores], atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    result = delong_test(y, scores[0], scores[1])
    z = (ref_aucs[0] - ref_aucs[1]) / np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    assert result.z == pytest.approx(z)
    assert result.p == pytest.approx(2 * stats.norm.sf(abs(z)))
    auc_a, auc_b, _, p = result
    assert (auc_a, auc_b) == pytest.approx(tuple(ref_aucs[:2]))
    assert delong_test(y, s, s).p == 1.0
    assert delong_test(y, s, 0.1 * s + rng.normal(size=300)).p < 1e-3


def test_errors():
    with pytest.raises(DataError, match="two positives"):
        delong_test([1, 0, 0], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3])
    with pytest.raises(ConfigError):
        bootstrap_ci(auroc, [0, 1], [0.1, 0.2], alpha=1.5)
    with pytest.raises(DataError, match="groups"):
        bootstrap_ci(auroc, [0, 1, 1], [0.1, 0.2, 0.3], groups=[1, 2])
    with pytest.raises(DataError, match="length"):
        bootstrap_ci(auroc, [0, 1, 1], [0.1, 0.2])
