"""Dual-encoder tasks (retrieval, zero-shot, report drafting), probes, few-shot and VQA."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medfuse.data import DataConfig, ManifestDataset, validate_manifest
from medfuse.evaluate.metrics import clinical_efficacy, retrieval_metrics, vqa_accuracy
from medfuse.evaluate.tasks import EvalConfig, EvalContext, PromptSet, TaskSkipped, run_task
from medfuse.evaluate.tasks.report_generation import clinical_scores, finding_counts
from medfuse.models import DiagnosisOutput
from medfuse.models.inference import text_groups
from tests.test_eval_support import dataset, dual_model, oracle_model

FAST = EvalConfig(n_resamples=40)


@pytest.fixture(scope="module")
def multiclass_rows(tmp_path_factory: pytest.TempPathFactory) -> ManifestDataset:
    return dataset(tmp_path_factory.mktemp("eval_dual"), "multiclass")


def test_retrieval_oracle_is_perfect_and_matches_the_metrics_package(multiclass_rows) -> None:
    model, _ = dual_model(oracle=True)
    result = run_task("retrieval", EvalContext(model, multiclass_rows, FAST))
    m = result.metrics
    for name in ("i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@10", "mrr", "map", "ndcg@10"):
        assert m[name]["value"] == 1.0 and m[name]["ci95"] == [1.0, 1.0], name
    art = result.artifacts
    assert art["n_images"] == 20 and art["n_texts"] == 3  # identical reports are one candidate
    example = art["retrieval_examples"]["i2t"][0]
    assert example["hits"][0]["relevant"] and not any(h["relevant"] for h in example["hits"][1:])
    assert example["hits"][0]["text"] == example["query_text"]


def test_random_retrieval_is_near_chance_and_equals_the_metrics_package(tmp_path: Path) -> None:
    model, _ = dual_model(oracle=False, seed=1)
    rows = dataset(tmp_path, "multiclass", n=64, n_train=4, informative=False)  # images say nothing of the text
    ctx = EvalContext(model, rows, EvalConfig(n_resamples=100))
    result = run_task("retrieval", ctx)
    emb = ctx.cache["pairs"]
    groups = text_groups(emb.texts)
    first = np.unique(groups, return_index=True)[1]
    reference = retrieval_metrics(emb.image, emb.text[first], groups, groups[first])
    for name in ("i2t_R@1", "t2i_R@1", "t2i_R@5", "mrr", "map", "ndcg@10", "i2t_median_rank"):
        assert result.metrics[name]["value"] == pytest.approx(reference[name]), name
    lo, hi = result.metrics["i2t_R@1"]["ci95"]
    assert lo <= 1 / 3 <= hi  # three distinct texts: one in three by chance
    for entry in result.metrics.values():
        if entry["ci95"] is not None:
            assert entry["ci95"][0] - 1e-9 <= entry["value"] <= entry["ci95"][1] + 1e-9


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_zero_shot_oracle_is_perfect(tmp_path: Path, task: str) -> None:
    model, _ = dual_model(oracle=True, task=task)
    result = run_task("zero_shot", EvalContext(model, dataset(tmp_path, task), FAST))
    assert result.metrics["auroc"]["value"] == 1.0 and result.metrics["accuracy"]["value"] == 1.0
    used = result.artifacts["prompts"]
    assert used["mode"] == ("pairs" if task == "multilabel" else "softmax")
    if task == "multilabel":
        assert used["negatives"]["alpha"] == ["no alpha", "no evidence of alpha"]


def test_prompt_sets_ensemble_templates_and_take_synonyms() -> None:
    prompts = PromptSet(templates=["{label}", "x-ray with {label}"]).with_synonyms({"pleural_effusion": ["fluid"]})
    assert prompts.positives("pleural_effusion") == ["pleural effusion", "x-ray with pleural effusion", "fluid",
                                                     "x-ray with fluid"]
    assert prompts.positives("nodule") == ["nodule", "x-ray with nodule"]
    assert PromptSet.from_mapping({"mode": "pairs"}).resolve_mode("binary") == "pairs"
    with pytest.raises(Exception, match="label"):
        PromptSet(templates=["no placeholder"])


def test_linear_probe_and_few_shot_learn_from_frozen_features(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "multiclass")
    model, _ = oracle_model("multiclass")
    ctx = EvalContext(model, ds, FAST)
    probe = run_task("linear_probe", ctx)
    assert probe.metrics["accuracy"]["value"] == 1.0 and probe.artifacts["n_train"] == 20
    shots = run_task("few_shot", ctx, ks=[1, 4], seeds=2)
    curve = shots.artifacts["k_curve"]
    assert curve["ks"] == [1, 4] and len(curve["metrics"]["auroc"]["mean"]) == 2
    assert shots.metrics["accuracy@4shot"]["value"] == 1.0 and curve["metrics"]["accuracy"]["std"][1] == 0.0
    assert shots.artifacts["per_seed"]["1"]["train_rows"] == [3, 3]  # one row per class per seed
    dual, _ = dual_model(oracle=False)
    chance = run_task("linear_probe", EvalContext(dual, ds, FAST))
    assert 0.0 <= chance.metrics["auroc"]["value"] <= 1.0


def test_report_generation_scores_generated_and_retrieved_reports(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "multiclass")
    model, _ = dual_model(oracle=True)
    truth = list(ds.texts)
    perfect = run_task("report_generation", EvalContext(model, ds, FAST),
                       generate=lambda batch: [truth[i] for i in batch["index"].tolist()])
    assert perfect.metrics["bleu4"]["value"] == pytest.approx(1.0) and perfect.metrics["rouge_l"]["value"] == 1.0
    drafted = run_task("report_generation", EvalContext(model, ds, FAST))  # nearest training report
    assert drafted.metrics["bleu4"]["value"] == pytest.approx(1.0) and drafted.artifacts["mode"] == "text"
    wrong = run_task("report_generation", EvalContext(model, ds, FAST), generate=lambda b: ["normal study"] * len(b["index"]))
    assert wrong.metrics["bleu4"]["value"] < 0.1
    with pytest.raises(TaskSkipped, match="generate"):
        run_task("report_generation", EvalContext(oracle_model("multiclass")[0], ds, FAST))


def test_clinical_counts_pool_to_the_metrics_package_scores() -> None:
    generated = ["Small left pleural effusion. No pneumothorax.", "Cardiomegaly.", "No acute disease."]
    references = ["Pleural effusion and cardiomegaly.", "Heart size normal.", "Possible pneumonia."]
    mine = clinical_scores(finding_counts(generated, references))
    reference = clinical_efficacy(generated, references)
    for name in ("clinical_precision", "clinical_recall", "clinical_f1"):
        assert mine[name] == pytest.approx(reference[name])


def _vqa_manifest(root: Path) -> tuple[Path, DataConfig]:
    (root / "img").mkdir(parents=True)
    rows = []
    qa = [("is there alpha?", "yes", "CLOSED"), ("is there beta?", "No", "CLOSED"), ("which organ?", "lung", "OPEN"),
          ("what modality?", "CT", "OPEN"), ("where is it?", "left apex", "OPEN")]  # the last is out of vocabulary
    for i in range(20):
        Image.fromarray(np.full((8, 8), 40 * (i % 5), dtype=np.uint8)).save(root / f"img/{i}.png")
        q, a, t = qa[i % 5]
        rows.append({"image_path": f"img/{i}.png", "question": q, "answer": a, "answer_type": t,
                     "img_id": str(i // 5), "split": "train" if i < 5 else "test"})
    path = root / "vqa.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = DataConfig(image="image_path", question="question", answer="answer", answer_type="answer_type",
                     patient="img_id", split="split", subgroups=["answer_type"], image_size=8)
    return path, cfg


class AnswerOracle(nn.Module):
    """Reads the reference answer from the batch: logits 10 on its vocabulary entry (an upper bound)."""

    def __init__(self, vocab: list[str]) -> None:
        super().__init__()
        self.vocab = [v.lower() for v in vocab]
        self.inputs = {"image": "image", "text": "question"}
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, Any]) -> DiagnosisOutput:
        logits = torch.zeros(len(batch["answer"]), len(self.vocab))
        for i, answer in enumerate(batch["answer"]):
            if answer.lower() in self.vocab:
                logits[i, self.vocab.index(answer.lower())] = 10.0
        return DiagnosisOutput(logits=logits + self.anchor, fused=logits)


def test_vqa_oracle_scores_every_answer_in_the_vocabulary(tmp_path: Path) -> None:
    path, cfg = _vqa_manifest(tmp_path)
    ds = ManifestDataset(validate_manifest(path, cfg), cfg, split="test")
    vocab = ["yes", "no", "lung", "ct"]
    ctx = EvalContext(AnswerOracle(vocab), ds, FAST, label_names=vocab)
    assert ctx.kind == "vqa"
    result = run_task("vqa", ctx)
    m = result.metrics
    assert m["vqa_closed"]["value"] == 1.0 and m["vqa_open"]["value"] == pytest.approx(2 / 3)
    assert m["vqa_overall"]["value"] == pytest.approx(0.8) and m["oov_rate"]["value"] == pytest.approx(0.2)
    rows = ctx.cache["vqa_rows"]
    reference = vqa_accuracy(rows.preds, rows.answers, rows.types)
    assert m["vqa_overall"]["value"] == pytest.approx(reference["vqa_overall"])
    assert result.artifacts["n_out_of_vocabulary"] == 3 and result.artifacts["examples"][0]["correct"] is False
    fair = run_task("fairness", ctx, min_group_size=5)
    groups = fair.subgroups["answer_type"]["groups"]
    assert groups["CLOSED"]["metrics"]["vqa_overall"]["value"] == 1.0 and groups["OPEN"]["n"] == 9
    curves = run_task("robustness", ctx, image_corruptions=["contrast"])
    assert curves.artifacts["curves"]["metric"] == "vqa_overall"
    assert set(curves.artifacts["curves"]["text_corruptions"]) == {"typos", "dropped_sentences"}
