"""ONNX export: graphs agree with PyTorch (<= 1e-4) on real inputs and other batch sizes; int8 variants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from medfuse.core.errors import ConfigError  # noqa: E402
from medfuse.export import export_checkpoint  # noqa: E402
from tests.deploy_fixtures import VITALS, diagnosis_checkpoint, dual_encoder_checkpoint, png_bytes  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: tiny models gain nothing from more, and a loaded machine loses a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _run(path: Path, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(outputs, feeds)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("export")
    ckpt = diagnosis_checkpoint(root / "run", training_folder=True, fusion="gated")
    return ckpt, export_checkpoint(ckpt, root / "onnx"), root / "onnx"


def _real_inputs(ckpt: Path) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """A batch of 3 uploads-like rows: PyTorch batch (texts as strings) and the matching ONNX feeds."""
    from medfuse.data.images import decode_image_bytes
    from medfuse.index import Embedder, open_checkpoint

    embedder = Embedder(open_checkpoint(ckpt))
    images = torch.stack([embedder.prepare(decode_image_bytes(png_bytes(seed=s), channels=1)) for s in range(3)])
    texts = ["Small right effusion.", "No acute process. Heart size normal.", "Left lower lobe consolidation"]
    vitals = torch.tensor([[88, 18, 97, 37.0, 7.5, 4.0], [120, 30, float("nan"), 38.9, 15.0, 80.0],
                           [70, 14, 99, 36.6, float("nan"), float("nan")]], dtype=torch.float32)
    tokens = embedder.model.encoders["text"].tokenize(texts)
    feeds = {"image": images.numpy(), "input_ids": tokens["input_ids"].numpy(),
             "attention_mask": tokens["attention_mask"].numpy(), "vitals": vitals.numpy(),
             "image_present": np.ones(3, bool), "text_present": np.ones(3, bool), "vitals_present": np.ones(3, bool)}
    return embedder.model, {"image": images, "text": texts, "vitals": vitals}, feeds


def test_graphs_match_pytorch(exported: tuple[Path, dict[str, Any], Path]) -> None:
    ckpt, report, out = exported
    assert set(report["graphs"]) == {"model", "image_tower", "text_tower", "classifier"}
    for name, graph in report["graphs"].items():
        assert (out / graph["file"]).is_file(), name
        assert graph["within_tolerance"] and graph["max_abs_diff"] <= 1e-4, (name, graph["max_abs_diff"])
    assert json.loads((out / "export.json").read_text()) == {k: v for k, v in report.items() if k != "out"}
    assert report["opset"] >= 17 and report["vitals"] == VITALS and report["temperature"] == 1.5
    assert json.loads((out / "tokenizer.json").read_text())["type"] == "byte"

    model, batch, feeds = _real_inputs(ckpt)
    with torch.no_grad():
        expected = model(batch)
    logits, fused = _run(out / "model.onnx", feeds, ["logits", "fused"])
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(fused, expected.fused.numpy(), atol=1e-4)
    # the towers and the classifier compose to the whole model
    image_features = _run(out / "image_tower.onnx", {"image": feeds["image"]})[0]
    text_features = _run(out / "text_tower.onnx", {k: feeds[k] for k in ("input_ids", "attention_mask")})[0]
    np.testing.assert_allclose(image_features, expected.features["image"].numpy(), atol=1e-4)
    split = {"image_features": image_features, "text_features": text_features, "vitals": feeds["vitals"],
             **{k: v for k, v in feeds.items() if k.endswith("_present")}}
    np.testing.assert_allclose(_run(out / "classifier.onnx", split, ["logits"])[0], logits, atol=1e-4)


def test_presence_masks_equal_absent_inputs(exported: tuple[Path, dict[str, Any], Path]) -> None:
    ckpt, _, out = exported
    model, batch, feeds = _real_inputs(ckpt)
    with torch.no_grad():
        without_text = model({"image": batch["image"], "vitals": batch["vitals"]}).logits.numpy()
        without_image = model({"text": batch["text"], "vitals": batch["vitals"]}).logits.numpy()
    no_text = {**feeds, "text_present": np.zeros(3, bool)}
    no_image = {**feeds, "image": np.zeros_like(feeds["image"]), "image_present": np.zeros(3, bool)}
    np.testing.assert_allclose(_run(out / "model.onnx", no_text, ["logits"])[0], without_text, atol=1e-4)
    np.testing.assert_allclose(_run(out / "model.onnx", no_image, ["logits"])[0], without_image, atol=1e-4)
    assert np.abs(without_text - without_image).max() > 1e-3  # the masks change the answer


def test_int8_is_smaller_and_measured(tmp_path: Path) -> None:
    from medfuse.data.synth import generate_synthetic

    ckpt = diagnosis_checkpoint(tmp_path / "run")
    generate_synthetic(tmp_path / "synth", n=16, image_size=32)
    report = export_checkpoint(ckpt, tmp_path / "onnx", int8=True, calibration_manifest=tmp_path / "synth" / "manifest.csv",
                               latency_budget_s=0.2)
    for name, graph in report["int8"]["graphs"].items():
        assert graph["bytes_int8"] < graph["bytes_fp32"], name
        assert (tmp_path / "onnx" / graph["file"]).is_file()
    evaluation = report["evaluation"]
    assert evaluation["split"] == "val" and evaluation["calibration"]["split"] == "train"
    assert set(evaluation["metrics"]) == {"pytorch", "onnx_fp32", "onnx_int8", "onnx_int8_static"}
    assert evaluation["metrics"]["onnx_fp32"]["accuracy"] == evaluation["metrics"]["pytorch"]["accuracy"]
    assert evaluation["max_abs_logit_diff"]["onnx_fp32"] <= 1e-4
    assert evaluation["static_bytes"] < report["graphs"]["model"]["bytes"]
    for batch in ("batch_1", "batch_8"):
        row = report["latency_ms"][batch]
        assert set(row) == {"pytorch", "onnx_fp32", "onnx_int8", "onnx_int8_static"}
        assert all(v["median"] > 0 for v in row.values())
    json.loads((tmp_path / "onnx" / "export.json").read_text())  # strict JSON: undefined metrics are null


def test_dual_encoder_towers(tmp_path: Path) -> None:
    from medfuse.index import Embedder, open_checkpoint

    ckpt = dual_encoder_checkpoint(tmp_path / "clip")
    report = export_checkpoint(ckpt, tmp_path / "onnx")
    assert set(report["graphs"]) == {"image_tower", "text_tower"}
    embedder = Embedder(open_checkpoint(ckpt))
    tokens = embedder.model.text_encoder.tokenize(["a", "pleural effusion on the right", "normal"])
    got = _run(tmp_path / "onnx" / "text_tower.onnx", {k: v.numpy() for k, v in tokens.items()})[0]
    np.testing.assert_allclose(got, embedder.texts(["a", "pleural effusion on the right", "normal"]).numpy(), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_hugging_face_text_tower_and_tokenizer(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from medfuse.core.config import from_dict
    from medfuse.models import ModelConfig, build_model, save_checkpoint
    from tests.deploy_fixtures import IMAGE

    source = tmp_path / "bert"
    source.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "effusion", "right", "left", "no", "normal", "small"]
    (source / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(source / "vocab.txt")).save_pretrained(str(source))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=32)).save_pretrained(str(source))
    cfg = from_dict(ModelConfig, {"kind": "dual_encoder", "embed_dim": 8, "encoders": {
        "image": IMAGE, "text": {"type": "hf_text", "params": {"model_dir": str(source), "max_length": 16}}}}, where="model")
    save_checkpoint(tmp_path / "clip", build_model(cfg).eval(), cfg,
                    preprocessing={"image_size": 32, "channels": 1, "mean": [0.45], "std": [0.23]})
    report = export_checkpoint(tmp_path / "clip", tmp_path / "onnx")
    assert report["graphs"]["text_tower"]["max_abs_diff"] <= 1e-4
    assert report["tokenizer"] == {"type": "huggingface", "dir": "tokenizer", "max_length": 16}
    # the exported tokenizer and graph reproduce the checkpoint's text embeddings on their own
    tokenizer = BertTokenizerFast.from_pretrained(str(tmp_path / "onnx" / "tokenizer"))
    texts = ["small right effusion", "normal"]
    feeds = {k: v for k, v in tokenizer(texts, padding=True, return_tensors="np").items() if k != "token_type_ids"}
    from medfuse.index import Embedder, open_checkpoint

    expected = Embedder(open_checkpoint(tmp_path / "clip")).texts(texts).numpy()
    np.testing.assert_allclose(_run(tmp_path / "onnx" / "text_tower.onnx", {k: v.astype(np.int64) for k, v in feeds.items()})[0],
                               expected, atol=1e-4)


@pytest.mark.slow
def test_attention_fusion_exports_through_torch_export(tmp_path: Path) -> None:
    from medfuse.core.config import from_dict
    from medfuse.models import ModelConfig, build_model, save_checkpoint
    from tests.deploy_fixtures import TEXT

    cfg = from_dict(ModelConfig, {"kind": "diagnosis", "fusion": {"type": "cross_attention", "dim": 16},
                                  "head": {"type": "binary", "num_outputs": 1},
                                  "encoders": {"text": TEXT, "vitals": {"type": "vitals_mlp",
                                                                        "params": {"num_features": 3, "hidden": [8], "dim": 8}}}},
                    where="model")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "xattn", model, cfg, extra={"data": {"text": "report", "vitals": ["a", "b", "c"], "label": "y"}})
    report = export_checkpoint(tmp_path / "xattn", tmp_path / "onnx")
    graph = report["graphs"]["model"]
    assert (graph["exporter"], graph["opset"]) == ("dynamo", 18) and graph["max_abs_diff"] <= 1e-4
    assert "classifier" not in report["graphs"]  # token fusions read tokens, not tower vectors
    texts = ["right effusion", "no acute process at all today", "nodule"]
    vitals = torch.tensor([[1.0, float("nan"), 0.5], [0.1, 0.2, 0.3], [float("nan")] * 3])
    tokens = model.encoders["text"].tokenize(texts)
    feeds = {"input_ids": tokens["input_ids"].numpy(), "attention_mask": tokens["attention_mask"].numpy(),
             "vitals": vitals.numpy(), "text_present": np.array([True, False, True]), "vitals_present": np.array([True, True, False])}
    with torch.no_grad():
        expected = model({"text": texts, "vitals": vitals, "present": {"text": torch.tensor([True, False, True]),
                                                                       "vitals": torch.tensor([True, True, False])}}).logits
    np.testing.assert_allclose(_run(tmp_path / "onnx" / "model.onnx", feeds, ["logits"])[0], expected.numpy(), atol=1e-4)


def test_refuses_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_checkpoint(tmp_path, tmp_path / "out", fmt="tflite")
