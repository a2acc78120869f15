"""The medical ontology, ontology-expanded zero-shot prompts and their explanations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import from_dict, load_yaml
from medfuse.core.errors import ConfigError
from medfuse.evaluate.tasks.zero_shot import PromptSet, zero_shot_probabilities
from medfuse.models import build_model
from medfuse.models.config import ModelConfig
from medfuse.ontology import (
    PromptOptions,
    ZeroShotExplainer,
    build_prompts,
    load_ontology,
    ontology_from_mapping,
)

ROOT = Path(__file__).resolve().parents[1]
MEDPIX = ROOT.parent / "shared" / "data" / "medpix2" / "manifest.jsonl"
LOCATIONS = ["Abdomen", "Head", "Reproductive and Urinary System", "Spine and Muscles", "Thorax"]
FINDINGS = ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]


# ---------------------------------------------------------------------- the ontology
def test_packaged_ontology_covers_the_findings_regions_and_modalities() -> None:
    onto = load_ontology()
    for term in [*FINDINGS, "pneumonia", "normal", "CT", "MR", "MRI", *LOCATIONS]:
        assert onto.find(term) is not None, term
    assert all(c.source for c in onto)
    assert onto.resolve("pleural effusion").id == "effusion"
    assert onto.resolve("Magnetic_Resonance-Imaging").id == "mr"  # case, '_' and '-' are ignored
    assert "MeSH" in onto["pneumonia"].source and "SNOMED CT" in onto["pneumonia"].source
    assert {c.kind for c in onto} == {"finding", "normal", "anatomy", "modality"}


def test_is_a_navigation() -> None:
    onto = load_ontology()
    assert [c.id for c in onto.ancestors("consolidation")] == ["lung_opacity", "lung_finding", "finding"]
    assert {c.id for c in onto.children("thorax")} == {"lung", "pleura", "heart"}
    assert onto.is_a("pneumothorax", "pleural_finding") and not onto.is_a("pneumothorax", "lung_finding")
    assert "cardiomegaly" in {c.id for c in onto.descendants("finding")}
    assert onto["pneumonia"].anatomy == ("lung",) and "xray" in onto["pneumonia"].modalities


def _entry(**changes: Any) -> dict[str, Any]:
    return {"name": "x", "kind": "finding", "source": {"MeSH": "D0"}, **changes}


@pytest.mark.parametrize(("concepts", "message"), [
    ({"a": _entry(parents=["b"])}, "concepts.a.parents: unknown concept 'b'"),
    ({"a": _entry(parents=["b"]), "b": _entry(parents=["a"])}, "is-a cycle"),
    ({"a": {"name": "x", "kind": "finding"}}, "concepts.a.source"),
    ({"a": _entry(synonym=["y"])}, "did you mean 'synonyms'"),
    ({"a": _entry(kind="disease")}, "kind"),
    ({"a": _entry(anatomy=["b"]), "b": _entry()}, "not anatomy"),
])
def test_bad_entries_fail_naming_the_entry(concepts: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ontology_from_mapping({"concepts": concepts}, name="mine")


def test_ambiguous_and_unknown_terms() -> None:
    onto = ontology_from_mapping({"concepts": {"a": _entry(name="alpha", synonyms=["shared"]),
                                               "b": _entry(name="beta", synonyms=["shared"])}})
    assert onto.find("shared") is None and onto.find("ALPHA").id == "a"
    with pytest.raises(ConfigError, match="several concepts"):
        onto.resolve("shared")
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        onto.resolve("alpah")


# ---------------------------------------------------------------------- prompts
def test_prompts_cross_templates_with_synonyms_parents_and_sites() -> None:
    bank = build_prompts(["normal", "pneumonia"], options={"templates": ["{label}", "x-ray: {label}"]})
    texts = bank.texts("pneumonia")
    phrases = [p for p, _, _ in bank.phrases["pneumonia"]]
    assert len(texts) == 2 * len(phrases) and texts[:2] == ["pneumonia", "x-ray: pneumonia"]
    relations = {p.relation for p in bank.positives["pneumonia"]}
    assert relations == {"name", "synonym", "parent", "anatomy"}
    assert "lung infection" in phrases and "pneumonia, a kind of lung abnormality" in phrases
    assert "pneumonia in the lung" in phrases
    negatives = bank.texts("pneumonia", "negative")
    assert negatives[:2] == ["no pneumonia", "no evidence of pneumonia"]
    assert "no focal consolidation" in negatives and "clear lungs" in negatives  # own negations + normal
    region = build_prompts(LOCATIONS)
    thorax = {p.phrase: p.relation for p in region.positives["Thorax"]}
    assert thorax["lungs"] == "child" and thorax["chest"] == "synonym"
    assert region.templates[1] == "a CT or MRI image of the {label}"  # anatomy templates by kind


def test_prompt_options_and_unknown_classes() -> None:
    bank = build_prompts(["pneumonia", "zebra_finding"], options=PromptOptions(synonyms=False, parents=0,
                                                                               anatomy=False, templates=["{label}"]))
    assert bank.texts("pneumonia") == ["pneumonia"] and bank.texts("zebra_finding") == ["zebra finding"]
    assert bank.concepts == {"pneumonia": "pneumonia", "zebra_finding": None}
    assert len(build_prompts(["Head"], options={"max_phrases": 3}).phrases["Head"]) == 3
    assert build_prompts(["lesion"], aliases={"lesion": "nodule"}).concepts["lesion"] == "nodule"
    with pytest.raises(ConfigError, match="templates"):
        build_prompts(["pneumonia"], options={"templates": ["no placeholder"]})
    with pytest.raises(ConfigError, match="distinct"):
        build_prompts(["a", "a"])


@pytest.mark.parametrize("sentences", [False, True])
def test_prompt_bank_is_exactly_the_zero_shot_prompt_set(sentences: bool) -> None:
    bank = build_prompts(["normal", "pneumonia", *FINDINGS])
    prompts = PromptSet.from_mapping(bank.to_mapping(sentences=sentences))
    for label in bank.labels:
        assert prompts.positives(label) == bank.texts(label)
        assert prompts.negatives(label) == bank.texts(label, "negative")


def test_medpix_zero_shot_config_holds_the_ontology_prompts() -> None:
    config = load_yaml(ROOT / "configs" / "medpix-zeroshot.yaml")
    stored = PromptSet.from_mapping(config["options"]["zero_shot"]["prompts"])
    for labels in (LOCATIONS, ["CT", "MR"]):
        bank = build_prompts(labels)
        for label in labels:
            assert stored.positives(label) == bank.texts(label), label


@pytest.mark.skipif(not MEDPIX.is_file(), reason="../shared/data/medpix2 is absent")
def test_every_medpix_class_resolves_to_a_concept() -> None:
    rows = [json.loads(line) for line in MEDPIX.read_text(encoding="utf-8").splitlines() if line.strip()]
    onto = load_ontology()
    for column, kind in (("location_category", "anatomy"), ("modality_type", "modality")):
        for value in {r[column] for r in rows}:
            assert onto.resolve(value).kind == kind, value


# ---------------------------------------------------------------------- explanations
def _tiny_dual(seed: int = 0) -> nn.Module:
    cfg = from_dict(ModelConfig, {
        "kind": "dual_encoder", "embed_dim": 8,
        "encoders": {"image": {"type": "timm", "params": {"arch": "test_resnet", "output_tokens": False}},
                     "text": {"type": "transformer_text", "params": {"width": 16, "layers": 1, "heads": 2,
                                                                     "max_length": 32}}}}, where="model")
    torch.manual_seed(seed)
    return build_model(cfg).eval()


@pytest.mark.parametrize(("labels", "task"), [(LOCATIONS, "multiclass"), (["normal", "pneumonia"], "binary"),
                                              (FINDINGS, "multilabel")])
def test_explanations_add_up_and_match_zero_shot(labels: list[str], task: str) -> None:
    model = _tiny_dual()
    bank = build_prompts(labels, options={"max_phrases": 4})
    images = F.normalize(model.encode_image(torch.rand(3, 3, 32, 32)).detach(), dim=-1)
    probs, _ = zero_shot_probabilities(model, images, labels, task, bank.to_prompt_set())
    explainer = ZeroShotExplainer(model, bank, task)
    for i, exp in enumerate(explainer.explain(images)):
        assert exp.margin == pytest.approx(sum(c.contribution for c in exp.for_label)
                                           - sum(c.contribution for c in exp.for_against), abs=1e-5)
        assert exp.logits[exp.label] == pytest.approx(sum(c.contribution for c in exp.for_label), abs=1e-5)
        assert exp.logits[exp.against] == pytest.approx(sum(c.contribution for c in exp.for_against), abs=1e-5)
        assert sum(c.contribution for c in exp.concepts if c.side == "label") == pytest.approx(exp.logits[exp.label], abs=1e-5)
        if task == "multiclass":
            assert exp.label == labels[int(np.argmax(probs[i]))]
            for k, label in enumerate(labels):
                assert exp.probabilities[label] == pytest.approx(float(probs[i, k]), abs=1e-5)
        elif task == "binary":
            positive = explainer.explain(images[i], label="pneumonia")[0]
            assert positive.probabilities["pneumonia"] == pytest.approx(float(probs[i]), abs=1e-5)
        else:
            assert exp.probabilities[exp.label] == pytest.approx(float(probs[i].max()), abs=1e-5)
    with pytest.raises(ConfigError, match="not one of"):
        explainer.explain(images[:1], label="spleen")


class KeywordDual(nn.Module):
    """A stub dual encoder: a text's embedding marks the keywords it contains; images are given vectors."""

    KEYWORDS = ("infection", "clear", "pneumonia", "normal")

    def encode_text(self, texts: list[str], normalize: bool = True) -> Tensor:
        rows = [[1.0 if k in t else 0.0 for k in self.KEYWORDS] + [0.1] for t in texts]
        return F.normalize(torch.tensor(rows), dim=-1)

    def encode_image(self, images: Tensor, normalize: bool = True) -> Tensor:
        return F.normalize(images, dim=-1)

    def scale(self) -> Tensor:
        return torch.tensor(10.0)


def test_the_concept_the_image_matches_is_the_one_that_drove_the_prediction() -> None:
    bank = build_prompts(["normal", "pneumonia"], options={"templates": ["{label}"]})
    explainer = ZeroShotExplainer(KeywordDual(), bank, "binary")
    infected = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])  # only "infection" prompts look like this image
    exp = explainer.explain(infected)[0]
    assert exp.label == "pneumonia" and exp.against == "normal" and exp.margin > 0
    assert "infection" in exp.top_prompts(1)[0].prompt.text
    top = next(c for c in exp.concepts if c.side == "label")
    assert (top.concept, top.relation) == ("pneumonia", "synonym") and "infection" in top.best_prompt
    assert "pneumonia" in exp.summary()
    paired = ZeroShotExplainer(KeywordDual(), build_prompts(["normal", "pneumonia"], options={"mode": "pairs"}), "binary")
    clear = paired.explain(torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]]))[0]  # "clear lungs" is a negative prompt
    assert clear.label == "pneumonia" and clear.probabilities["pneumonia"] < 0.5
    against = [c for c in clear.concepts if c.side == "against"]
    assert against[0].concept in ("pneumonia", "normal") and "clear" in against[0].best_prompt
    json.dumps(clear.to_dict())
