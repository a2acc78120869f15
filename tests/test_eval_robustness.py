"""Fairness, robustness (missing modalities, corruptions) and the modality comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.evaluate.tasks import EvalConfig, EvalContext, TaskSkipped, run_task
from medfuse.evaluate.tasks.batches import blank_modality, take_rows
from medfuse.evaluate.tasks.corruptions import (
    IMAGE_CORRUPTIONS,
    SEVERITIES,
    TEXT_CORRUPTIONS,
    dropped_sentences,
    typos,
)
from medfuse.evaluate.tasks.fairness import rates
from medfuse.models import save_checkpoint
from tests.test_eval_support import dataset, oracle_model

FAST = EvalConfig(n_resamples=40)


@pytest.fixture(scope="module")
def binary_rows(tmp_path_factory: pytest.TempPathFactory):
    return dataset(tmp_path_factory.mktemp("eval_rob"), "binary")


def test_fairness_reports_every_group_and_flags_small_ones(binary_rows) -> None:
    model, _ = oracle_model("binary")
    result = run_task("fairness", EvalContext(model, binary_rows, EvalConfig(n_resamples=40, min_group_size=8)))
    site = result.subgroups["site"]
    assert set(site["groups"]) == {"A", "B"}
    assert site["groups"]["B"]["n"] == 5 and site["groups"]["B"]["small"] is True  # flagged, still reported
    assert site["groups"]["A"]["n"] == 15 and site["groups"]["A"]["small"] is False
    assert site["groups"]["A"]["metrics"]["auroc"]["value"] == 1.0 and site["groups"]["A"]["gap"]["auroc"] == 0.0
    assert site["equalized_odds_difference"] == 0.0
    assert set(result.subgroups) == {"sex", "site"} and "equalized_odds_difference/site" in result.metrics


def test_equalized_odds_difference_is_the_largest_rate_gap() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    preds = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    tpr_a, fpr_a = rates(y[:4], preds[:4], "binary", 1)
    tpr_b, fpr_b = rates(y[4:], preds[4:], "binary", 1)
    assert (tpr_a[0], fpr_a[0], tpr_b[0], fpr_b[0]) == (1.0, 0.0, 0.5, 0.5)
    tpr, fpr = rates(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), "multiclass", 3)
    assert tpr.tolist() == [1.0, 0.0, 0.5] and fpr.tolist() == pytest.approx([0.0, 1 / 3, 0.5])


def test_robustness_curves_have_five_points_and_losing_the_image_is_chance(binary_rows) -> None:
    model, _ = oracle_model("binary", vitals=True)
    result = run_task("robustness", EvalContext(model, binary_rows, FAST), max_rows=10)
    curves = result.artifacts["curves"]
    assert curves["rows"] == 10 and result.n == 10
    assert curves["metric"] == "auroc" and curves["clean"] == 1.0
    image = curves["missing_modality"]["image"]
    assert image["rates"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(image["values"]) == 5
    assert image["values"][0] == 1.0 and image["values"][-1] == pytest.approx(0.5)
    assert all(a >= b - 1e-9 for a, b in zip(image["values"], image["values"][1:]))  # never better with less
    assert curves["missing_modality"]["vitals"]["values"] == [1.0] * 5  # the oracle ignores vitals
    assert set(curves["image_corruptions"]) == set(IMAGE_CORRUPTIONS)
    for curve in curves["image_corruptions"].values():
        assert curve["severities"] == [1, 2, 3, 4, 5] and len(curve["values"]) == 5
    assert curves["text_corruptions"] == {}  # the model reads no text
    assert result.metrics["auroc_missing_image@1"]["value"] == pytest.approx(0.5)
    again = run_task("robustness", EvalContext(model, binary_rows, FAST), max_rows=10)
    assert again.artifacts == result.artifacts  # seeded: the same curves every run


def test_corruptions_are_seeded_and_grow_with_severity() -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for name, corrupt in IMAGE_CORRUPTIONS.items():
        outs = [corrupt(images, s, torch.Generator().manual_seed(1)) for s in SEVERITIES]
        assert all(o.shape == images.shape and float(o.min()) >= 0 and float(o.max()) <= 1 for o in outs), name
        assert torch.equal(outs[2], corrupt(images, 3, torch.Generator().manual_seed(1))), name
        change = [float((o - images).abs().mean()) for o in outs]
        assert change[-1] > change[0] >= 0 and change[-1] > 0.01, (name, change)
        assert all(b >= a - 1e-6 for a, b in zip(change, change[1:])), (name, change)
    text = "Mild cardiomegaly. Small left effusion. No pneumothorax. Lines unchanged."
    assert typos(text, 3, np.random.default_rng(0)) == typos(text, 3, np.random.default_rng(0)) != text
    shorter = [len(dropped_sentences(text, s, np.random.default_rng(2))) for s in SEVERITIES]
    assert shorter[-1] <= shorter[0] <= len(text)
    assert set(TEXT_CORRUPTIONS) == {"typos", "dropped_sentences"}


def test_blank_modality_marks_absent_rows_and_take_rows_repeats() -> None:
    batch = {"index": torch.arange(3), "image": torch.ones(3, 1, 2, 2), "text": ["a", "b", "c"],
             "vitals": torch.ones(3, 2), "present": {"image": torch.ones(3, dtype=torch.bool)}}
    out = blank_modality(blank_modality(batch, "image", torch.tensor([True, False, True])), "text",
                         torch.tensor([False, True, False]))
    assert out["present"]["image"].tolist() == [False, True, False] and float(out["image"][0].abs().sum()) == 0
    assert out["text"] == ["a", "", "c"] and out["present"]["text"].tolist() == [True, False, True]
    assert float(batch["image"].sum()) == 12  # the input is left alone
    vitals = blank_modality(batch, "vitals", torch.tensor([True, False, False]))["vitals"]
    assert torch.isnan(vitals[0]).all() and not torch.isnan(vitals[1:]).any()
    rep = take_rows(batch, [2, 2, 0])
    assert rep["text"] == ["c", "c", "a"] and rep["present"]["image"].shape == (3,)


def test_modality_comparison_puts_each_modality_and_checkpoint_beside_the_fused_model(binary_rows, tmp_path: Path) -> None:
    fused, _ = oracle_model("binary", vitals=True)
    image_only, image_cfg = oracle_model("binary")
    ckpt = save_checkpoint(tmp_path / "image_only", image_only, image_cfg, label_names=["normal", "pneumonia"])
    ctx = EvalContext(fused, binary_rows, FAST)
    result = run_task("modality_comparison", ctx, checkpoints={"image model": str(ckpt)})
    by_name = {c["name"]: c for c in result.artifacts["configurations"]}
    assert set(by_name) == {"fused", "image_only", "vitals_only", "image model"}
    assert by_name["fused"]["metrics"]["auroc"]["value"] == 1.0
    assert by_name["image_only"]["metrics"]["auroc"]["value"] == 1.0
    assert by_name["vitals_only"]["metrics"]["auroc"]["value"] == pytest.approx(0.5)
    assert by_name["image model"]["metrics"]["auroc"]["value"] == 1.0 and by_name["image model"]["n"] == 20
    assert by_name["vitals_only"]["test"] == "delong" and by_name["vitals_only"]["p_value"] < 0.05
    assert by_name["image_only"]["p_value"] == pytest.approx(1.0)
    assert result.artifacts["fusion_beats_all"] is False  # the image alone is as good as the fusion


def test_single_modality_models_skip_the_comparison(binary_rows) -> None:
    model, _ = oracle_model("binary")
    with pytest.raises(TaskSkipped, match="one modality"):
        run_task("modality_comparison", EvalContext(model, binary_rows, FAST))
