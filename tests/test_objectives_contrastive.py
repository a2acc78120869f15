"""CLIP and SigLIP losses: parity with per-sample reference loops and with open_clip (one process)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.objectives import ClipLoss, SigLipLoss, clip_loss, siglip_loss


def _open_clip_losses():
    """open_clip's loss.py loaded on its own (importing the package pulls in far more than the losses)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss_reference", path)
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module


def _pair(batch: int = 6, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    return image.requires_grad_(), text.requires_grad_()


def _reference_clip(image, text, scale, smoothing=0.0):
    """Per-sample log-softmax loop of the symmetric InfoNCE with label smoothing."""
    batch = image.shape[0]
    total = 0.0
    for queries, keys in ((image, text), (text, image)):
        direction = 0.0
        for i in range(batch):
            log_probs = torch.log_softmax(scale * (keys @ queries[i]), dim=0)
            nll = -log_probs[i]
            uniform = -log_probs.mean()
            direction = direction + (1 - smoothing) * nll + smoothing * uniform
        total = total + direction / batch
    return total / 2


def _reference_siglip(image, text, scale, bias):
    """Double loop of -log sigmoid(z_ij * (t <x_i, y_j> + b)) / B."""
    batch = image.shape[0]
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            z = 1.0 if i == j else -1.0
            total = total - F.logsigmoid(z * (scale * (image[i] @ text[j]) + bias))
    return total / batch


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_clip_matches_reference_loop_values_and_gradients(smoothing):
    image, text = _pair()
    scale = torch.tensor(14.3, dtype=torch.float64, requires_grad=True)
    ours = clip_loss(image, text, scale, label_smoothing=smoothing)
    ref = _reference_clip(image, text, scale, smoothing)
    torch.testing.assert_close(ours.total, ref)
    for g_ours, g_ref in zip(_grads(ours.total, (image, text, scale)), _grads(ref, (image, text, scale))):
        torch.testing.assert_close(g_ours, g_ref)
    torch.testing.assert_close(ours.total, (ours.parts["i2t"] + ours.parts["t2i"]) / 2)


def test_clip_matches_open_clip_values_and_gradients():
    open_clip_loss = _open_clip_losses()
    image, text = _pair(batch=9, dim=16, seed=1)
    scale = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    ours = clip_loss(image, text, scale).total
    ref = open_clip_loss.ClipLoss()(image, text, scale)
    torch.testing.assert_close(ours, ref)
    for g_ours, g_ref in zip(_grads(ours, (image, text, scale)), _grads(ref, (image, text, scale))):
        torch.testing.assert_close(g_ours, g_ref)


def test_siglip_matches_reference_loop_values_and_gradients():
    image, text = _pair(batch=5, dim=8, seed=2)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    ours = siglip_loss(image, text, scale, bias)
    ref = _reference_siglip(image, text, scale, bias)
    torch.testing.assert_close(ours.total, ref)
    tensors = (image, text, scale, bias)
    for g_ours, g_ref in zip(_grads(ours.total, tensors), _grads(ref, tensors)):
        torch.testing.assert_close(g_ours, g_ref)
    torch.testing.assert_close(ours.total, ours.parts["positive"] + ours.parts["negative"])


def test_siglip_matches_open_clip_values_and_gradients():
    open_clip_loss = _open_clip_losses()
    image, text = _pair(batch=12, dim=16, seed=3)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-10.0, dtype=torch.float64, requires_grad=True)
    ours = siglip_loss(image, text, scale, bias).total
    ref = open_clip_loss.SigLipLoss()(image, text, scale, bias)
    torch.testing.assert_close(ours, ref)
    tensors = (image, text, scale, bias)
    for g_ours, g_ref in zip(_grads(ours, tensors), _grads(ref, tensors)):
        torch.testing.assert_close(g_ours, g_ref)


def test_clip_module_temperature_parametrisation_and_clamp():
    loss = ClipLoss()
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss.scale().item() == pytest.approx(1 / 0.07)
    image, text = _pair()
    out = loss(image.float(), text.float())
    out.total.backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs().item() > 0

    with torch.no_grad():
        loss.logit_scale.fill_(math.log(500.0))
    loss.logit_scale.grad = None
    loss(image.detach().float(), text.detach().float()).total.backward()
    assert loss.scale().item() == pytest.approx(100.0)
    assert loss.logit_scale.grad.item() == 0.0  # above the cap the temperature stops moving


def test_clip_module_normalises_and_can_freeze_temperature():
    image, text = _pair()
    frozen = ClipLoss(learn_temperature=False, init_temperature=0.05)
    assert list(frozen.parameters()) == [] and "logit_scale" in dict(frozen.named_buffers())
    unit = frozen(image, text).total
    scaled = frozen(3.0 * image, 0.5 * text).total
    torch.testing.assert_close(unit, scaled.to(unit.dtype))
    torch.testing.assert_close(unit, clip_loss(image, text, 20.0).total)


def test_siglip_module_initialisation_and_gradients():
    loss = SigLipLoss()
    assert loss.scale().item() == pytest.approx(10.0)
    assert loss.logit_bias.item() == pytest.approx(-10.0)
    image, text = _pair()
    out = loss(image.float(), text.float())
    out.total.backward()
    assert loss.logit_scale.grad.abs().item() > 0 and loss.logit_bias.grad.abs().item() > 0
    assert set(out.parts) == {"positive", "negative", "logit_scale", "logit_bias"}


def test_perfect_alignment_scores_lower_than_random():
    image, _ = _pair(batch=8, dim=32)
    _, shuffled = _pair(batch=8, dim=32, seed=9)
    assert clip_loss(image, image, 50.0).total < clip_loss(image, shuffled, 50.0).total
    assert siglip_loss(image, image, 10.0, -5.0).total < siglip_loss(image, shuffled, 10.0, -5.0).total


def test_bad_inputs_raise_config_errors():
    image, text = _pair()
    with pytest.raises(ConfigError, match="text_embeds"):
        clip_loss(image, text[:3], 10.0)
    with pytest.raises(ConfigError, match=r"\(B, D\)"):
        siglip_loss(image[None], text[None], 10.0, 0.0)
    with pytest.raises(ConfigError, match="gather_with_grad"):
        ClipLoss(local_loss=True, gather_with_grad=False)
    with pytest.raises(ConfigError, match="init_temperature"):
        ClipLoss(init_temperature=0.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        clip_loss(image, text, 10.0, label_smoothing=1.5)
