"""The MLflow callback: one training becomes one MLflow run, and a failing store never stops the training.

Logged: the recipe (flattened parameters and ``recipe.json``), the git commit, the manifest's SHA-256 and
row counts, every metric at each log point (step) and each validation (``val/`` prefix), system load
(CPU, RSS, GPU memory), and the final checkpoint folder as artifacts under ``model/``. The training
folder gets ``tracking.json`` naming the run and the store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medfuse.tracking.context import SystemSampler, data_facts, finite_metrics, flatten_params, git_commit
from medfuse.tracking.store import (
    Store,
    experiment_id,
    mlflow_client,
    read_run_file,
    resolve_store,
    write_run_file,
)

log = logging.getLogger(__name__)

CHECKPOINT_ARTIFACT = "model"
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def checkpoint_id(checkpoint_dir: Path) -> str | None:
    """Return the ``checkpoint_id`` of a checkpoint folder's ``config.json`` (None when absent)."""
    try:
        doc = json.loads((checkpoint_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = doc.get("checkpoint_id") if isinstance(doc, dict) else None
    return str(value) if value else None


def log_metrics(client: Any, run_id: str, values: Mapping[str, float], step: int) -> None:
    """Log ``values`` at ``step`` in as few requests as MLflow allows."""
    from mlflow.entities import Metric

    stamp = _now_ms()
    items = [Metric(k, float(v), stamp, int(step)) for k, v in values.items()]
    for start in range(0, len(items), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[start:start + _METRICS_PER_BATCH])


def log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log string parameters in batches of MLflow's size limit."""
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + _PARAMS_PER_BATCH])


def upload_checkpoint(client: Any, run_id: str, checkpoint_dir: Path, out_dir: Path | None = None) -> str:
    """Copy a checkpoint folder into the run's artifacts (``model/``); return the artifact URI.

    ``out_dir``'s ``tracking.json`` then records which checkpoint (by ``checkpoint_id``) was logged.
    """
    client.log_artifacts(run_id, str(checkpoint_dir), CHECKPOINT_ARTIFACT)
    ident = checkpoint_id(checkpoint_dir)
    if ident:
        client.set_tag(run_id, "medfuse.checkpoint_id", ident)
    record = read_run_file(out_dir) if out_dir is not None else None
    if record is not None and record.get("run_id") == run_id:
        folder = Path(record.pop("folder"))
        write_run_file(folder, {**record, "checkpoint_logged": ident or True})
    return f"{client.get_run(run_id).info.artifact_uri}/{CHECKPOINT_ARTIFACT}"


def log_checkpoint(out_dir: str | Path, store: str | Store | None = None) -> str | None:
    """Log ``<out_dir>/model`` to the run named by ``<out_dir>/tracking.json`` unless already logged.

    Returns the artifact URI of the logged checkpoint, or None when the folder was not tracked.
    """
    out = Path(out_dir)
    record = read_run_file(out)
    checkpoint = out / CHECKPOINT_ARTIFACT
    if record is None or record.get("backend", "mlflow") != "mlflow" or not (checkpoint / "config.json").is_file():
        return None
    client = mlflow_client(store or record.get("store"), create=False)
    run = client.get_run(record["run_id"])
    if record.get("checkpoint_logged") and record["checkpoint_logged"] == checkpoint_id(checkpoint):
        return f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT}"
    return upload_checkpoint(client, record["run_id"], checkpoint, out)


