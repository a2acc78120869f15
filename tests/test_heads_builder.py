"""Heads, model configs and the builder: validation messages, every fusion, missing modalities, dropout."""

from __future__ import annotations

import pytest
import torch

from medfuse.core.config import from_dict, to_dict
from medfuse.core.errors import ConfigError
from medfuse.models import (
    ENCODERS,
    FUSIONS,
    HEADS,
    DiagnosisModel,
    DiagnosisOutput,
    EncoderConfig,
    ModelConfig,
    build_head,
    build_model,
)


@pytest.mark.parametrize(
    ("name", "k", "activation"),
    [("multiclass", 3, "softmax"), ("binary", 1, "sigmoid"), ("multilabel", 4, "sigmoid"), ("regression", 2, "identity")],
)
def test_heads_shapes_and_predict_proba(name: str, k: int, activation: str) -> None:
    torch.manual_seed(0)
    for hidden in (0, 8):
        head = build_head(name, 6, k, hidden=hidden, dropout=0.1).eval()
        features = torch.randn(5, 6)
        logits = head(features)
        assert logits.shape == (5, k) and head.activation == activation
        probs = head.predict_proba(logits)
        expected = {"softmax": logits.softmax(-1), "sigmoid": logits.sigmoid(), "identity": logits}[activation]
        assert torch.allclose(probs, expected)
    if activation == "softmax":
        assert torch.allclose(probs.sum(-1), torch.ones(5))


def test_head_errors() -> None:
    with pytest.raises(ConfigError, match="binary has exactly 1 output"):
        build_head("binary", 4, 2)
    with pytest.raises(ConfigError, match="multiclass needs >= 2"):
        build_head("multiclass", 4, 1)
    with pytest.raises(ConfigError, match="did you mean 'multiclass'"):
        build_head("multiclas", 4, 3)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        build_head("regression", 4, 1)(torch.zeros(2, 5))


def _cfg(fusion: str = "concat", **fusion_kw: object) -> dict:
    return {
        "kind": "diagnosis",
        "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_resnet"}},
            "vitals": {"type": "vitals_mlp", "params": {"num_features": 4, "dim": 16}},
            "text": {"type": "transformer_text", "params": {"width": 16, "layers": 1, "heads": 2, "max_length": 32}},
        },
        "fusion": {"type": fusion, "dim": 16, **fusion_kw},
        "head": {"type": "multiclass", "num_outputs": 3},
    }


