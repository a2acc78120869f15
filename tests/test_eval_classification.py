"""Classification and calibration tasks: an oracle scores perfectly, a random model at chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.data import ManifestDataset, validate_manifest
from medfuse.evaluate.metrics import auroc, bootstrap_ci, classification_metrics
from medfuse.evaluate.tasks import EvalConfig, EvalContext, run_task
from medfuse.evaluate.tasks.base import threshold_values
from tests.test_eval_support import data_config, dataset, oracle_model, random_model, write_manifest

FAST = EvalConfig(n_resamples=60)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_oracle_scores_perfectly_with_curves_and_matrices(tmp_path: Path, task: str) -> None:
    ds = dataset(tmp_path, task)
    model, _ = oracle_model(task)
    result = run_task("classification", EvalContext(model, ds, FAST))
    m = result.metrics
    assert result.n == 20
    for name in ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro"):
        assert m[name]["value"] == pytest.approx(1.0) and m[name]["ci95"] == [1.0, 1.0], name
    assert m["ece"]["value"] < 0.01 and m["brier"]["value"] < 0.01 and "mce" in m
    art = result.artifacts
    labels = ["pneumonia"] if task == "binary" else ["alpha", "beta", "gamma"]
    assert art["labels"] == labels and set(art["roc_curves"]) == set(labels)
    roc = art["roc_curves"][labels[0]]
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and max(roc["tpr"][i] for i, f in enumerate(roc["fpr"]) if f == 0) == 1
    if task == "multilabel":
        assert set(art["confusion_matrix"]["per_label"]) == set(labels)
    else:
        matrix = np.asarray(art["confusion_matrix"]["matrix"])
        assert matrix.trace() == 20 and (matrix - np.diag(np.diag(matrix))).sum() == 0
    assert sum(art["reliability_diagram"]["count"]) == (60 if task == "multilabel" else 20)
    assert art["per_label"][labels[0]]["auroc"] == 1.0


def test_random_model_is_at_chance_and_intervals_hold_the_point(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, "binary", n=64, n_train=8, informative=False)
    ds = ManifestDataset(validate_manifest(path, data_config("binary")), data_config("binary"), split="test")
    model, _ = random_model("binary")
    result = run_task("classification", EvalContext(model, ds, EvalConfig(n_resamples=100)))
    lo, hi = result.metrics["auroc"]["ci95"]
    assert lo < 0.5 < hi, (lo, hi)
    for name, entry in result.metrics.items():
        if entry["ci95"] is not None:
            assert entry["ci95"][0] - 1e-9 <= entry["value"] <= entry["ci95"][1] + 1e-9, name
    assert result.artifacts["resampling"] == "patient"


def test_metrics_match_the_metrics_package_and_resample_by_patient(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "multiclass")
    model, _ = random_model("multiclass", seed=3)
    ctx = EvalContext(model, ds, FAST, seed=5)
    result = run_task("classification", ctx)
    pred = ctx.predictions()
    reference = classification_metrics(pred.labels, pred.probs, task="multiclass", labels=["alpha", "beta", "gamma"])
    for name in ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "f1_micro"):
        assert result.metrics[name]["value"] == pytest.approx(reference[name]), name
    patients = np.asarray([ds.patient_ids[i] for i in pred.index], dtype=object)
    ci = bootstrap_ci(auroc, pred.labels, pred.probs, groups=patients, n_resamples=60, seed=5,
                      metric_kwargs={"task": "multiclass"})
    assert result.metrics["auroc"]["ci95"] == pytest.approx([ci.lo, ci.hi])
    again = run_task("classification", EvalContext(model, ds, FAST, seed=5))
    assert again.metrics == result.metrics  # the seed fixes every number


def test_temperature_is_fitted_on_the_calibration_split_and_applied_from_the_checkpoint(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "binary")
    model, _ = oracle_model("binary")
    with torch.no_grad():
        model.head.net[-1].weight.mul_(0.05)  # under-confident: a temperature below 1 fixes it
    plain = run_task("classification", EvalContext(model, ds, EvalConfig(n_resamples=0, calibration_split="train")))
    t = plain.metrics["temperature"]["value"]
    assert 0 < t < 1 and plain.metrics["ece_scaled"]["value"] < plain.metrics["ece"]["value"]
    assert plain.artifacts["temperature_scaling"]["split"] == "train"
    scaled = run_task("calibration", EvalContext(model, ds, EvalConfig(n_resamples=0), temperature=t))
    assert scaled.metrics["ece"]["value"] == pytest.approx(plain.metrics["ece_scaled"]["value"], rel=1e-4)
    assert "accuracy" not in scaled.metrics and "reliability_diagram" in scaled.artifacts


def test_thresholds_come_as_floats_lists_or_label_mappings() -> None:
    assert threshold_values(None, ["a"], 1) == 0.5
    assert threshold_values(0.3, ["a", "b"], 2) == 0.3
    assert threshold_values([0.2, 0.7], ["a", "b"], 2) == [0.2, 0.7]
    assert threshold_values({"b": 0.9}, ["a", "b"], 2) == [0.5, 0.9]
    assert threshold_values({"pos": 0.8}, ["pos"], 1) == 0.8


def test_a_checkpoint_threshold_changes_the_thresholded_metrics_only(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "binary")
    model, _ = oracle_model("binary")
    base = run_task("classification", EvalContext(model, ds, EvalConfig(n_resamples=0)))
    strict = run_task("classification", EvalContext(model, ds, EvalConfig(n_resamples=0), thresholds=[1.0]))
    assert strict.metrics["auroc"]["value"] == base.metrics["auroc"]["value"] == 1.0
    assert strict.metrics["sensitivity"]["value"] < base.metrics["sensitivity"]["value"]