class MlflowCallback:
    """Logs a training to one MLflow run (a trainer ``Callback``).

    Every call is guarded: the first failure (a read-only folder, a locked database, MLflow raising)
    logs one warning naming the cause and switches the callback off; training goes on and its
    ``metrics.jsonl`` still holds everything.
    """

    def __init__(
        self,
        store: Store | str | None,
        *,
        out_dir: Path,
        experiment: str,
        run_name: str | None = None,
        recipe: Mapping[str, Any] | None = None,
        source: Any = None,
        tags: Mapping[str, str] | None = None,
        log_checkpoint: bool = True,
        system_metrics: bool = True,
        select_metric: str | None = None,
    ) -> None:
        self.store = resolve_store(store) if not isinstance(store, Store) else store
        self.out_dir = Path(out_dir)
        self.experiment = experiment
        self.run_name = run_name or self.out_dir.name
        self.log_checkpoint = log_checkpoint
        self.select_metric = select_metric
        self.enabled = True
        self.run_id: str | None = None
        self.started = time.time()
        self._client: Any = None
        self._sampler = SystemSampler() if system_metrics else None
        self._finished = False
        self._guard("start the run", self._start, dict(recipe or {}), source, dict(tags or {}))

    # ------------------------------------------------------------------ guard
    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # tracking must never end a training run
            self.enabled = False
            log.warning("tracking: could not %s in %s (%s: %s); tracking is off for this run, training "
                        "continues and is logged to metrics.jsonl only", what, self.store.uri, type(exc).__name__,
                        exc)
            return None

    # ------------------------------------------------------------------ start
    def _start(self, recipe: dict[str, Any], source: Any, tags: dict[str, str]) -> None:
        import medfuse

        client = mlflow_client(self.store)
        exp_id = experiment_id(client, self.experiment, self.store)
        previous = read_run_file(self.out_dir)
        facts = data_facts(source)
        commit = git_commit()
        run_tags = {"medfuse.version": medfuse.__version__, "medfuse.out_dir": str(self.out_dir.resolve()),
                    "medfuse.kind": "train", **{k: str(v) for k, v in tags.items()}}
        if recipe.get("task"):
            run_tags["medfuse.task"] = str(recipe["task"])
        if commit:
            run_tags["mlflow.source.git.commit"] = commit
        if facts.get("manifest_sha256"):
            run_tags["medfuse.manifest_sha256"] = facts["manifest_sha256"]
        if previous and previous.get("run_id"):
            run_tags["medfuse.previous_run"] = str(previous["run_id"])
        run = client.create_run(exp_id, run_name=self.run_name, tags=run_tags)
        self._client = client
        self.run_id = run.info.run_id
        write_run_file(self.out_dir, {
            "backend": "mlflow", "run_id": self.run_id, "run_name": self.run_name, "experiment": self.experiment,
            "experiment_id": exp_id, "store": self.store.uri, "artifact_uri": run.info.artifact_uri,
            "checkpoint_logged": None, "medfuse_version": medfuse.__version__,
        })
        params = flatten_params(recipe)
        params.update(flatten_params({"data": {k: v for k, v in facts.items() if v is not None}}))
        if commit:
            params["git_commit"] = commit
        log_params(client, self.run_id, params)
        if recipe:
            client.log_text(self.run_id, json.dumps(recipe, indent=2, default=str), "recipe.json")

    # ------------------------------------------------------------------ trainer hooks
    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log the training metrics of one log point (and the system load) at ``step``."""
        self._guard("log metrics", self._log, step, finite_metrics(metrics, skip=("step",)))

    def on_epoch_end(self, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        """Log the validation metrics of an epoch as ``val/<name>`` at ``step``."""
        values = finite_metrics(metrics, prefix="val/")
        values["epoch"] = float(epoch)
        self._guard("log validation metrics", self._log, step, values)

    def on_train_end(self, result: Any) -> None:
        """Log the run's totals, the checkpoint when it is already saved, and close the run."""
        self._guard("finish the run", self._end, result)

    def on_checkpoint_saved(self, checkpoint_dir: Path) -> None:
        """Log the final checkpoint folder once the trainer has written it (when ``log_checkpoint``)."""
        if self.log_checkpoint and self.run_id is not None:
            self._guard("log the checkpoint", self._upload, Path(checkpoint_dir))

    # ------------------------------------------------------------------ work
    def _log(self, step: int, values: dict[str, float]) -> None:
        if self._sampler is not None:
            values.update(self._sampler.sample())
        if values and self.run_id is not None:
            log_metrics(self._client, self.run_id, values, step)

    def _upload(self, checkpoint: Path) -> None:
        upload_checkpoint(self._client, str(self.run_id), checkpoint, self.out_dir)

    def _end(self, result: Any) -> None:
        if self.run_id is None or self._finished:
            return
        totals = finite_metrics({
            "steps": getattr(result, "steps", None), "epochs": getattr(result, "epochs", None),
            "wall_s": getattr(result, "wall_s", None), "samples_per_s": getattr(result, "samples_per_s", None),
        }, prefix="train/")
        best = getattr(result, "best_metric", None)
        if self.select_metric and isinstance(best, (int, float)):
            totals.update(finite_metrics({self.select_metric: best}, prefix="best/"))
        if totals:
            log_metrics(self._client, self.run_id, totals, int(getattr(result, "steps", 0) or 0))
        checkpoint = self.out_dir / CHECKPOINT_ARTIFACT
        config = checkpoint / "config.json"
        # A checkpoint from an earlier training in the same folder is older than this run: not ours.
        if self.log_checkpoint and config.is_file() and config.stat().st_mtime >= self.started:
            self._upload(checkpoint)
        self._client.set_terminated(self.run_id, "FINISHED")
        self._finished = True
