"""Typed configs of a training recipe: optimiser, schedule, loop, strategy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser. ``fused=None`` picks the fused kernel on CUDA and CPU and ``foreach`` elsewhere."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    fused: bool | None = None
    # regex over parameter names -> learning-rate multiplier (first match wins), e.g. {"image_encoder": 0.1}
    lr_multipliers: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("optim.name", self.name, ["adamw", "adam", "sgd"])
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up then cosine (or constant/linear) decay to ``min_lr_ratio``."""

    kind: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        check_choice("schedule.kind", self.kind, ["cosine", "linear", "constant"])


@dataclass
class LoopConfig:
    """The training loop's knobs."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    grad_accum: int = 1
    clip_grad_norm: float | None = 1.0
    precision: str = "fp32"
    ema_decay: float | None = None
    compile: bool = False
    grad_checkpointing: bool = False
    channels_last: bool = False
    log_every: int = 10
    eval_every: int = 1  # epochs
    checkpoint_every: int = 0  # optimizer steps; 0 = at the end of each epoch
    keep_checkpoints: int = 2
    num_workers: int = 0
    device: str = "auto"
    select_metric: str | None = None  # validation metric that picks the best epoch; None = last epoch
    select_mode: str = "max"
    group_by: str | None = None  # e.g. "image": batches hold all samples of a file together (encoded once)

    def __post_init__(self) -> None:
        check_choice("train.precision", self.precision, ["fp32", "bf16", "fp16"])
        check_choice("train.select_mode", self.select_mode, ["max", "min"])
        if self.group_by is not None:
            check_choice("train.group_by", self.group_by, ["image", "audio", "signal", "video"])
        if self.grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {self.grad_accum}")
        if self.epochs < 1 and not self.max_steps:
            raise ConfigError("train.epochs must be >= 1 (or set train.max_steps)")


@dataclass
class StrategyConfig:
    """How a pretrained model is adapted. Parts compose: e.g. ``kind: lora`` with ``freeze`` patterns.

    kinds: ``full`` (everything trains), ``freeze`` (params matching ``freeze`` regexes frozen),
    ``linear_probe`` (only the head trains), ``partial`` (only params matching ``unfreeze`` train, plus the head),
    ``lora`` (PEFT LoRA adapters on ``lora_targets``; the rest frozen except ``unfreeze``),
    ``prompt`` (learnable context tokens, CoOp-style; only the prompt and ``unfreeze`` train).
    """

    kind: str = "full"
    freeze: list[str] = field(default_factory=list)
    unfreeze: list[str] = field(default_factory=list)
    head_pattern: str = r"(^|\.)(head|classifier)\."
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["qkv", "query", "key", "value", "fc1", "fc2", "conv_pw", "conv_pwl"])
    merge_lora_on_save: bool = True
    prompt_tokens: int = 8

    def __post_init__(self) -> None:
        check_choice("strategy.kind", self.kind, ["full", "freeze", "linear_probe", "partial", "lora", "prompt"])


def as_plain(obj: Any) -> Any:
    """JSON-ready data of a config (tuples to lists)."""
    from medfuse.core.config import to_dict

    return to_dict(obj)