def test_config_round_trips_through_plain_data() -> None:
    cfg = from_dict(ModelConfig, _cfg("gated", modality_dropout=0.2), where="model")
    assert isinstance(cfg.encoders["image"], EncoderConfig) and cfg.encoders["vitals"].modality == "vitals"
    assert cfg.fusion.modality_dropout == 0.2 and cfg.head.num_outputs == 3
    again = from_dict(ModelConfig, to_dict(cfg), where="model")
    assert again == cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["encoders"]["image"].update(type="tim"), "unknown encoder 'tim'; did you mean 'timm'"),
        (lambda c: c["fusion"].update(type="gatd"), "unknown fusion 'gatd'; did you mean 'gated'"),
        (lambda c: c["head"].update(type="binary"), "binary has exactly 1 output"),
        (lambda c: c["encoders"]["vitals"]["params"].update(num_featurs=3), "did you mean 'num_features'"),
        (lambda c: c["fusion"].update(params={"hiden": 3}), "unknown parameter 'hiden'"),
        (lambda c: c["fusion"].update(modality_dropout=1.0), "modality_dropout"),
        (lambda c: c.update(kind="segmentation"), "model.kind: unknown value 'segmentation'"),
        (lambda c: c.update(head=None), "needs a head"),
        (lambda c: c.update(kind="dual_encoder"), "exactly 'image' and 'text'"),
        (lambda c: c.update(encoders={}), "at least one encoder"),
        (lambda c: c.update(embed_dims=3), "did you mean 'model.embed_dim'"),
    ],
)
def test_config_errors_name_field_value_and_choices(change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _cfg()
    change(data)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(ModelConfig, data, where="model")


def test_builder_reports_missing_required_params() -> None:
    data = _cfg()
    data["encoders"]["vitals"]["params"] = {}
    with pytest.raises(ConfigError, match="num_features"):
        build_model(data)


def _batch(n: int = 3) -> dict:
    torch.manual_seed(0)
    return {
        "image": torch.randn(n, 3, 32, 32),
        "vitals": torch.randn(n, 4),
        "text": ["left effusion", "clear lungs", "cardiomegaly with edema"][:n],
    }


@pytest.mark.parametrize("fusion", sorted(FUSIONS.names()))
def test_every_fusion_builds_runs_and_ignores_absent_modalities(fusion: str) -> None:
    torch.manual_seed(0)
    model = build_model(_cfg(fusion)).eval()
    assert isinstance(model, DiagnosisModel) and model.uses_tokens == bool(getattr(FUSIONS.get(fusion), "uses_tokens", False))
    batch = _batch()
    batch["present"] = {"vitals": torch.tensor([True, False, True])}
    with torch.no_grad():
        out = model(batch)
        assert isinstance(out, DiagnosisOutput) and out.logits.shape == (3, 3) and out.fused.shape == (3, 16)
        assert torch.equal(out.features["vitals"][1], torch.zeros(16))
        # an absent sample's values (even NaN) cannot reach the output
        batch["vitals"] = batch["vitals"].clone()
        batch["vitals"][1] = float("nan")
        again = model(batch)
    assert torch.isfinite(again.logits).all()
    assert torch.allclose(again.logits, out.logits, atol=1e-6)


def test_a_modality_missing_from_the_whole_batch_is_not_encoded() -> None:
    model = build_model(_cfg("weighted")).eval()
    batch = _batch()
    del batch["image"]
    calls = []
    model.encoders["image"].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = model(batch)
    assert calls == [] and not out.present["image"].any()
    assert torch.equal(out.features["image"], torch.zeros(3, 96))
    batch["present"] = {"vitals": torch.zeros(3, dtype=torch.bool)}
    with torch.no_grad():
        only_text = model(batch)
    assert only_text.present["text"].all() and not only_text.present["vitals"].any()


def test_modality_dropout_hides_modalities_only_in_training_and_never_all() -> None:
    data = _cfg("concat", modality_dropout=0.9)
    del data["encoders"]["image"]
    model = build_model(data)
    batch = _batch()
    batch["vitals"] = torch.randn(16, 4)
    batch["text"] = ["some text"] * 16
    del batch["image"]
    torch.manual_seed(0)
    seen_absent = 0
    for _ in range(4):
        out = model.train()(batch)
        stacked = torch.stack(list(out.present.values()), dim=1)
        assert stacked.any(dim=1).all()  # never every modality of a sample
        seen_absent += int((~stacked).sum())
    assert seen_absent > 0
    with torch.no_grad():
        assert all(v.all() for v in model.eval()(batch).present.values())


def test_token_fusion_receives_token_masks() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("cross_attention")).eval()
    seen = {}

    def hook(module, args, kwargs):  # type: ignore[no-untyped-def]
        seen["tokens"] = {k: v.shape for k, v in args[0].items()}
        seen["masks"] = {k: v.shape for k, v in kwargs["token_masks"].items()}

    model.fusion.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(_batch())
    assert seen["tokens"]["image"] == (3, 1, 96)  # 32 px -> 1 x 1 feature map
    assert seen["tokens"]["vitals"] == (3, 1, 16)  # pooled vector as one token
    assert seen["tokens"]["text"][2] == 16 and seen["masks"]["text"] == seen["tokens"]["text"][:2]
    assert "vitals" not in seen["masks"]


def test_registries_list_the_parts() -> None:
    assert {"timm", "hf_text", "transformer_text", "vitals_mlp", "signal_cnn1d", "signal_transformer"} <= set(
        ENCODERS.names()
    )
    assert set(HEADS.names()) == {"binary", "multiclass", "multilabel", "regression"}


def test_padding_masks_in_the_batch_reach_the_encoder() -> None:
    from medfuse.models import Encoder, EncoderOutput

    class Recorder(Encoder):
        output_dim = 2

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.seen: object = None

        def forward(self, inputs: object) -> EncoderOutput:
            self.seen = inputs
            audio = inputs["audio"] if isinstance(inputs, dict) else inputs
            return EncoderOutput(pooled=self.scale * audio.mean(-1)[:, :2])

    from medfuse.models.fusion import build_fusion

    recorder = Recorder()
    model = DiagnosisModel({"audio": recorder}, build_fusion("concat", {"audio": 2}, 4), build_head("binary", 4, 1))
    mask = torch.tensor([[True, True], [True, False]])
    model({"audio": torch.randn(2, 2, 8), "audio_mask": mask})
    assert isinstance(recorder.seen, dict) and torch.equal(recorder.seen["audio_mask"], mask)
    model({"audio": torch.randn(2, 2, 8)})
    assert isinstance(recorder.seen, torch.Tensor)
