"""Cycle consistency (CyCLIP terms, soft-nearest-neighbour cycle) and adversarial modality alignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medfuse.core.errors import ConfigError
from medfuse.objectives import (
    AdversarialAlignmentLoss,
    CycleConsistencyLoss,
    cycle_back_loss,
    cyclip_losses,
    dann_lambda,
    grad_reverse,
)


def _pair(batch: int = 6, dim: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=-1)
    return image, text


def test_cyclip_terms_match_the_double_sum_and_the_official_scaled_form():
    image, text = _pair()
    in_modal, cross_modal = cyclip_losses(image, text)
    batch = image.shape[0]
    loop_in = (
        sum((image[j] @ image[k] - text[j] @ text[k]) ** 2 for j in range(batch) for k in range(batch))
        / batch
    )
    loop_cross = (
        sum((image[j] @ text[k] - image[k] @ text[j]) ** 2 for j in range(batch) for k in range(batch))
        / batch
    )
    torch.testing.assert_close(in_modal, loop_in)
    torch.testing.assert_close(cross_modal, loop_cross)
    # CyCLIP's train.py: squared differences of scaled logits, mean, divided by scale^2, times the batch.
    scale = 1 / 0.07
    official_in = (scale * image @ image.T - scale * text @ text.T).square().mean() / scale**2 * batch
    torch.testing.assert_close(in_modal, official_in)


def test_cycle_back_loss_matches_a_loop_over_queries():
    source, target = _pair(batch=5, seed=1)
    tau = 0.2
    expected = 0.0
    for i in range(5):
        alpha = torch.softmax(
            torch.stack([-(source[i] - target[j]).square().sum() / tau for j in range(5)]), 0
        )
        neighbour = (alpha.unsqueeze(1) * target).sum(0)
        beta_logits = torch.stack([-(neighbour - source[k]).square().sum() / tau for k in range(5)])
        expected = expected - torch.log_softmax(beta_logits, 0)[i]
    torch.testing.assert_close(cycle_back_loss(source, target, tau), expected / 5)


def test_cycle_module_is_zero_for_identical_modalities_and_has_gradients():
    image, text = _pair()
    same = CycleConsistencyLoss(snn_weight=0.0)(image, image)
    assert same.total.item() == pytest.approx(0.0, abs=1e-12)
    loss = CycleConsistencyLoss(in_modal_weight=0.25, cross_modal_weight=0.5, snn_weight=2.0, temperature=0.5)
    image.requires_grad_()
    out = loss(image, text)
    expected = 0.25 * out.parts["in_modal"] + 0.5 * out.parts["cross_modal"] + 2.0 * out.parts["snn"]
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    only_snn = CycleConsistencyLoss(in_modal_weight=0.0, cross_modal_weight=0.0, snn_weight=1.0)(image, text)
    assert set(only_snn.parts) == {"snn"}


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    y = grad_reverse(x, 0.3)
    torch.testing.assert_close(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * weights)
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) > 0.9999


def test_adversarial_loss_trains_the_discriminator_and_reverses_the_encoder_gradient():
    torch.manual_seed(0)
    loss = AdversarialAlignmentLoss(dim=4, modalities=("image", "text"), hidden_dim=8, grl_lambda=0.5)
    image = torch.randn(5, 4, requires_grad=True)
    text = torch.randn(3, 4, requires_grad=True)
    out = loss({"image": image, "text": text})
    out.total.backward()
    reversed_image_grad, disc_grad = image.grad.clone(), loss.discriminator.net[0].weight.grad.clone()

    # The same cross-entropy without the reversal layer.
    loss.zero_grad()
    image.grad = None
    logits = loss.discriminator(torch.cat([image, text]))
    plain = F.cross_entropy(logits, torch.tensor([0] * 5 + [1] * 3))
    torch.testing.assert_close(out.total, plain)
    plain.backward()
    torch.testing.assert_close(reversed_image_grad, -0.5 * image.grad)
    torch.testing.assert_close(disc_grad, loss.discriminator.net[0].weight.grad)
    assert 0.0 <= out.parts["accuracy"].item() <= 1.0


def test_alignment_config_errors():
    with pytest.raises(ConfigError, match="every weight is 0"):
        CycleConsistencyLoss(in_modal_weight=0.0, cross_modal_weight=0.0, snn_weight=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        cycle_back_loss(torch.randn(3, 2), torch.randn(3, 2), temperature=0.0)
    loss = AdversarialAlignmentLoss(dim=2)
    with pytest.raises(ConfigError, match="unknown modalities"):
        loss({"image": torch.randn(2, 2), "audio": torch.randn(2, 2)})
    with pytest.raises(ConfigError, match="distinct"):
        AdversarialAlignmentLoss(dim=2, modalities=("image", "image"))
