"""``medfuse train`` / ``medfuse evaluate`` with a vision-language recipe on a manifest in the SLAKE layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medfuse.cli import main as cli_main
from medfuse.evaluate import evaluate_checkpoint
from medfuse.models.generative import is_vlm_checkpoint, load_vlm
from medfuse.train import load_recipe, train_from_config
from medfuse.train.runner import MODEL_SUBDIR


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_side_manifest(root: Path, n: int = 48) -> Path:
    """Images with a bright blob on one side; an open question (which side) and a closed one (yes/no) per image."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[0:32, 0:32]
    rows = []
    for i in range(n):
        side = "left" if i % 2 == 0 else "right"
        cx = rng.uniform(4, 12) if side == "left" else rng.uniform(20, 28)
        blob = np.exp(-((xx - cx) ** 2 + (yy - rng.uniform(6, 26)) ** 2) / 8.0)
        pixels = np.clip(30 + 200 * blob + rng.normal(0, 8, blob.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"img{i}.png")
        split = "train" if i < n - 12 else "validate"
        common = {"image_path": f"images/img{i}.png", "img_id": i, "split": split, "q_lang": "en", "modality": "X-Ray",
                  "location": "Chest"}
        rows.append({**common, "question": "Which side is the opacity on?", "answer": side, "answer_type": "OPEN"})
        rows.append({**common, "question": "Is the opacity on the left?", "answer": "Yes" if side == "left" else "No",
                     "answer_type": "CLOSED"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _recipe(manifest: Path) -> dict:
    return {
        "task": "generation", "seed": 0,
        "data": {"manifest": str(manifest), "preset": "slake", "image_size": 32, "channels": 1,
                 "train_split": "train", "val_split": "validate"},
        "model": {"kind": "vlm", "image": {"type": "timm", "params": {"arch": "test_convnext2", "in_chans": 1}},
                  "lm": {"config": {"arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2, "max_positions": 64},
                         "tokenizer": "wordpiece"},
                  "projector": "mlp", "template": {"system": ""}, "max_length": 48},
        "loss": {"stage": "instruct", "lm": "full", "vision": "full", "max_val_samples": 24, "max_new_tokens": 3},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"max_steps": 6, "batch_size": 16, "select_metric": "vqa_overall", "log_every": 2},
    }


def test_train_then_evaluate_a_vision_language_recipe(tmp_path: Path) -> None:
    manifest = _write_side_manifest(tmp_path / "data")
    result = train_from_config(load_recipe(data=_recipe(manifest)), tmp_path / "run")
    assert is_vlm_checkpoint(tmp_path / "run" / MODEL_SUBDIR)
    assert result.fit.steps == 6 and "vqa_overall" in result.val_metrics
    loaded = load_vlm(tmp_path / "run" / MODEL_SUBDIR)
    bank = loaded.extra["answer_bank"]
    assert bank and loaded.extra["train_task"] == "generation"

    out = evaluate_checkpoint(tmp_path / "run", manifest, split="validate", out=tmp_path / "eval",
                              overrides=["n_resamples=50"])
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert doc["task"] == "vqa" and doc["split"] == "validate" and doc["n"] == 24
    overall = doc["metrics"]["vqa_overall"]
    assert 0.0 <= overall["value"] <= 1.0 and overall["ci95"] is not None
    closed = doc["metrics"]["vqa_closed"]["value"]
    assert closed in {k / 12 for k in range(13)}  # 12 closed questions: a fraction of them
    assert {"vqa_overall_blank", "vqa_overall_drop_shuffled"} <= set(doc["metrics"])
    examples = doc["tasks"]["vqa"]["artifacts"]["examples"]
    assert examples and {"question", "reference", "prediction_image"} <= set(examples[0])
    assert out.report_path is not None and out.report_path.is_file()


def test_cli_runs_the_generation_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _write_side_manifest(tmp_path / "data", n=24)
    recipe = _recipe(manifest)
    recipe["train"]["max_steps"] = 2
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    import yaml

    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert cli_main(["train", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert cli_main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--manifest", str(manifest),
                     "--split", "validate", "--out", str(tmp_path / "eval"), "--set", "n_resamples=0"]) == 0
    assert "vqa_overall" in json.loads((tmp_path / "eval" / "results.json").read_text())["metrics"]
