"""``make_callbacks``: a recipe's ``tracking:`` section -> the trainer callbacks that log the run.

```yaml
tracking:
  backend: mlflow          # mlflow | tensorboard | auto (default: mlflow when installed, else tensorboard)
  uri: sqlite:///runs/mlruns.db   # default: MLFLOW_TRACKING_URI, else runs/mlruns.db here
  experiment: chest-fusion # default: the recipe's name, else "medfuse"
  run_name: fused-lr3e-4   # default: the output folder's name
  log_checkpoint: true     # copy <out>/model into the run's artifacts
  system_metrics: true     # CPU %, RSS and GPU memory at each log point
  tags: {owner: radiology-ai}
```

A missing backend package or a broken store never stops training: one warning, then the run goes on
with ``metrics.jsonl`` (and the trainer's TensorBoard scalars) only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfuse.core.config import check_choice, from_dict, to_dict
from medfuse.core.errors import OptionalDependencyError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "mlflow", "tensorboard")
DEFAULT_EXPERIMENT = "medfuse"


@dataclass
class TrackingConfig:
    """The ``tracking:`` section of a recipe (see the module docstring for each key)."""

    enabled: bool = True
    backend: str = "auto"
    uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    log_checkpoint: bool = True
    system_metrics: bool = True
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("tracking.backend", self.backend, BACKENDS)


def tracking_config(section: TrackingConfig | Mapping[str, Any] | None) -> TrackingConfig:
    """Return the typed tracking settings; unknown keys and backends raise ``ConfigError`` naming them."""
    if isinstance(section, TrackingConfig):
        return section
    return from_dict(TrackingConfig, dict(section or {}), where="tracking")


def experiment_name(recipe: Any, cfg: TrackingConfig) -> str:
    """Return the experiment: ``tracking.experiment``, else the recipe's name, else its file's stem, else medfuse."""
    if cfg.experiment:
        return cfg.experiment
    if getattr(recipe, "name", None):
        return str(recipe.name)
    path = getattr(recipe, "path", None) or getattr(recipe, "source", None)
    if isinstance(path, (str, Path)) and str(path):
        return Path(path).stem
    return DEFAULT_EXPERIMENT


def _missing(backend: str, exc: Exception) -> list[Any]:
    log.warning("tracking: the %s backend is unavailable (%s); training continues and is logged to "
                "metrics.jsonl only", backend, exc)
    return []


def make_callbacks(recipe: Any, out_dir: Path, source: Any) -> list[Any]:
    """Return the callbacks that track a training of ``recipe`` into ``out_dir`` (empty when tracking is off).

    ``source`` is the data ValidationReport (manifest hash and row counts are logged) or the manifest path.
    """
    from medfuse.tracking.store import mlflow_module

    cfg = tracking_config(getattr(recipe, "tracking", None))
    if not cfg.enabled:
        return []
    recipe_dict = to_dict(recipe) if hasattr(recipe, "__dataclass_fields__") else dict(recipe or {})
    backend = cfg.backend
    if backend in ("auto", "mlflow"):
        try:
            mlflow_module()
        except OptionalDependencyError as exc:
            if backend == "mlflow":
                return _missing("mlflow", exc)
            backend = "tensorboard"
        else:
            backend = "mlflow"
    if backend == "tensorboard":
        from medfuse.tracking.tensorboard_cb import TensorBoardCallback, require_tensorboard

        try:
            require_tensorboard()
        except OptionalDependencyError as exc:
            return _missing("tensorboard", exc)
        return [TensorBoardCallback(Path(out_dir), recipe=recipe_dict, source=source, run_name=cfg.run_name)]

    from medfuse.tracking.mlflow_cb import MlflowCallback

    select = getattr(getattr(recipe, "train", None), "select_metric", None)
    callback = MlflowCallback(
        cfg.uri, out_dir=Path(out_dir), experiment=experiment_name(recipe, cfg), run_name=cfg.run_name,
        recipe=recipe_dict, source=source, tags=cfg.tags, log_checkpoint=cfg.log_checkpoint,
        system_metrics=cfg.system_metrics, select_metric=select,
    )
    return [callback] if callback.enabled else []
