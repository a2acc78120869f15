"""Adaptation strategies: only the intended parameters change after training steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medfuse.core.errors import ConfigError
from medfuse.models import build_model
from medfuse.objectives import LossOutput
from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig, StrategyConfig
from medfuse.train.loop import fit
from medfuse.train.strategies import apply_strategy, has_lora, merge_lora

CFG = {
    "kind": "diagnosis",
    "encoders": {"image": {"type": "timm", "params": {"arch": "test_vit", "in_chans": 1, "img_size": 32}}},
    "fusion": {"type": "concat", "dim": 16},
    "head": {"type": "multiclass", "num_outputs": 2},
}


class Images(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 1, 32, 32, generator=g)
        self.y = (self.x[:, 0, :, :16].mean((1, 2)) > 0).long()

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "labels": self.y[i], "index": i}


class Task:
    name = "strategy"

    def loss(self, module, batch):
        out = module(batch)
        loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
        return LossOutput(loss, {})

    def validate(self, module, loader):
        return {}


def _train(model: torch.nn.Module, tmp: Path) -> None:
    fit(Task(), model, Images(), None, loop=LoopConfig(max_steps=3, batch_size=8, clip_grad_norm=None),
        optim=OptimConfig(lr=0.05, weight_decay=0.0), schedule=ScheduleConfig(kind="constant"), out_dir=tmp)


def _changed(before: dict, model: torch.nn.Module) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if k in after and not torch.equal(v, after[k])}


@pytest.mark.parametrize("kind", ["linear_probe", "freeze", "partial"])
def test_only_intended_parameters_change(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = {"linear_probe": StrategyConfig(kind="linear_probe"),
           "freeze": StrategyConfig(kind="freeze", freeze=[r"^encoders\.image\."]),
           "partial": StrategyConfig(kind="partial", unfreeze=[r"blocks\.1\."])}[kind]
    model, report = apply_strategy(model, cfg)
    _train(model, tmp_path)
    changed = _changed(before, model)
    assert changed, "nothing trained"
    if kind == "linear_probe":
        assert all(k.startswith("head.") for k in changed), changed
    elif kind == "freeze":
        assert not any(k.startswith("encoders.image.") for k in changed) and any(k.startswith("fusion.") for k in changed)
    else:
        assert all(k.startswith("head.") or "blocks.1." in k for k in changed), changed
        assert any("blocks.1." in k for k in changed)
    assert report.trainable < report.total


def test_lora_changes_only_adapters_and_merges(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(CFG)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    model, report = apply_strategy(model, StrategyConfig(kind="lora", lora_r=2, lora_targets=["qkv", "fc1"]))
    assert has_lora(model) and report.trainable < 0.5 * report.total
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, tmp_path)
    changed = _changed(before, model)
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed), changed
    x = {"image": Images().x[:4]}
    model.eval()
    with torch.no_grad():
        expected = model(x).logits
    merged = merge_lora(model)
    assert not has_lora(merged)
    assert set(merged.state_dict()) == set(base)
    with torch.no_grad():
        torch.testing.assert_close(merged(x).logits, expected, atol=1e-5, rtol=1e-4)


def test_strategy_errors_name_the_problem() -> None:
    model = build_model(CFG)
    with pytest.raises(ConfigError, match="match no parameter"):
        apply_strategy(model, StrategyConfig(kind="freeze", freeze=["nothing_like_this"]))
    with pytest.raises(ConfigError, match="lora_targets"):
        apply_strategy(build_model(CFG), StrategyConfig(kind="lora", lora_targets=["no_layer"]))
