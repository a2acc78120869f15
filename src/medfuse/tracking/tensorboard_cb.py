"""The TensorBoard backend: hyper-parameters and final metrics next to the trainer's own event files.

The trainer already writes every logged scalar to ``<out>/tensorboard``; this callback adds the
HParams view (the flattened recipe against the final validation metrics) and the run's totals, and
records the log folder in ``tracking.json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medfuse.core.optional import require
from medfuse.tracking.context import data_facts, finite_metrics, flatten_params, git_commit
from medfuse.tracking.store import write_run_file

log = logging.getLogger(__name__)

LOG_SUBDIR = "tensorboard"
_MAX_HPARAMS = 200


def require_tensorboard() -> Any:
    """Return ``torch.utils.tensorboard``, or raise naming the ``tracking`` extra."""
    require("tensorboard", extra="tracking", purpose="TensorBoard logs")
    return require("torch.utils.tensorboard", extra="tracking", purpose="TensorBoard logs")


def tensorboard_writer(log_dir: Path) -> Any:
    """Return a ``SummaryWriter`` on ``log_dir``, or raise naming the ``tracking`` extra."""
    SummaryWriter = require_tensorboard().SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _hparam_value(text: str) -> str | float | bool:
    if text in ("true", "false"):
        return text == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


class TensorBoardCallback:
    """Writes hyper-parameters and final metrics to ``<out>/tensorboard`` (a trainer ``Callback``).

    Guarded like the MLflow callback: the first failure logs one warning and switches it off.
    """

    def __init__(self, out_dir: Path, *, recipe: Mapping[str, Any] | None = None, source: Any = None,
                 run_name: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.log_dir = self.out_dir / LOG_SUBDIR
        self.run_name = run_name or self.out_dir.name
        self.enabled = True
        self._last_val: dict[str, float] = {}
        self._hparams: dict[str, Any] = {}
        self._guard("prepare TensorBoard logging", self._start, dict(recipe or {}), source)

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # tracking must never end a training run
            self.enabled = False
            log.warning("tracking: could not %s in %s (%s: %s); tracking is off for this run, training "
                        "continues and is logged to metrics.jsonl only", what, self.log_dir, type(exc).__name__, exc)
            return None

    def _start(self, recipe: dict[str, Any], source: Any) -> None:
        import medfuse

        params = flatten_params(recipe)
        params.update(flatten_params({"data": {k: v for k, v in data_facts(source).items() if v is not None}}))
        commit = git_commit()
        if commit:
            params["git_commit"] = commit
        self._hparams = {k: _hparam_value(v) for k, v in list(params.items())[:_MAX_HPARAMS]}
        write_run_file(self.out_dir, {"backend": "tensorboard", "run_id": self.run_name, "run_name": self.run_name,
                                      "log_dir": str(self.log_dir.resolve()), "medfuse_version": medfuse.__version__})

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Nothing to add: the trainer writes these scalars itself."""

    def on_epoch_end(self, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        """Remember the latest validation metrics for the HParams view."""
        self._last_val = finite_metrics(metrics, prefix="val/")

    def on_train_end(self, result: Any) -> None:
        """Write the hyper-parameters with the final validation metrics and the run's totals."""
        self._guard("write the hyper-parameters", self._end, result)

    def _end(self, result: Any) -> None:
        totals = finite_metrics({"steps": getattr(result, "steps", None), "wall_s": getattr(result, "wall_s", None),
                                 "samples_per_s": getattr(result, "samples_per_s", None)}, prefix="train/")
        writer = tensorboard_writer(self.log_dir)
        try:
            writer.add_hparams(self._hparams, {**self._last_val, **totals}, run_name="hparams")
        finally:
            writer.close()
