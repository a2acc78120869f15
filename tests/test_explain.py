"""Explanations: Grad-CAM finds a planted signal, rollout is row-stochastic and matches timm's attention,
Shapley values add up, gradient x input matches finite differences, overlays are RGB images."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from medfuse.evaluate.explain import (
    attention_rollout,
    grad_cam,
    jet,
    modality_contributions,
    overlay,
    png_base64,
    saliency_gallery,
    token_attributions,
)
from medfuse.evaluate.report import render_report
from medfuse.models import DiagnosisModel, Encoder, EncoderOutput
from medfuse.models.encoders import TimmImageEncoder, TransformerTextEncoder
from medfuse.models.fusion import build_fusion
from medfuse.models.heads import build_head

SQUARE = 14


def _images(corners: list[tuple[int, int] | None], generator: torch.Generator) -> Tensor:
    """Return (N, 1, 64, 64) noise images with a bright square at each corner given (None: no square)."""
    images = torch.rand(len(corners), 1, 64, 64, generator=generator) * 0.3
    for i, corner in enumerate(corners):
        if corner is not None:
            images[i, 0, corner[0] : corner[0] + SQUARE, corner[1] : corner[1] + SQUARE] = 1.0
    return images


@pytest.fixture(scope="module")
def square_detector() -> DiagnosisModel:
    """A timm CNN (random, frozen) whose fusion and head learned to tell images with a square anywhere."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    positive = torch.rand(96, generator=generator) < 0.5
    corners = [tuple(int(v) for v in torch.randint(0, 64 - SQUARE, (2,), generator=generator)) if p else None
               for p in positive]
    images = _images(corners, generator)  # type: ignore[arg-type]
    encoder = TimmImageEncoder("test_resnet", in_chans=1, model_kwargs={"output_stride": 8}, output_tokens=False,
                               mean=[0.0], std=[1.0])
    fusion = build_fusion("concat", {"image": encoder.output_dim}, 16)
    head = build_head("binary", 16, 1)
    model = DiagnosisModel({"image": encoder}, fusion, head).eval()
    with torch.no_grad():
        features = encoder(images).pooled
    present = {"image": torch.ones(len(images), dtype=torch.bool)}
    optimiser = torch.optim.Adam([*fusion.parameters(), *head.parameters()], lr=3e-2)
    for _ in range(80):
        logits = head(fusion({"image": features}, present)).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, positive.float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.1  # the head learned the task; otherwise the saliency test means nothing
    return model


def test_grad_cam_peaks_in_the_quadrant_holding_the_signal(square_detector: DiagnosisModel) -> None:
    corners = [(2, 2), (2, 48), (48, 2), (48, 48), (40, 12)]
    images = _images(corners, torch.Generator().manual_seed(1))  # type: ignore[arg-type]
    weights_before = [p.detach().clone() for p in square_detector.parameters()]
    saliency = grad_cam(square_detector, {"image": images})
    maps = saliency.maps
    assert maps.shape == (5, 8, 8) and float(maps.min()) >= 0 and torch.allclose(maps.amax((1, 2)), torch.ones(5))
    assert torch.equal(saliency.target, torch.zeros(5, dtype=torch.long))
    for (row, col), cam in zip(corners, maps):
        rows = slice(4, None) if row >= 32 else slice(0, 4)
        cols = slice(4, None) if col >= 32 else slice(0, 4)
        peak = int(cam.argmax())
        assert (peak // 8 >= 4, peak % 8 >= 4) == (row >= 32, col >= 32)
        assert float(cam[rows, cols].sum() / cam.sum()) > 0.3  # chance is 0.25
    assert all(torch.equal(a, b) for a, b in zip(weights_before, square_detector.parameters()))
    assert not square_detector.training
    # the bound method is back in place after the capture
    assert "forward_features" not in vars(square_detector.encoders["image"].model)


def test_grad_cam_target_layer_and_errors(square_detector: DiagnosisModel) -> None:
    images = _images([(2, 2)], torch.Generator().manual_seed(2))
    earlier = grad_cam(square_detector, {"image": images}, target_layer="layer1")
    assert earlier.maps.shape[-1] > 8  # an earlier, finer feature map
    with pytest.raises(ValueError, match="outside the model's 1 outputs"):
        grad_cam(square_detector, {"image": images}, target=3)
    with pytest.raises(TypeError, match="batch mapping"):
        grad_cam(square_detector, images)


def test_gallery_entries_render_in_the_report(square_detector: DiagnosisModel) -> None:
    images = _images([(2, 2), (48, 48), None], torch.Generator().manual_seed(3))
    entries = saliency_gallery(square_detector, {"image": images}, class_names=["finding"], limit=2)
    assert len(entries) == 2 and entries[0]["method"] == "grad-cam" and entries[0]["label"] == "finding"
    assert 0.0 <= entries[0]["prob"] <= 1.0
    overlay_png = Image.open(io.BytesIO(base64.b64decode(entries[0]["overlay_png"])))
    assert overlay_png.size == (64, 64) and overlay_png.mode == "RGB"
    html = render_report({"artifacts": {"gradcam": entries}})
    assert html.count("data:image/png;base64,") == 4 and 'id="gradcam" class="evaluated"' in html


def _unfused_attention(backbone: Any, images: Tensor) -> list[Tensor]:
    """Return timm's own attention probabilities (B, H, N, N) per block, computed without fused SDPA."""
    captured: list[Tensor] = []
    handles = []
    for block in backbone.blocks:
        block.attn.fused_attn = False
        handles.append(block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out)))
    try:
        with torch.no_grad():
            backbone.forward_features(images)
    finally:
        for block, handle in zip(backbone.blocks, handles):
            handle.remove()
            block.attn.fused_attn = True
    return captured


