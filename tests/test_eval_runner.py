"""evaluate_checkpoint end to end (diagnosis and dual encoder) and predict_files."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from medfuse.core.config import to_dict
from medfuse.core.errors import ConfigError
from medfuse.evaluate import EVAL_TASKS, evaluate_checkpoint, predict_files, read_results
from medfuse.evaluate.runner import eval_config
from medfuse.evaluate.tasks.sources import resolve_checkpoint
from medfuse.models import save_checkpoint
from tests.test_eval_support import data_config, dual_model, oracle_model, write_manifest

QUICK = ["n_resamples=30", "min_group_size=8", "robustness.max_rows=8", "robustness.image_corruptions=[contrast]",
         "efficiency.repeats=2", "efficiency.warmup=1", "efficiency.throughput_batch=4"]


@pytest.fixture(scope="module")
def diagnosis_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("eval_run")
    manifest = write_manifest(root / "data", "binary")
    (root / "data" / "img" / "039.png").write_bytes(b"not an image")  # one bad row, quarantined
    model, cfg = oracle_model("binary", vitals=True)
    ckpt = save_checkpoint(root / "ckpt", model, cfg, label_names=["normal", "pneumonia"],
                           extra={"data": to_dict(data_config("binary")), "temperature": 1.0})
    result = evaluate_checkpoint(ckpt, manifest, out=root / "eval", overrides=QUICK, seed=0)
    return root, manifest, ckpt, result


def test_diagnosis_run_writes_results_in_the_design_schema(diagnosis_run) -> None:
    root, _, _, result = diagnosis_run
    doc = read_results(root / "eval")  # checks the schema
    assert doc == json.loads((root / "eval" / "results.json").read_text())
    assert doc["task"] == "classification" and doc["split"] == "test" and doc["n"] == 19 and doc["seed"] == 0
    assert set(doc["tasks"]) == {"classification", "fairness", "robustness", "efficiency", "modality_comparison",
                                 "interpretability"}
    assert not [n for n, t in doc["tasks"].items() if "error" in t or "skipped" in t]
    for name in ("accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "ece", "brier"):
        assert name in doc["metrics"], name
    assert doc["metrics"]["auroc"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert doc["data"]["read"] == 40 and doc["data"]["kept"] == 39 and doc["data"]["quarantined"] == 1
    assert Path(doc["artifacts"]["quarantine"]).is_file()
    assert doc["subgroups"]["site"]["groups"]["B"]["small"] is True
    assert doc["model_card"]["label_names"] == ["normal", "pneumonia"] and doc["model_card"]["parameters"] > 0
    assert doc["config"]["data"]["image"] == "image_path" and doc["config"]["evaluate"]["n_resamples"] == 30
    assert doc["tasks"]["robustness"]["artifacts"]["curves"]["missing_modality"]["image"]["values"][-1] == 0.5
    assert doc["tasks"]["efficiency"]["metrics"]["latency_ms_p50"]["value"] > 0
    assert result.results_path == root / "eval" / "results.json"
    assert "auroc" in result.summary() and "quarantined 1" in result.summary()
    if result.report_path is not None:
        assert result.report_path.is_file() and doc["artifacts"]["report"]


def test_a_second_run_with_the_same_seed_gives_the_same_numbers(diagnosis_run) -> None:
    root, manifest, ckpt, first = diagnosis_run
    again = evaluate_checkpoint(ckpt, manifest, out=root / "again", tasks=["classification", "fairness"],
                                overrides=QUICK, seed=0)
    assert again.results["metrics"] == first.results["metrics"]
    assert again.results["subgroups"] == first.results["subgroups"]


def test_any_split_name_and_named_tasks(diagnosis_run) -> None:
    root, manifest, ckpt, _ = diagnosis_run
    res = evaluate_checkpoint(ckpt, manifest, split="train", tasks=["calibration"], out=root / "train",
                              overrides=["n_resamples=0"])
    assert res.results["split"] == "train" and res.results["n"] == 20 and "ece" in res.results["metrics"]
    with pytest.raises(ConfigError, match="classification"):
        evaluate_checkpoint(ckpt, manifest, tasks=["clasification"], out=root / "typo")
    with pytest.raises(ConfigError, match="split"):
        evaluate_checkpoint(ckpt, manifest, split="holdout2", tasks=["calibration"], out=root / "nosplit")
    with pytest.raises(ConfigError, match="no such directory"):
        evaluate_checkpoint(root / "not-there", manifest, out=root / "missing")


def test_name_at_version_goes_through_the_model_registry(diagnosis_run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, ckpt, _ = diagnosis_run
    asked = []
    registry = types.ModuleType("medfuse.tracking.registry")
    registry.resolve_checkpoint = lambda ref: asked.append(ref) or ckpt  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "medfuse.tracking.registry", registry)
    loaded = resolve_checkpoint("chest-model@3")
    assert asked == ["chest-model@3"] and loaded.path == ckpt and loaded.label_names == ["normal", "pneumonia"]


def test_overrides_route_to_settings_task_options_and_data() -> None:
    cfg = eval_config(None, ["n_resamples=10", "few_shot.ks=[1, 2]", "data.image_size=64", "calibration_split=val"])
    assert cfg.n_resamples == 10 and cfg.options == {"few_shot": {"ks": [1, 2]}}
    assert cfg.data == {"image_size": 64} and cfg.calibration_split == "val"
    with pytest.raises(ConfigError, match="n_resamples"):
        eval_config(None, ["n_resample=3"])


def test_settings_load_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text("evaluate:\n  n_resamples: 7\n  options:\n    robustness: {max_rows: 4}\n")
    cfg = eval_config(path, ["robustness.rates=[0, 1]"])
    assert cfg.n_resamples == 7 and cfg.options["robustness"] == {"max_rows": 4, "rates": [0, 1]}
    assert "classification" in EVAL_TASKS and "modality_comparison" in EVAL_TASKS


def test_dual_encoder_run_without_a_stored_data_config(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", "multiclass")
    model, cfg = dual_model(oracle=True)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, cfg)
    res = evaluate_checkpoint(ckpt, manifest, out=tmp_path / "eval", overrides=["n_resamples=20", "data.image_size=32"],
                              tasks=["retrieval", "zero_shot"])
    doc = res.results
    assert doc["task"] == "retrieval" and doc["metrics"]["i2t_R@1"]["value"] == 1.0
    assert doc["metrics"]["t2i_R@5"]["value"] == 1.0 and doc["metrics"]["accuracy"]["value"] == 1.0
    assert doc["config"]["data"]["label"] == "label"  # roles detected from the columns


def test_predict_files_gives_one_record_per_file_and_reports_bad_ones(diagnosis_run) -> None:
    root, _, ckpt, result = diagnosis_run
    images = sorted((root / "data" / "img").glob("*.png"))
    bad = root / "data" / "img" / "039.png"
    records = list(predict_files(ckpt, [images[0], bad, images[1], root / "missing.png"], vitals='{"v1": 0.1}'))
    assert [Path(r["file"]).name for r in records] == [images[0].name, "039.png", images[1].name, "missing.png"]
    assert "error" in records[1] and "error" in records[3]
    good = records[0]
    assert set(good["probabilities"]) == {"pneumonia"} and good["prediction"] in ("normal", "pneumonia")
    assert 0.0 <= good["probabilities"]["pneumonia"] <= 1.0
    json.dumps(records)
    with open(root / "data" / "manifest.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert good["prediction"] == first["label"]  # the oracle reads the label off the image


def _subset(source: Path, target: Path, per_split: int = 24) -> Path:
    """Copy the first rows of each split of a shared manifest next to a link to its media folder."""
    target.mkdir(parents=True)
    for media in ("images", "audio", "records"):
        if (source.parent / media).is_dir():
            (target / media).symlink_to(source.parent / media)
    counts: dict[str, int] = {}
    out = target / source.name
    if source.suffix == ".jsonl":
        kept = []
        for line in source.read_text().splitlines():
            split = json.loads(line).get("split", "")
            if counts.get(split, 0) < per_split:
                counts[split] = counts.get(split, 0) + 1
                kept.append(line)
        out.write_text("\n".join(kept) + "\n")
        return out
    with source.open(newline="") as fh, out.open("w", newline="") as dst:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            if counts.get(row["split"], 0) < per_split:
                counts[row["split"]] = counts.get(row["split"], 0) + 1
                writer.writerow(row)
    return out


@pytest.mark.shared
@pytest.mark.parametrize(
    ("folder", "manifest", "model", "tasks", "split", "metric"),
    [
        ("pneumoniamnist", "manifest.csv", {"kind": "diagnosis", "encoders": {"image": {"type": "timm", "params": {"arch": "test_resnet"}}},
                                            "fusion": {"type": "concat", "dim": 8}, "head": {"type": "binary", "num_outputs": 1}},
         ["classification", "fairness"], "val", "auroc"),
        ("slake", "manifest.jsonl", {"kind": "diagnosis", "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_resnet"}},
            "text": {"type": "transformer_text", "modality": "question", "params": {"width": 16, "layers": 1, "heads": 2}}},
            "fusion": {"type": "concat", "dim": 8}, "head": {"type": "multiclass", "num_outputs": 4}},
         ["vqa", "fairness"], "validate", "vqa_overall"),
        ("medpix2", "manifest.jsonl", {"kind": "dual_encoder", "embed_dim": 8, "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_resnet"}},
            "text": {"type": "transformer_text", "params": {"width": 16, "layers": 1, "heads": 2}}}},
         ["retrieval", "zero_shot"], "dev", "i2t_R@1"),
    ],
)
def test_shared_manifests_evaluate_as_they_are(shared_data: Path, tmp_path: Path, folder, manifest, model, tasks, split,
                                               metric) -> None:
    from medfuse.core.config import from_dict
    from medfuse.models import ModelConfig, build_model

    rows = _subset(shared_data / folder / manifest, tmp_path / folder)
    cfg = from_dict(ModelConfig, model, where="model")
    names = ["yes", "no", "mri", "ct"] if folder == "slake" else (["normal", "pneumonia"] if folder == "pneumoniamnist" else None)
    ckpt = save_checkpoint(tmp_path / "ckpt", build_model(cfg).eval(), cfg, label_names=names,
                           preprocessing={"image_size": 32, "channels": 3})
    res = evaluate_checkpoint(ckpt, rows, tasks=tasks, out=tmp_path / "eval",
                              overrides=["n_resamples=20"])
    doc = read_results(tmp_path / "eval")
    assert doc["split"] == split and doc["n"] == 24 and doc["task"] == tasks[0]
    assert not [n for n, t in doc["tasks"].items() if "error" in t], doc["tasks"]
    if folder == "pneumoniamnist":
        assert "subgroup" in doc["tasks"]["fairness"]["skipped"]  # the set has no subgroup columns
    assert 0.0 <= doc["metrics"][metric]["value"] <= 1.0
    assert res.results_path.is_file()
