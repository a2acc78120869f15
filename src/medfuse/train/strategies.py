"""Adaptation strategies: full, freeze by regex, linear probe, partial unfreeze, LoRA (PEFT), prompt tuning.

Each strategy only decides which parameters train (and, for LoRA, injects adapters); the trainer then
optimises ``[p for p in model.parameters() if p.requires_grad]``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from torch import nn

from medfuse.core.errors import ConfigError
from medfuse.core.optional import require
from medfuse.train.config import StrategyConfig

log = logging.getLogger(__name__)


@dataclass
class StrategyReport:
    """What a strategy left trainable."""

    kind: str
    trainable: int
    total: int
    trainable_names: list[str]

    def summary(self) -> str:
        pct = 100.0 * self.trainable / max(self.total, 1)
        return f"strategy {self.kind}: {self.trainable:,} of {self.total:,} parameters train ({pct:.2f}%)"


def _set(model: nn.Module, patterns: list[str], flag: bool) -> int:
    regs = [re.compile(p) for p in patterns]
    n = 0
    for name, p in model.named_parameters():
        if any(r.search(name) for r in regs):
            p.requires_grad_(flag)
            n += 1
    return n


def apply_strategy(model: nn.Module, cfg: StrategyConfig) -> tuple[nn.Module, StrategyReport]:
    """Apply ``cfg`` to ``model`` (LoRA may wrap layers in place); returns the model and a report."""
    kind = cfg.kind
    if kind in ("full", "freeze"):
        for p in model.parameters():
            p.requires_grad_(True)
        if cfg.freeze and _set(model, cfg.freeze, False) == 0:
            raise ConfigError(f"strategy.freeze patterns {cfg.freeze} match no parameter")
        if kind == "freeze" and not cfg.freeze:
            raise ConfigError("strategy.kind 'freeze' needs strategy.freeze: a list of regexes over parameter names")
    elif kind in ("linear_probe", "partial", "prompt"):
        for p in model.parameters():
            p.requires_grad_(False)
        patterns = list(cfg.unfreeze)
        if kind in ("linear_probe", "partial"):
            patterns.append(cfg.head_pattern)
        if kind == "prompt":
            patterns.append(r"(^|\.)prompt(_learner)?\.")
        if _set(model, patterns, True) == 0:
            raise ConfigError(f"strategy '{kind}': no parameter matches {patterns}; check the model's parameter names")
    elif kind == "lora":
        model = _inject_lora(model, cfg)
    if kind != "full":
        freeze_norm_statistics(model)
    report = _report(model, kind)
    log.info(report.summary())
    return model, report


def _inference_mode(module: nn.Module, args: object) -> None:
    module.training = False


def freeze_norm_statistics(model: nn.Module) -> int:
    """Keep batch-norm layers whose parameters are all frozen in inference mode; returns how many.

    A frozen backbone must compute in training what it computes at evaluation: in training mode a
    batch-norm layer would normalise with the batch's statistics and overwrite its running ones, so a
    linear probe would be fitted on features the evaluated model never produces. A forward pre-hook
    (kept when the trainer calls ``model.train()``, absent from checkpoints) holds such layers in eval mode.
    """
    count = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in own):
            if not getattr(module, "_medfuse_frozen_stats", False):
                module.register_forward_pre_hook(_inference_mode)
                module._medfuse_frozen_stats = True  # type: ignore[assignment]
            count += 1
    return count


def _inject_lora(model: nn.Module, cfg: StrategyConfig) -> nn.Module:
    peft = require("peft", extra="peft", purpose="LoRA fine-tuning")
    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d))}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise ConfigError(
            f"strategy.lora_targets {cfg.lora_targets} match no Linear/Conv layer; layer names here include "
            f"{sorted(names)[:20]}"
        )
    lcfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets)
    for p in model.parameters():
        p.requires_grad_(False)
    peft.inject_adapter_in_model(lcfg, model)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
    patterns = [cfg.head_pattern, *cfg.unfreeze]
    _set(model, patterns, True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into their base layers so the model saves and exports as a plain network."""
    require("peft", extra="peft", purpose="LoRA fine-tuning")
    from peft.tuners.lora import LoraLayer

    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, child_name, child.get_base_layer())
    return model


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def _report(model: nn.Module, kind: str) -> StrategyReport:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable == 0:
        raise ConfigError(f"strategy '{kind}' left no parameter trainable")
    return StrategyReport(kind, trainable, total, names)
