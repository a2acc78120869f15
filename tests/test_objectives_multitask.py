"""Fixed and uncertainty-based task weighting."""

from __future__ import annotations

import math

import pytest
import torch

from medfuse.core.errors import ConfigError
from medfuse.objectives import FixedWeighting, LossOutput, UncertaintyWeighting


def _losses():
    clip = LossOutput(
        torch.tensor(2.0, requires_grad=True), {"i2t": torch.tensor(1.5), "t2i": torch.tensor(2.5)}
    )
    return {"clip": clip, "diagnosis": torch.tensor(0.5, requires_grad=True)}


def test_fixed_weighting_sums_weighted_losses_and_keeps_parts():
    losses = _losses()
    out = FixedWeighting(weights={"clip": 0.25}, default_weight=2.0)(losses)
    assert out.total.item() == pytest.approx(0.25 * 2.0 + 2.0 * 0.5)
    assert out.parts["clip"].item() == 2.0 and out.parts["diagnosis"].item() == 0.5
    assert out.parts["clip/weight"].item() == 0.25 and out.parts["diagnosis/weight"].item() == 2.0
    assert out.parts["clip/i2t"].item() == 1.5
    out.total.backward()
    assert losses["clip"].total.grad.item() == pytest.approx(0.25)
    assert set(out.scalars()) == {"total", *out.parts}


def test_fixed_weighting_sums_only_the_tasks_present():
    out = FixedWeighting(weights={"clip": 1.0, "vqa": 3.0})({"clip": torch.tensor(1.25)})
    assert out.total.item() == 1.25 and "vqa" not in out.parts


def test_uncertainty_weighting_follows_kendall_and_its_gradient():
    weighting = UncertaintyWeighting(["clip", "diagnosis"], init_log_var=0.3)
    with torch.no_grad():
        weighting.log_vars["diagnosis"].fill_(-0.4)
    out = weighting(_losses())
    expected = math.exp(-0.3) * 2.0 + 0.3 + math.exp(0.4) * 0.5 - 0.4
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    assert out.parts["clip/weight"].item() == pytest.approx(math.exp(-0.3), rel=1e-6)
    assert out.parts["diagnosis/log_var"].item() == pytest.approx(-0.4)
    out.total.backward()
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L: zero where s = log L, the learned noise level.
    assert weighting.log_vars["clip"].grad.item() == pytest.approx(1 - math.exp(-0.3) * 2.0, rel=1e-5)
    assert weighting.log_vars["diagnosis"].grad.item() == pytest.approx(1 - math.exp(0.4) * 0.5, rel=1e-5)


def test_uncertainty_weights_converge_to_the_loss_scale():
    weighting = UncertaintyWeighting(["a", "b"])
    for _ in range(100):  # plain gradient descent; the curvature at the optimum is 1, so lr 0.2 contracts
        weighting.zero_grad()
        weighting({"a": torch.tensor(4.0), "b": torch.tensor(0.25)}).total.backward()
        with torch.no_grad():
            for log_var in weighting.parameters():
                log_var -= 0.2 * log_var.grad
    assert weighting.log_vars["a"].item() == pytest.approx(math.log(4.0), abs=1e-3)
    assert weighting.log_vars["b"].item() == pytest.approx(math.log(0.25), abs=1e-3)


def test_multitask_errors():
    with pytest.raises(ConfigError, match="no learned weight"):
        UncertaintyWeighting(["clip"])(_losses())
    with pytest.raises(ConfigError, match="no task losses"):
        FixedWeighting()({})
    with pytest.raises(ConfigError, match="scalar"):
        FixedWeighting()({"clip": torch.ones(3)})
    with pytest.raises(ConfigError, match="weight"):
        FixedWeighting(weights={"clip": -1.0})
