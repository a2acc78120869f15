"""Retrieval drafting: nearest and consensus drafts, baselines, leak blocking, report scores, CLI, MedPix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfuse.cli import main
from medfuse.core.config import to_dict
from medfuse.core.errors import ConfigError
from medfuse.data import DataConfig, ManifestDataset, validate_manifest
from medfuse.evaluate.drafting import (
    DraftGallery,
    blocked_rows,
    central_order,
    consensus_pick,
    report_scores,
    report_stats,
    score_drafts,
    text_scores,
)
from medfuse.evaluate.metrics import clinical_efficacy, generation_metrics
from medfuse.evaluate.tasks import EvalConfig, EvalContext, TaskSkipped, run_task
from medfuse.models import save_checkpoint
from tests.conftest import shared_path
from tests.test_eval_support import dual_model, oracle_model

FAST = EvalConfig(n_resamples=50)
SIZE = 16

# (image id, bright channel, case, split, text). The oracle text encoder maps "alpha" to +1 on axis 0 and
# "no beta" to -1 on axis 1, so "alpha mass, no beta" is the best match of an alpha image, then "alpha ...".
ROWS = [
    ("a0", 0, "Q1", "test", "Alpha mass, no beta."),
    ("b0", 1, "Q2", "test", "Beta cyst in the right lobe."),
    ("g0", 2, "Q3", "test", "Gamma focus is noted."),
    ("a1", 0, "Q1", "train", "Alpha mass, no beta."),           # the same case as a0: a leak by case
    ("a0", 0, "Z9", "train", "Alpha nodule seen, no beta."),     # a0's own image file under another case
    ("a2", 0, "C1", "train", "Alpha lesion in the left lobe."),
    ("a3", 0, "C2", "train", "Alpha lesion in the left lobe."),
    ("a4", 0, "C3", "train", "Alpha spot at the base."),
    ("b1", 1, "C4", "train", "Beta cyst in the right lobe."),
    ("g1", 2, "C5", "train", "Gamma focus is noted."),
]


def _config() -> DataConfig:
    return DataConfig(image="image_path", text="report", patient="case_id", split="split", image_size=SIZE, channels=3)


def _manifest(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for image, channel, *_ in ROWS:
        bright = np.full((SIZE, SIZE, 3), 50) + rng.integers(-5, 6, size=(SIZE, SIZE, 3))
        bright[:, :, channel] = 200
        Image.fromarray(bright.clip(0, 255).astype(np.uint8), "RGB").save(root / f"img/{image}.png")
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_path", "case_id", "split", "report"])
        writer.writerows([[f"img/{image}.png", case, split, text] for image, _, case, split, text in ROWS])
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> ManifestDataset:
    path = _manifest(tmp_path_factory.mktemp("drafting"))
    report = validate_manifest(path, _config())
    assert report.kept == len(ROWS) - 1  # validation sets aside the case in two splits; drafting must cope without it
    return ManifestDataset(path, _config(), split="test")  # the rows as written, the leak included


def _drafts(result, name: str) -> dict[str, str]:
    return {ex["reference"]: ex[name] for ex in result.artifacts["examples"]}


@pytest.mark.parametrize("mode", ["text", "image"])
def test_nearest_draft_skips_texts_of_the_same_case_or_image(evaluated: ManifestDataset, mode: str) -> None:
    model, _ = dual_model(oracle=True)
    result = run_task("drafting", EvalContext(model, evaluated, FAST), mode=mode)
    nearest = _drafts(result, "nearest")
    # a0's best texts are its own case's caption and the caption of its own image file: both blocked
    assert nearest["Alpha mass, no beta."] not in ("Alpha mass, no beta.", "Alpha nodule seen, no beta.")
    assert nearest["Alpha mass, no beta."].startswith("Alpha")
    assert nearest["Beta cyst in the right lobe."] == "Beta cyst in the right lobe."
    assert nearest["Gamma focus is noted."] == "Gamma focus is noted."
    assert result.artifacts["gallery_rows_sharing_case_or_image"] == 2
    assert result.artifacts["gallery"] == "train" and result.artifacts["gallery_texts"] == 6 and result.n == 3
    random = _drafts(result, "random")
    assert random["Alpha mass, no beta."] not in ("Alpha mass, no beta.", "Alpha nodule seen, no beta.")
    assert len(set(_drafts(result, "central").values())) == 1  # one text for every image
    metrics = result.metrics
    assert metrics["bleu4"]["value"] < 1.0 and metrics["clinical_f1"]["value"] is not None
    assert metrics["cider_minus_random"]["value"] == pytest.approx(metrics["cider"]["value"] - metrics["cider_random"]["value"])


def test_without_a_leak_the_oracle_drafts_every_reference(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    rows = [r for r in csv.DictReader(path.open()) if r["case_id"] not in ("Q1", "Z9")]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ds = ManifestDataset(validate_manifest(path, _config()), _config(), split="test")
    model, _ = dual_model(oracle=True)
    result = run_task("drafting", EvalContext(model, ds, FAST), k=2)  # two candidates tie: the better-ranked stays
    for name in ("bleu4", "rouge_l", "bleu4_consensus"):
        assert result.metrics[name]["value"] == pytest.approx(1.0)
    assert result.metrics["bleu4_central"]["value"] < 0.5
    assert result.artifacts["gallery_rows_sharing_case_or_image"] == 0


def test_bad_gallery_splits_and_models_are_reported(evaluated: ManifestDataset) -> None:
    model, _ = dual_model(oracle=True)
    with pytest.raises(ConfigError, match="gallery split 'nope'.*test, train.*--gallery-split"):
        run_task("drafting", EvalContext(model, evaluated, FAST), gallery_split="nope")
    assert run_task("drafting", EvalContext(model, evaluated, FAST), gallery_split="training").n == 3  # alias of train
    with pytest.raises(ConfigError, match="is the evaluated split"):
        run_task("drafting", EvalContext(model, evaluated, FAST), gallery_split="test")
    with pytest.raises(ConfigError, match="drafting.k"):
        run_task("drafting", EvalContext(model, evaluated, FAST), k=1)
    with pytest.raises(TaskSkipped, match="dual encoder"):
        run_task("drafting", EvalContext(oracle_model("multiclass")[0], evaluated, FAST))


def test_consensus_picks_the_candidate_closest_to_the_others() -> None:
    candidates = torch.tensor([[7, 8, 9], [7, 8, 9], [4, 5, 6]])
    valid = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    sim = torch.tensor([[1.0, 0.1, 0.2], [0.1, 1.0, 0.9], [0.2, 0.9, 1.0]]).expand(3, 3, 3)
    # row 0: 8 and 9 agree most (mean 0.5 and 0.55); row 1: 9 is invalid, 7 and 8 tie, the better-ranked wins;
    # row 2: one valid candidate stays
    assert consensus_pick(candidates, valid, sim).tolist() == [9, 7, 4]


def test_text_scores_take_the_best_unblocked_row_and_central_is_typical() -> None:
    gallery = DraftGallery(["x y z", "x y", "q r s t"], torch.eye(3), torch.tensor([0, 1, 1, 2]),
                           ["A", "B", "C", "D"], ["f0", "f1", "f2", "f3"])
    blocked = blocked_rows(gallery, ["B", "E"], ["f9", "f3"])
    assert blocked.tolist() == [[False, True, False, False], [False, False, False, True]]
    rows = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.1, 0.2, 0.4, 0.8]])
    scores = text_scores(rows, blocked, gallery.row_text, 3)
    assert scores[0].tolist() == pytest.approx([0.1, 0.5, 0.3])
    assert scores[1, :2].tolist() == pytest.approx([0.1, 0.4]) and scores[1, 2] == float("-inf")
    assert central_order(gallery)[:2] == [1, 0]  # "x y" shares most words with the rows (two of them its own)


def test_report_scores_equal_the_metrics_package() -> None:
    rng = np.random.default_rng(3)
    words = ["the", "small", "left", "pleural", "effusion", "no", "pneumothorax", "mass", "is", "seen", "heart", "normal", "lung", "base"]
    refs = [" ".join(rng.choice(words, size=rng.integers(4, 12))) for _ in range(25)]
    hyps = [" ".join(rng.choice(words, size=rng.integers(3, 14))) for _ in range(25)]
    mine = report_scores(report_stats(hyps, refs))
    expected = {**generation_metrics(hyps, refs), **clinical_efficacy(hyps, refs)}
    for name, value in mine.items():
        assert value == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
    rows = np.array([0, 0, 3, 5, 5, 5, 9])
    sub = report_scores(report_stats(hyps, refs), rows)
    assert sub["bleu2"] == pytest.approx(generation_metrics([hyps[i] for i in rows], [refs[i] for i in rows])["bleu2"])


def test_score_drafts_share_one_bootstrap_with_paired_differences() -> None:
    refs = [f"finding {w} in segment {i}" for i, w in enumerate("abcdefghijklmnopqrst")]
    wrong = ["normal study"] * len(refs)
    groups = np.repeat(np.arange(10), 2).astype(object)
    out = score_drafts({"model": refs, "blind": wrong}, refs, main="model", groups=groups, n_resamples=60, seed=1,
                       baselines=("blind",))
    assert out["bleu4"]["value"] == pytest.approx(1.0) and out["rouge_l"]["ci95"] == pytest.approx([1.0, 1.0])
    assert out["rouge_l_blind"]["value"] == 0.0
    lo, hi = out["rouge_l_minus_blind"]["ci95"]
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="main"):
        score_drafts({"a": refs}, refs, main="b")


def test_cli_evaluate_task_drafting_with_a_gallery_split(tmp_path: Path, evaluated: ManifestDataset) -> None:
    model, cfg = dual_model(oracle=True)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, cfg, extra={"data": to_dict(_config())})
    manifest = evaluated.manifest.path
    code = main(["-q", "evaluate", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--split", "test",
                 "--task", "drafting", "--gallery-split", "train", "--set", "n_resamples=20", "--out", str(tmp_path / "e")])
    assert code == 0
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["task"] == "drafting" and results["n"] == 3
    assert {"bleu4", "rouge_l", "cider", "clinical_f1", "cider_random", "cider_central"} <= set(results["metrics"])
    assert (tmp_path / "e" / "report.html").is_file()
    drafts = [json.loads(line) for line in (tmp_path / "e" / "drafts.jsonl").read_text().splitlines()]
    assert [d["case"] for d in drafts] == ["Q1", "Q2", "Q3"] and drafts[1]["nearest"] == drafts[1]["reference"]
    code = main(["-q", "evaluate", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--split", "test",
                 "--task", "drafting", "--gallery-split", "nope", "--out", str(tmp_path / "e2")])
    assert code == 2


def test_medpix_dev_rows_draft_training_captions_of_other_cases(tmp_path: Path) -> None:
    path = shared_path("medpix2", "manifest.jsonl")
    model, _ = dual_model(oracle=False, seed=0)
    cfg = DataConfig(image="image_path", text="caption", patient="case_id", split="split", image_size=32, channels=3)
    report = validate_manifest(path, cfg, decode=False, quarantine_path=tmp_path / "q.csv")
    ds = ManifestDataset(report, cfg, split="dev", max_rows=6)
    result = run_task("drafting", EvalContext(model, ds, EvalConfig(n_resamples=20)))
    train = ManifestDataset(report, cfg, split="train")
    train_texts, train_cases = set(train.texts), set(train.patient_ids)
    assert result.n == 6 and result.artifacts["gallery_rows"] == 1653
    assert result.artifacts["gallery_rows_sharing_case_or_image"] == 0
    assert not set(ds.patient_ids) & train_cases  # MedPix splits are by case
    for example in result.artifacts["examples"]:
        assert all(example[name] in train_texts for name in ("nearest", "consensus", "random", "central"))
    assert all(np.isfinite(result.metrics[m]["value"]) for m in ("bleu1", "rouge_l", "cider", "clinical_f1"))


def _medpix_layout(root: Path, n: int = 16) -> Path:
    """Write ``n`` rows in the MedPix 2.0 layout (two images per case; the last 4 rows are dev)."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        side = ("left", "right")[i % 2]
        pixels = np.full((32, 32), 40, dtype=np.uint8)
        pixels[:, (0 if side == "left" else 16):(16 if side == "left" else 32)] = 200  # the bright half
        Image.fromarray((pixels + rng.integers(0, 9, pixels.shape)).astype(np.uint8)).save(root / f"images/{i}.png")
        rows.append({"image_path": f"images/{i}.png", "case_id": f"MPX{i // 2}", "split": "dev" if i >= n - 4 else "train",
                     "caption": f"Axial CT shows a mass in the {side} kidney.", "location_category": "Abdomen",
                     "sex": ("male", "female")[i // 2 % 2], "age": str(40 + i), "modality_type": "CT"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_caption_recipe_trains_and_its_drafts_get_report_scores_with_intervals(tmp_path: Path) -> None:
    from medfuse.evaluate import evaluate_checkpoint
    from medfuse.train import load_recipe, train_from_config

    manifest = _medpix_layout(tmp_path / "data")
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "configs" / "medpix-report.yaml", [
        f"data.manifest={manifest}", "data.image_size=32", "data.cache_dir=null", "model.lm.config.hidden_size=32",
        "model.lm.config.layers=1", "model.lm.config.heads=2", "train.max_steps=3", "train.batch_size=4",
        "loss.max_new_tokens=6"])
    train_from_config(recipe, tmp_path / "run")
    evaluate_checkpoint(tmp_path / "run", manifest, split="dev", out=tmp_path / "eval", overrides=["n_resamples=30"])
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert doc["task"] == "report_generation" and doc["n"] == 4
    for name in ("bleu4", "rouge_l", "cider", "clinical_f1"):
        assert name in doc["metrics"], name
    lo, hi = doc["metrics"]["rouge_l"]["ci95"]
    assert lo <= doc["metrics"]["rouge_l"]["value"] <= hi
    assert "rouge_l_drop_shuffled" in doc["metrics"]  # the visual-reliance check runs on reports too
