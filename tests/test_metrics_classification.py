"""Classification metrics: parity with scikit-learn and torchmetrics, undefined labels, curves."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torchmetrics.functional import classification as tmf

from medfuse.core.errors import ConfigError, DataError
from medfuse.evaluate.metrics import (
    METRICS,
    accuracy,
    auprc,
    auprc_per_label,
    auroc,
    auroc_per_label,
    balanced_accuracy,
    classification_metrics,
    confusion_matrix,
    multilabel_confusion_matrix,
    pr_curve,
    precision_recall_f1,
    predictions,
    roc_curve,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
    subset_accuracy,
)
from medfuse.evaluate.metrics.ranking import binary_auroc_weighted, binary_average_precision_weighted


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    # scores rounded to one decimal: many ties between and within classes
    return y, np.clip(np.round(rng.random(400) * 0.8 + 0.25 * y, 1), 0, 1)


@pytest.fixture
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4)) + 1.5 * np.eye(4)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, prob


@pytest.fixture
def multilabel() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    y = (rng.random((300, 5)) < [0.1, 0.3, 0.5, 0.2, 0.4]).astype(int)
    return y, 1 / (1 + np.exp(-(rng.normal(size=(300, 5)) + 1.2 * y)))


def test_binary_auroc_auprc_match_sklearn_and_torchmetrics(binary):
    y, s = binary
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    ty, ts = torch.tensor(y), torch.tensor(s)
    assert auroc(y, s) == pytest.approx(tmf.binary_auroc(ts, ty).item(), abs=1e-6)
    assert auprc(y, s) == pytest.approx(tmf.binary_average_precision(ts, ty).item(), abs=1e-6)
    # tensors are accepted as inputs
    assert auroc(ty, ts) == pytest.approx(auroc(y, s))


def test_multiclass_one_vs_rest_matches_references(multiclass):
    y, p = multiclass
    assert auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
    onehot = np.eye(4)[y]
    assert auprc(y, p) == pytest.approx(skm.average_precision_score(onehot, p, average="macro"), abs=1e-12)
    ty, tp = torch.tensor(y), torch.tensor(p)
    assert auroc(y, p) == pytest.approx(tmf.multiclass_auroc(tp, ty, num_classes=4).item(), abs=1e-6)
    assert auprc(y, p) == pytest.approx(
        tmf.multiclass_average_precision(tp, ty, num_classes=4).item(), abs=1e-6
    )
    per = auroc_per_label(y, p)
    np.testing.assert_allclose(per, [skm.roc_auc_score(y == c, p[:, c]) for c in range(4)], atol=1e-12)


def test_multilabel_matches_references(multilabel):
    y, p = multilabel
    assert auroc(y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"), abs=1e-12)
    assert auprc(y, p) == pytest.approx(skm.average_precision_score(y, p, average="macro"), abs=1e-12)
    ty, tp = torch.tensor(y), torch.tensor(p)
    assert auroc(y, p) == pytest.approx(tmf.multilabel_auroc(tp, ty, num_labels=5).item(), abs=1e-6)


def test_single_class_label_is_nan_with_warning_and_left_out_of_macro(multilabel, caplog):
    y, p = multilabel
    y = y.copy()
    y[:, 1] = 0  # label 1 has no positives
    with caplog.at_level(logging.WARNING):
        per = auroc_per_label(y, p, labels=["a", "b", "c", "d", "e"])
    assert np.isnan(per[1]) and np.isfinite(per[[0, 2, 3, 4]]).all()
    assert "'b'" in caplog.text and "undefined" in caplog.text
    keep = [0, 2, 3, 4]
    assert auroc(y, p) == pytest.approx(skm.roc_auc_score(y[:, keep], p[:, keep]), abs=1e-12)
    assert np.isnan(auprc_per_label(y, p)[1])
    # all positives: AUROC undefined, average precision is 1
    y[:, 3] = 1
    assert np.isnan(auroc_per_label(y, p)[3]) and auprc_per_label(y, p)[3] == 1.0
    # a binary problem with one class is NaN, never an exception
    assert np.isnan(auroc(np.ones(10), np.linspace(0, 1, 10)))


def test_curves_match_sklearn(binary):
    y, s = binary
    roc = roc_curve(y, s)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.thresholds, thr)
    pr = pr_curve(y, s)
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(pr.precision, precision)
    np.testing.assert_allclose(pr.recall, recall)
    np.testing.assert_allclose(pr.thresholds, thresholds)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(auroc(y, s))


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_sensitivity_at_specificity_matches_torchmetrics(binary, level):
    y, s = binary
    ts, ty = torch.tensor(s), torch.tensor(y)
    expected, _ = tmf.binary_sensitivity_at_specificity(ts, ty, min_specificity=level)
    assert sensitivity_at_specificity(y, s, level) == pytest.approx(expected.item(), abs=1e-6)
    expected, _ = tmf.binary_specificity_at_sensitivity(ts, ty, min_sensitivity=level)
    assert specificity_at_sensitivity(y, s, level) == pytest.approx(expected.item(), abs=1e-6)


def test_weighted_forms_equal_repeated_samples(binary, multiclass):
    y, s = binary
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 3, size=(4, len(y))).astype(float)
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(y)), row.astype(int))
        assert binary_auroc_weighted(counts, y.astype(bool), s)[b] == pytest.approx(
            skm.roc_auc_score(y[idx], s[idx])
        )
        assert binary_average_precision_weighted(counts, y.astype(bool), s)[b] == pytest.approx(
            skm.average_precision_score(y[idx], s[idx])
        )
    yc, pc = multiclass
    counts = rng.integers(0, 3, size=(3, len(yc))).astype(float)
    pred = pc.argmax(1)
    for fn in (auroc, auprc):
        got = fn.weighted(counts, yc, pc)
        for b, row in enumerate(counts):
            idx = np.repeat(np.arange(len(yc)), row.astype(int))
            assert got[b] == pytest.approx(fn(yc[idx], pc[idx]))
    for fn in (accuracy, balanced_accuracy):
        got = fn.weighted(counts, yc, pred)
        for b, row in enumerate(counts):
            idx = np.repeat(np.arange(len(yc)), row.astype(int))
            assert got[b] == pytest.approx(fn(yc[idx], pred[idx]))


def test_thresholded_metrics_match_sklearn_and_torchmetrics(multiclass):
    y, p = multiclass
    pred = predictions(p, "multiclass")
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert balanced_accuracy(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    np.testing.assert_array_equal(confusion_matrix(y, pred), skm.confusion_matrix(y, pred))
    ty, tpred = torch.tensor(y), torch.tensor(pred)
    for average in ("macro", "micro", "weighted"):
        prf = precision_recall_f1(y, pred, average=average)
        p_ref, r_ref, f_ref, _ = skm.precision_recall_fscore_support(
            y, pred, average=average, zero_division=0
        )
        assert (prf.precision, prf.recall, prf.f1) == pytest.approx((p_ref, r_ref, f_ref), abs=1e-12)
        f_tm = tmf.multiclass_f1_score(tpred, ty, num_classes=4, average=average).item()
        assert prf.f1 == pytest.approx(f_tm, abs=1e-6)


def test_macro_leaves_out_a_class_absent_from_targets_and_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    # four declared classes; class 3 never occurs: an exact model is not penalised for it
    prf = precision_recall_f1(y, pred, average="macro", num_classes=4)
    expected = tmf.multiclass_f1_score(torch.tensor(pred), torch.tensor(y), num_classes=4, average="macro")
    assert prf.f1 == pytest.approx(expected.item(), abs=1e-6)
    assert precision_recall_f1(y, y, average="macro", num_classes=4).f1 == 1.0


def test_multilabel_thresholded(multilabel):
    y, p = multilabel
    thresholds = [0.3, 0.4, 0.5, 0.6, 0.7]
    pred = predictions(p, "multilabel", thresholds)
    np.testing.assert_array_equal(pred, (p >= np.array(thresholds)).astype(int))
    np.testing.assert_array_equal(
        multilabel_confusion_matrix(y, pred), skm.multilabel_confusion_matrix(y, pred)
    )
    assert subset_accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    tm = tmf.multilabel_accuracy(torch.tensor(pred), torch.tensor(y), num_labels=5, average="micro").item()
    assert accuracy(y, pred) == pytest.approx(tm, abs=1e-6)
    for average in ("macro", "micro", "weighted"):
        prf = precision_recall_f1(y, pred, average=average)
        ref = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)[:3]
        assert (prf.precision, prf.recall, prf.f1) == pytest.approx(ref, abs=1e-12)
    ba = np.mean([skm.balanced_accuracy_score(y[:, k], pred[:, k]) for k in range(5)])
    assert balanced_accuracy(y, pred) == pytest.approx(ba)


def test_classification_metrics_binary_keys_and_values(binary):
    y, s = binary
    out = classification_metrics(y, s, task="binary", threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert out["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert out["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert out["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert out["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert out["sensitivity@spec0.9"] == pytest.approx(sensitivity_at_specificity(y, s, 0.9))
    for key in ("auprc", "f1_micro", "f1_weighted", "precision_macro", "recall_macro", "specificity@sens0.9"):
        assert np.isfinite(out[key])


def test_classification_metrics_multilabel_per_label_names(multilabel):
    y, p = multilabel
    names = ["effusion", "edema", "nodule", "mass", "pneumonia"]
    out = classification_metrics(y, p, task="multilabel", labels=names)
    for k, name in enumerate(names):
        assert out[f"auroc/{name}"] == pytest.approx(skm.roc_auc_score(y[:, k], p[:, k]))
        assert f"sensitivity@spec0.9/{name}" in out and f"f1/{name}" in out
    assert out["auroc"] == pytest.approx(np.mean([out[f"auroc/{n}"] for n in names]))


def test_oracle_and_chance(multiclass):
    y, _ = multiclass
    oracle = np.eye(4)[y]
    out = classification_metrics(y, oracle, task="multiclass")
    for key in ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "sensitivity@spec0.9"):
        assert out[key] == pytest.approx(1.0)
    rng = np.random.default_rng(5)
    chance = classification_metrics(
        rng.integers(0, 4, 4000), rng.dirichlet(np.ones(4), 4000), task="multiclass"
    )
    assert abs(chance["auroc"] - 0.5) < 0.03 and abs(chance["accuracy"] - 0.25) < 0.03


def test_bad_inputs_raise_clear_errors(multiclass):
    y, p = multiclass
    with pytest.raises(DataError, match="length"):
        auroc(y[:-1], p)
    with pytest.raises(DataError, match="class ids outside"):
        auroc(y + 1, p)
    bad = p.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        auroc(y, bad)
    with pytest.raises(ConfigError, match="task"):
        classification_metrics(y, p, task="regression")
    with pytest.raises(DataError, match="0/1"):
        auroc(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]), task="binary")


def test_registered_names():
    for name in ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1", "classification"):
        assert name in METRICS
    assert METRICS.get("auroc") is auroc
