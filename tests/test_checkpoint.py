"""Checkpoints: round trips, atomic replacement, self-containment, and errors that say what differs."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medfuse.core.config import from_dict
from medfuse.core.errors import ConfigError
from medfuse.models import ENCODERS, Encoder, EncoderOutput, ModelCard, ModelConfig, build_model
from medfuse.models.checkpoint import load_checkpoint, save_checkpoint

CFG = {
    "kind": "diagnosis",
    "encoders": {
        "image": {"type": "timm", "params": {"arch": "test_resnet", "in_chans": 1}},
        "vitals": {"type": "vitals_mlp", "params": {"num_features": 3, "dim": 8}},
    },
    "fusion": {"type": "gated", "dim": 8},
    "head": {"type": "multilabel", "num_outputs": 2},
}


def _model(cfg_data: dict = CFG) -> tuple[nn.Module, ModelConfig]:
    torch.manual_seed(0)
    cfg = from_dict(ModelConfig, cfg_data, where="model")
    model = build_model(cfg)
    vitals = cfg.encoders.get("vitals")
    if vitals is not None and vitals.type == "vitals_mlp":
        model.encoders["vitals"].fit_stats(torch.randn(20, 3) * 4 + 7)
    return model.eval(), cfg


def _batch() -> dict:
    torch.manual_seed(1)
    return {"image": torch.randn(2, 1, 32, 32), "vitals": torch.tensor([[1.0, float("nan"), 3.0], [4.0, 5.0, 6.0]])}


def test_round_trip_restores_outputs_and_metadata(tmp_path: Path) -> None:
    model, cfg = _model()
    card = ModelCard(name="tiny", intended_use="tests only", data="random numbers", limitations="none known",
                     metrics={"auroc": 0.5})
    target = save_checkpoint(tmp_path / "ckpt", model, cfg, label_names=["effusion", "edema"], thresholds=[0.3, 0.6],
                             card=card, extra={"epoch": 3})
    assert sorted(p.name for p in target.iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging leftovers
    doc = json.loads((target / "config.json").read_text())
    assert {"medfuse", "torch", "timm", "transformers"} <= set(doc["versions"])
    assert doc["preprocessing"]["image"]["channels"] == 1 and doc["card"]["intended_use"] == "tests only"
    assert "tests only" in (target / "MODEL_CARD.md").read_text()
    loaded = load_checkpoint(target)
    with torch.no_grad():
        assert torch.equal(loaded.model(_batch()).logits, model(_batch()).logits)
    assert torch.equal(loaded.model.encoders["vitals"].mean, model.encoders["vitals"].mean)  # buffers travel
    assert loaded.config == cfg and not loaded.model.training
    assert loaded.label_names == ["effusion", "edema"] and loaded.thresholds == [0.3, 0.6]
    assert loaded.card == card and loaded.extra == {"epoch": 3}


def test_saving_into_a_run_directory_replaces_only_checkpoint_files(tmp_path: Path) -> None:
    model, cfg = _model()
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    save_checkpoint(run, model, cfg)
    first = json.loads((run / "config.json").read_text())["checkpoint_id"]
    with torch.no_grad():
        model.head.net[0].weight.add_(1.0)
    save_checkpoint(run, model, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging leftovers
    assert sorted(p.name for p in run.iterdir()) == ["MODEL_CARD.md", "config.json", "metrics.jsonl", "model.safetensors"]
    assert (run / "metrics.jsonl").read_text() == "{}\n"
    assert json.loads((run / "config.json").read_text())["checkpoint_id"] != first
    assert torch.equal(load_checkpoint(run).model.head.net[0].weight, model.head.net[0].weight)


def test_weights_and_config_from_different_saves_are_detected(tmp_path: Path) -> None:
    model, cfg = _model()
    save_checkpoint(tmp_path / "a", model, cfg)
    save_checkpoint(tmp_path / "b", model, cfg)
    shutil.copy(tmp_path / "b" / "config.json", tmp_path / "a" / "config.json")
    with pytest.raises(ConfigError, match="come from different saves"):
        load_checkpoint(tmp_path / "a")


def test_a_failed_save_leaves_the_old_checkpoint(tmp_path: Path) -> None:
    model, cfg = _model()
    save_checkpoint(tmp_path / "ckpt", model, cfg, thresholds=0.5)
    with pytest.raises(ConfigError, match="extra: cannot be stored"):
        save_checkpoint(tmp_path / "ckpt", model, cfg, extra={"bad": object()})
    assert load_checkpoint(tmp_path / "ckpt").thresholds == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with pytest.raises(ConfigError, match="label_names: 3 names for a multilabel head with 2"):
        save_checkpoint(tmp_path / "ckpt", model, cfg, label_names=["a", "b", "c"])


def test_mismatches_list_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    model, cfg = _model()
    target = save_checkpoint(tmp_path / "ckpt", model, cfg)
    doc = json.loads((target / "config.json").read_text())
    doc["model"]["head"]["num_outputs"] = 3
    (target / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"shape mismatches \(2\): head.net.0.bias: file \(2,\) vs model \(3,\)"):
        load_checkpoint(target)
    doc["model"]["head"]["num_outputs"] = 2
    (target / "config.json").write_text(json.dumps(doc))
    state = load_file(str(target / "model.safetensors"))
    state["extra.weight"] = state.pop("head.net.0.weight")
    save_file(state, str(target / "model.safetensors"), metadata={"checkpoint_id": doc["checkpoint_id"]})
    with pytest.raises(ConfigError) as info:
        load_checkpoint(target)
    assert "missing in the file (1): head.net.0.weight" in str(info.value)
    assert "unexpected in the file (1): extra.weight" in str(info.value)
    with pytest.raises(ConfigError, match="not a medfuse checkpoint"):
        load_checkpoint(tmp_path)


@ENCODERS.register("tied_test_encoder")
class TiedEncoder(Encoder):
    """Test encoder whose two layers share one weight by construction: ``(B, 4)`` -> ``(B, 4)``."""

    def __init__(self, modality: str = "vitals") -> None:
        super().__init__()
        self.first = nn.Linear(4, 4, bias=False)
        self.second = nn.Linear(4, 4, bias=False)
        self.second.weight = self.first.weight
        self.output_dim = 4
        self.modality = modality

    def forward(self, inputs: Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=self.second(torch.tanh(self.first(inputs))))


def test_shared_tensors_are_saved_once_and_retied(tmp_path: Path) -> None:
    data = {"kind": "diagnosis", "encoders": {"vitals": {"type": "tied_test_encoder"}},
            "fusion": {"type": "concat", "dim": 4}, "head": {"type": "regression", "num_outputs": 1}}
    model, cfg = _model(data)
    target = save_checkpoint(tmp_path / "ckpt", model, cfg)
    stored = load_file(str(target / "model.safetensors"))
    assert len([k for k in stored if k.startswith("encoders.vitals.")]) == 1
    loaded = load_checkpoint(target).model
    encoder = loaded.encoders["vitals"]
    assert encoder.second.weight is encoder.first.weight
    assert torch.equal(encoder.first.weight, model.encoders["vitals"].first.weight)


def test_pretrained_towers_reload_without_their_original_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    source = tmp_path / "bert"
    source.mkdir()
    (source / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefgh"]) + "\n")
    BertTokenizerFast(vocab_file=str(source / "vocab.txt")).save_pretrained(str(source))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=16)).save_pretrained(str(source))
    data = {"kind": "dual_encoder",
            "encoders": {"image": {"type": "timm", "params": {"arch": "test_efficientnet", "weights": str(tmp_path / "w.safetensors")}},
                         "text": {"type": "hf_text", "params": {"model_dir": str(source), "max_length": 12}}},
            "embed_dim": 4}
    import timm

    torch.manual_seed(0)
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), str(tmp_path / "w.safetensors"))
    model, cfg = _model(data)
    target = save_checkpoint(tmp_path / "ckpt", model, cfg)
    shutil.rmtree(source)
    (tmp_path / "w.safetensors").unlink()
    monkeypatch.setattr("medfuse.models.encoders.pretrained.read_state_dict", _refuse)
    loaded = load_checkpoint(target).model
    images, texts = torch.randn(2, 3, 32, 32), ["abc", "hgf ed"]
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(images), model.encode_image(images), atol=1e-6)
        assert torch.allclose(loaded.encode_text(texts), model.encode_text(texts), atol=1e-6)
    assert loaded.text_encoder.max_length == 12


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a checkpoint must not read the original weight files")
