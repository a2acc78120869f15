"""Training: one loop (:func:`fit`), tasks, adaptation strategies, resumable checkpoints, DDP via torchrun."""

from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig, StrategyConfig
from medfuse.train.loop import FitResult, fit
from medfuse.train.recipe import Recipe, load_recipe
from medfuse.train.runner import TrainResult, build_datasets, train_from_config
from medfuse.train.strategies import apply_strategy, merge_lora

__all__ = [
    "FitResult", "LoopConfig", "OptimConfig", "Recipe", "ScheduleConfig", "StrategyConfig", "TrainResult",
    "apply_strategy", "build_datasets", "fit", "load_recipe", "merge_lora", "train_from_config",
]
