"""Every loss is registered, builds by name from config keywords, and returns a LossOutput."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medfuse.core.errors import ConfigError
from medfuse.objectives import LOSSES, LossOutput, build_loss

B, D, C = 4, 6, 3


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _embeds(seed: int, dim: int = D) -> torch.Tensor:
    return torch.randn(B, dim, generator=_g(seed), requires_grad=True)


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, requires_grad=True)


class _DotScorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.scale * (image * text).sum(-1)


# name -> (constructor keywords, callable producing the forward arguments)
CALLS = {
    "clip": ({"init_temperature": 0.05}, lambda: (_embeds(0), _embeds(1))),
    "siglip": ({}, lambda: (_embeds(0), _embeds(1))),
    "itm": ({"strategy": "argmax"}, lambda: (_DotScorer(), _embeds(0), _embeds(1))),
    "mlm": (
        {},
        lambda: (torch.randn(B, 5, 11, requires_grad=True), torch.tensor([[1, -100, 3, -100, 2]] * B)),
    ),
    "cycle": ({"snn_weight": 1.0}, lambda: (_embeds(0), _embeds(1))),
    "adversarial": ({"dim": D}, lambda: ({"image": _embeds(0), "text": _embeds(1)},)),
    "distill_logits": (
        {"temperature": 2.0},
        lambda: (_embeds(0, C), _embeds(1, C), torch.tensor([0, 1, 2, 0])),
    ),
    "distill_embed": ({"student_dim": D, "teacher_dim": 8}, lambda: (_embeds(0), _embeds(1, 8))),
    "distill_relational": ({}, lambda: (_embeds(0), _embeds(1, 8))),
    "cross_entropy": ({"label_smoothing": 0.1}, lambda: (_embeds(0, C), torch.tensor([0, 1, 2, 1]))),
    "bce": (
        {"pos_weight": [1.0, 2.0, 1.0]},
        lambda: (_embeds(0, C), torch.tensor([[1.0, 0.0, float("nan")]] * B)),
    ),
    "mse": ({}, lambda: (_embeds(0, C), torch.zeros(B, C))),
    "multitask_fixed": ({"weights": {"a": 0.5}}, lambda: ({"a": _scalar(2.0), "b": _scalar(0.5)},)),
    "multitask_uncertainty": ({"tasks": ["a", "b"]}, lambda: ({"a": _scalar(2.0), "b": _scalar(0.5)},)),
}


def test_every_family_is_registered():
    assert set(LOSSES.names()) >= set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_built_losses_return_a_finite_loss_output_with_gradients(name):
    kwargs, make_args = CALLS[name]
    loss = build_loss(name, **kwargs)
    args = make_args()
    out = loss(*args)
    assert isinstance(out, LossOutput)
    assert out.total.ndim == 0 and torch.isfinite(out.total)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in out.parts.values())
    out.total.backward()
    flat = [v for a in args for v in (a.values() if isinstance(a, dict) else [a])]
    leaves = [t for t in flat if isinstance(t, torch.Tensor) and t.requires_grad]
    leaves += list(loss.parameters())
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves)
    assert LOSSES.describe(name)


def test_unknown_names_and_arguments_fail_with_help():
    with pytest.raises(ConfigError, match="did you mean 'clip'"):
        build_loss("clp")
    with pytest.raises(ConfigError, match="accepted arguments: .*init_temperature"):
        build_loss("clip", temperature=0.1)
    with pytest.raises(ConfigError, match="loss 'adversarial'.*dim"):
        build_loss("adversarial")