def test_attention_rollout_matches_a_direct_computation() -> None:
    torch.manual_seed(0)
    encoder = TimmImageEncoder("test_vit", img_size=64, in_chans=1).eval()
    images = torch.randn(2, 1, 64, 64)
    rollout = attention_rollout(encoder, images)
    tokens = rollout.joint.shape[-1]
    assert rollout.prefix_tokens == 1 and rollout.maps.shape == (2, 4, 4) and tokens == 17
    assert torch.allclose(rollout.joint.sum(-1), torch.ones(2, tokens), atol=1e-5)
    class_share = rollout.joint[:, 0, :1].sum(-1)
    assert torch.allclose(rollout.maps.sum((1, 2)) + class_share, torch.ones(2), atol=1e-5)
    expected = torch.eye(tokens).expand(2, -1, -1)
    for attn in _unfused_attention(encoder.model, images):  # Abnar & Zuidema, one layer at a time
        step = 0.5 * attn.mean(1) + 0.5 * torch.eye(tokens)
        expected = (step / step.sum(-1, keepdim=True)) @ expected
    assert torch.allclose(rollout.joint, expected, atol=1e-5)
    with pytest.raises(ValueError, match="use grad_cam"):
        attention_rollout(TimmImageEncoder("test_resnet", in_chans=1), images)


