"""The application recipes (PneumoniaMNIST, SLAKE VQA, MedPix CLIP and zero-shot) end to end through the CLI.

Each recipe trains for one epoch on a few rows and is evaluated: on ../shared/data (skipped when absent)
and, through ``--set`` overrides, on the synthetic chest set, so the recipes stay runnable without the
shared data. Figures are not checked here (docs/applications.md has them); the plumbing is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from medfuse.cli import main
from medfuse.core.config import from_dict
from medfuse.models import build_model
from medfuse.models.config import ModelConfig
from medfuse.ontology import build_prompts
from medfuse.train import load_recipe
from medfuse.train.config import StrategyConfig
from medfuse.train.strategies import apply_strategy
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PNEUMONIA = ["pneumonia-linear-probe.yaml", "pneumonia-lora.yaml", "pneumonia-full.yaml"]
ALL = [*PNEUMONIA, "slake-vqa.yaml", "medpix-clip.yaml"]
QUICK = ["train.epochs=1", "train.batch_size=8", "data.max_rows=24"]
EVAL_QUICK = ["--set", "max_rows=24", "--set", "n_resamples=20"]
FINDINGS = ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]


def _train(config: str, out: Path, overrides: list[str]) -> Path:
    argv = ["--quiet", "train", str(CONFIGS / config), "--out", str(out)]
    for item in [*QUICK, *overrides]:
        argv += ["--set", item]
    assert main(argv) == 0
    assert (out / "model" / "model.safetensors").is_file()
    return out


def _evaluate(run: Path, manifest: Path, split: str, extra: list[str]) -> dict[str, Any]:
    out = run / "eval"
    assert main(["--quiet", "evaluate", "--checkpoint", str(run), "--manifest", str(manifest), "--split", split,
                 "--out", str(out), *EVAL_QUICK, *extra]) == 0
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("config", ALL)
def test_recipes_load_and_build(config: str) -> None:
    recipe = load_recipe(CONFIGS / config)
    raw = json.loads(json.dumps(recipe.model))
    if raw.get("head"):
        raw["head"]["num_outputs"] = 1 if raw["head"]["type"] == "binary" else 3
    cfg = from_dict(ModelConfig, raw, where="model")
    assert cfg.encoders and recipe.seed == 0 and recipe.train.epochs <= 12  # CPU-sized budgets
    assert "shared/data" in recipe.data.manifest


def test_frozen_batch_norm_keeps_its_statistics_under_a_probe() -> None:
    cfg = from_dict(ModelConfig, {"kind": "diagnosis",
                                  "encoders": {"image": {"type": "timm", "params": {"arch": "test_efficientnet",
                                                                                    "in_chans": 1}}},
                                  "fusion": {"type": "concat", "dim": 8}, "head": {"type": "binary", "num_outputs": 1}},
                    where="model")
    for kind, frozen in (("linear_probe", True), ("full", False)):
        torch.manual_seed(0)
        model, _ = apply_strategy(build_model(cfg), StrategyConfig(kind=kind))
        stats = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
        model.train()
        model({"image": torch.randn(4, 1, 32, 32) * 3 + 1})
        after = model.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in stats.items()) is frozen, kind


# ---------------------------------------------------------------------- on ../shared/data
@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("config", PNEUMONIA)
def test_pneumonia_recipes_on_shared_data(config: str, tmp_path: Path) -> None:
    manifest = shared_path("pneumoniamnist", "manifest.csv")
    run = _train(config, tmp_path / "run", [])
    results = _evaluate(run, manifest, "val", ["--task", "classification"])
    assert results["n"] == 24 and 0.0 <= results["metrics"]["auroc"]["value"] <= 1.0


@pytest.mark.shared
@pytest.mark.slow
def test_slake_vqa_recipe_on_shared_data(tmp_path: Path) -> None:
    manifest = shared_path("slake", "manifest.jsonl")
    run = _train("slake-vqa.yaml", tmp_path / "run", ["data.image_size=64"])
    results = _evaluate(run, manifest, "validate", ["--set", "data.label=null", "--set", "data.classes=null"])
    metrics = results["metrics"]
    assert results["task"] == "vqa" and {"vqa_overall", "vqa_closed", "vqa_open", "oov_rate"} <= set(metrics)


@pytest.mark.shared
@pytest.mark.slow
def test_medpix_clip_and_zero_shot_recipes_on_shared_data(tmp_path: Path) -> None:
    manifest = shared_path("medpix2", "manifest.jsonl")
    run = _train("medpix-clip.yaml", tmp_path / "run", ["data.image_size=64"])
    retrieval = _evaluate(run, manifest, "dev", ["--task", "retrieval"])
    assert {"i2t_R@1", "t2i_R@10", "mrr"} <= set(retrieval["metrics"])
    zero = _evaluate(run, manifest, "dev", ["--task", "zero_shot", "--config", str(CONFIGS / "medpix-zeroshot.yaml"),
                                            "--set", "data.label=modality_type", "--set", "data.classes=[CT,MR]"])
    used = zero["tasks"]["zero_shot"]["artifacts"]["prompts"]
    assert used["mode"] == "softmax" and "a MRI image" in used["positives"]["MR"]


# ---------------------------------------------------------------------- the same recipes on synthetic data
@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfuse.data.synth import generate_synthetic

    return Path(generate_synthetic(tmp_path_factory.mktemp("synth"), n=48, seed=0, image_size=64).manifest_path)


def _synthetic_vqa(manifest: Path) -> Path:
    """Write a small VQA manifest over the synthetic films: one closed and one open question per film."""
    frame = pd.read_csv(manifest)
    rows = []
    for r in frame.to_dict("records"):
        common = {"image_path": r["image_path"], "split": "validate" if r["split"] != "train" else "train",
                  "img_id": r["patient_id"], "q_lang": "en", "modality": "X-Ray"}
        rows.append({**common, "question": "Is there consolidation?", "answer": "yes" if r["consolidation"] else "no",
                     "answer_type": "CLOSED"})
        rows.append({**common, "question": "Which view is this film?", "answer": str(r["view"]), "answer_type": "OPEN"})
    path = manifest.parent / "vqa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


SYNTH_BINARY = ["data.preset=synthetic", "data.labels=[]", "data.label=consolidation", "data.task=binary",
                "data.classes=[0,1]", "data.vitals=[]", "data.text=null", "data.image_size=32"]


@pytest.mark.slow
@pytest.mark.parametrize("config", PNEUMONIA)
def test_pneumonia_recipes_on_synthetic_data(config: str, synth: Path, tmp_path: Path) -> None:
    run = _train(config, tmp_path / "run", [f"data.manifest={synth}", *SYNTH_BINARY])
    results = _evaluate(run, synth, "val", ["--task", "classification"])
    assert results["split"] == "val" and "auroc" in results["metrics"]


@pytest.mark.slow
def test_vqa_recipe_on_synthetic_questions(synth: Path, tmp_path: Path) -> None:
    manifest = _synthetic_vqa(synth)
    run = _train("slake-vqa.yaml", tmp_path / "run", [f"data.manifest={manifest}", "data.image_size=32",
                                                      "data.max_rows=96"])
    results = _evaluate(run, manifest, "validate", ["--set", "data.label=null", "--set", "data.classes=null"])
    assert results["metrics"]["vqa_closed"]["value"] is not None


@pytest.mark.slow
def test_clip_recipe_and_ontology_zero_shot_on_synthetic_data(synth: Path, tmp_path: Path) -> None:
    run = _train("medpix-clip.yaml", tmp_path / "run", [f"data.manifest={synth}", "data.preset=synthetic",
                                                        "data.val_split=val", "data.image_size=32"])
    prompts = build_prompts(FINDINGS, options={"mode": "pairs", "max_phrases": 3}).to_mapping()
    config = tmp_path / "zero_shot.yaml"
    config.write_text(yaml.safe_dump({"options": {"zero_shot": {"prompts": prompts}}}), encoding="utf-8")
    results = _evaluate(run, synth, "val", ["--task", "retrieval", "--task", "zero_shot", "--config", str(config)])
    used = results["tasks"]["zero_shot"]["artifacts"]["prompts"]
    assert used["mode"] == "pairs" and "no pleural effusion" in used["negatives"]["effusion"]
    assert "i2t_R@1" in results["metrics"]
