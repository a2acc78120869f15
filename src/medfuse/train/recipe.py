"""A training recipe: the YAML file behind ``medfuse train CONFIG.yaml``, as typed dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfuse.core.config import apply_overrides, check_choice, from_dict, load_yaml
from medfuse.core.errors import ConfigError
from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig, StrategyConfig

TRAIN_TASKS = ("classification", "contrastive", "vqa", "distillation", "generation")


@dataclass
class DataSection:
    """Where the data comes from. Keys other than these are column roles for ``medfuse.data`` (or ``preset``)."""

    manifest: str = ""
    train_split: str = "train"
    val_split: str | None = "val"
    cache_dir: str | None = None
    validate: bool = True
    decode_check: bool = False
    max_rows: int | None = None
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class InitConfig:
    """Initialise parts of the model from another checkpoint: ``map`` renames key prefixes (source -> target)."""

    checkpoint: str | None = None
    map: dict[str, str] = field(default_factory=dict)


@dataclass
class DistillConfig:
    """Knowledge distillation from a frozen teacher checkpoint (Hinton et al. 2015)."""

    teacher: str | None = None
    temperature: float = 4.0
    alpha: float = 0.5
    embed_weight: float = 0.0


@dataclass
class Recipe:
    """Everything one training needs. ``model`` is a :class:`medfuse.models.config.ModelConfig` mapping."""

    task: str = "classification"
    seed: int = 0
    data: DataSection = field(default_factory=DataSection)
    model: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    init: InitConfig = field(default_factory=InitConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    tracking: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TRAIN_TASKS)
        if not self.data.manifest:
            raise ConfigError("data.manifest: name the manifest file (CSV, JSONL or Parquet)")


_DATA_KEYS = {"manifest", "train_split", "val_split", "cache_dir", "validate", "decode_check", "max_rows", "columns"}


def load_recipe(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                data: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe from YAML (or ``data``), apply ``key=value`` overrides, validate every key.

    Relative ``data.manifest`` and ``init.checkpoint`` paths resolve against the recipe file's folder
    when they don't exist relative to the working directory.
    """
    raw = load_yaml(path) if path is not None else dict(data or {})
    raw = apply_overrides(raw, list(overrides))
    section = dict(raw.get("data") or {})
    columns = {k: section.pop(k) for k in list(section) if k not in _DATA_KEYS}
    if columns:
        section["columns"] = {**section.get("columns", {}), **columns}
    raw["data"] = section
    recipe = from_dict(Recipe, raw)
    if path is not None:
        base = Path(path).resolve().parent
        recipe.data.manifest = _resolve(recipe.data.manifest, base)
        if recipe.init.checkpoint:
            recipe.init.checkpoint = _resolve(recipe.init.checkpoint, base)
    return recipe


def _resolve(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return str(p)
    candidate = base / p
    return str(candidate) if candidate.exists() else str(p)