class VectorEncoder(Encoder):
    """A linear encoder of a (B, F) tensor, for fusion tests."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(in_dim, out_dim)
        self.output_dim = out_dim

    def forward(self, inputs: object) -> EncoderOutput:
        assert isinstance(inputs, Tensor)
        return EncoderOutput(pooled=self.net(inputs))


def _fusion_model(activation: str, hidden: int) -> DiagnosisModel:
    torch.manual_seed(0)
    encoders = {name: VectorEncoder(5, 6) for name in ("a", "b", "c")}
    fusion = build_fusion("concat", dict.fromkeys(encoders, 6), 8, activation=activation)
    return DiagnosisModel(encoders, fusion, build_head("multiclass", 8, 3, hidden=hidden)).eval()


def _batch() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(4)
    batch: dict[str, Any] = {m: torch.randn(4, 5, generator=generator) for m in ("a", "b", "c")}
    batch["present"] = {"c": torch.tensor([True, False, True, True])}
    return batch


def _logit(model: DiagnosisModel, batch: Mapping[str, Any], keep: set[str], target: Tensor) -> Tensor:
    present = {m: torch.ones(4, dtype=torch.bool) & (m in keep) for m in ("a", "b", "c")}
    present["c"] = present["c"] & batch["present"]["c"]
    with torch.no_grad():
        return model({**batch, "present": present}).logits.gather(1, target[:, None]).squeeze(1)


def test_shapley_of_an_additive_model_equals_each_modality_alone() -> None:
    model, batch = _fusion_model("identity", 0), _batch()
    result = modality_contributions(model, batch)
    assert result.shapley is not None and result.shapley.shape == (4, 3)
    alone = torch.stack([_logit(model, batch, {m}, result.target) - result.empty for m in ("a", "b", "c")], 1)
    assert torch.allclose(result.shapley, alone, atol=1e-5)
    assert torch.allclose(result.occlusion, alone, atol=1e-5)
    assert float(result.shapley[1, 2].abs()) == 0.0  # sample 1 has no modality c


def test_shapley_values_add_up_for_a_nonlinear_fusion() -> None:
    model, batch = _fusion_model("gelu", 16), _batch()
    result = modality_contributions(model, batch, target=2)
    assert result.shapley is not None and torch.equal(result.target, torch.full((4,), 2))
    assert torch.allclose(result.shapley.sum(1), result.full - result.empty, atol=1e-5)
    assert float(result.shapley[1, 2].abs()) == 0.0
    without_b = _logit(model, batch, {"a", "c"}, result.target)
    assert torch.allclose(result.occlusion[:, 1], result.full - without_b, atol=1e-6)
    assert not torch.allclose(result.shapley, result.occlusion, atol=1e-3)  # interactions make them differ


def test_shapley_refuses_too_many_modalities() -> None:
    encoders = {name: VectorEncoder(2, 3) for name in "abcde"}
    fusion = build_fusion("concat", dict.fromkeys(encoders, 3), 4)
    model = DiagnosisModel(encoders, fusion, build_head("binary", 4, 1))
    with pytest.raises(ValueError, match="exceed 4"):
        modality_contributions(model, {m: torch.zeros(1, 2) for m in "abcde"})
    assert modality_contributions(model, {m: torch.zeros(1, 2) for m in "abcde"}, shapley=False).shapley is None


def test_token_attributions_match_finite_differences() -> None:
    torch.manual_seed(0)
    text = TransformerTextEncoder(width=16, layers=1, heads=2, max_length=32)
    fusion = build_fusion("concat", {"text": 16}, 8)
    model = DiagnosisModel({"text": text}, fusion, build_head("multiclass", 8, 2)).double().eval()
    texts = ["no effusion", "large right effusion"]
    out = token_attributions(model, {"text": texts}, target=1)
    assert [a.tokens for a in out] == [["<bos>", *"no effusion", "<eos>"], ["<bos>", *"large right effusion", "<eos>"]]
    assert all(a.scores.shape == (len(a.tokens),) and a.target == 1 for a in out)
    encoded = text.tokenize(texts)
    eps = 1e-6
    for sample, position in ((0, 3), (1, 7), (1, 0)):
        def scale(_m: nn.Module, _i: Any, emb: Tensor, s: int = sample, p: int = position) -> Tensor:
            emb = emb.clone()
            emb[s, p] *= 1 + eps
            return emb

        with torch.no_grad():
            base = model({"text": encoded}).logits[sample, 1]
            handle = text.token_embedding.register_forward_hook(scale)
            try:
                moved = model({"text": encoded}).logits[sample, 1]
            finally:
                handle.remove()
        assert float((moved - base) / eps) == pytest.approx(float(out[sample].scores[position]), rel=1e-4, abs=1e-9)


def test_overlay_and_png() -> None:
    assert np.allclose(jet(np.array([0.0, 0.5, 1.0])), [[0, 0, 0.5], [0.5, 1, 0.5], [0.5, 0, 0]])
    cam = np.zeros((4, 4))
    cam[0, 3] = 1.0  # hottest in the top-right corner
    grey = overlay(np.full((32, 48), 0.5), cam, alpha=1.0)
    colour = overlay(np.full((32, 48, 3), 0.5), torch.as_tensor(cam), alpha=0.5)
    assert grey.shape == colour.shape == (32, 48, 3) and grey.dtype == colour.dtype == np.uint8
    assert grey[0, -1, 0] > grey[0, -1, 2] and grey[-1, 0, 2] > grey[-1, 0, 0]  # red where hot, blue where cold
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64(colour)))))
    assert np.array_equal(decoded, colour)
    floats = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64(np.full((3, 5), 1.0))))))
    assert floats.shape == (3, 5) and int(floats.min()) == 255
    with pytest.raises(ValueError, match="image must be"):
        overlay(np.zeros((4, 4, 2)), cam)
    with pytest.raises(ValueError, match="cam must be"):
        overlay(np.zeros((4, 4)), np.zeros((1, 4, 4)))
