"""Tracked runs read back: find a run (id, name or training folder), list, show, metric histories.

Evaluation metrics logged by :func:`medfuse.tracking.log_evaluation` are ``eval/<split>/<metric>``
with ``..._ci_lo`` / ``..._ci_hi`` for the 95% interval; validation metrics during training are
``val/<metric>``; training metrics have no prefix (``loss``, ``lr``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from medfuse.core.errors import ConfigError
from medfuse.tracking.store import Store, mlflow_client, read_run_file, resolve_store

log = logging.getLogger(__name__)

EVAL_PREFIX = "eval/"
CI_LO, CI_HI = "_ci_lo", "_ci_hi"
_MAX_RUNS = 1000
# Metrics shown first in tables and curves (the stable names of the design, in MLflow's spelling).
PREFERRED = ("auroc", "accuracy", "balanced_accuracy", "f1_macro", "auprc", "ece", "brier", "vqa_overall",
             "i2t_R_at_1", "t2i_R_at_1", "rsum", "bleu4", "rouge_l", "clinical_f1", "mae")


def preference(key: str) -> int:
    """Return where a metric key's last part stands in :data:`PREFERRED` (unlisted names last)."""
    last = key.rsplit("/", 1)[-1]
    return PREFERRED.index(last) if last in PREFERRED else len(PREFERRED)


@dataclass(frozen=True)
class RunRef:
    """A run in a store."""

    store: Store
    run_id: str


@dataclass(frozen=True)
class MetricValue:
    """A final metric value with its 95% interval when one was logged."""

    value: float
    lo: float | None = None
    hi: float | None = None

    def text(self, digits: int = 3) -> str:
        """Return ``0.812 [0.750, 0.861]`` (or the value alone)."""
        main = f"{self.value:.{digits}f}"
        return main if self.lo is None or self.hi is None else f"{main} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@dataclass
class RunSummary:
    """One run: identity, status, timing, final metrics, parameters and tags."""

    ref: RunRef
    name: str
    experiment: str
    status: str
    start: datetime | None
    duration_s: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifact_uri: str = ""

    @property
    def run_id(self) -> str:
        """The MLflow run id."""
        return self.ref.run_id

    def evaluation(self) -> dict[str, MetricValue]:
        """Return logged evaluation metrics as ``{"<split>/<metric>": MetricValue}`` (intervals attached)."""
        out: dict[str, MetricValue] = {}
        for key, value in self.metrics.items():
            if not key.startswith(EVAL_PREFIX) or key.endswith((CI_LO, CI_HI)) or key.endswith("/n"):
                continue
            out[key[len(EVAL_PREFIX):]] = MetricValue(value, self.metrics.get(key + CI_LO),
                                                      self.metrics.get(key + CI_HI))
        return out

    def validation(self) -> dict[str, MetricValue]:
        """Return the last validation metrics of training as ``{"val/<metric>": MetricValue}``."""
        return {k: MetricValue(v) for k, v in self.metrics.items() if k.startswith("val/")}

    def final_metrics(self) -> dict[str, MetricValue]:
        """Return evaluation metrics (with intervals), then validation metrics, then the last training loss."""
        out: dict[str, MetricValue] = {f"{EVAL_PREFIX}{k}": v for k, v in self.evaluation().items()}
        out.update(self.validation())
        if "loss" in self.metrics:
            out["loss"] = MetricValue(self.metrics["loss"])
        return out


def _summary(client: Any, store: Store, run: Any, experiments: dict[str, str]) -> RunSummary:
    info = run.info
    start = datetime.fromtimestamp(info.start_time / 1000, tz=UTC) if info.start_time else None
    duration = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    tags = dict(run.data.tags)
    experiment = experiments.get(info.experiment_id)
    if experiment is None:
        experiment = client.get_experiment(info.experiment_id).name
        experiments[info.experiment_id] = experiment
    return RunSummary(RunRef(store, info.run_id), tags.get("mlflow.runName") or info.run_name or info.run_id,
                      experiment, info.status, start, duration, dict(run.data.metrics), dict(run.data.params), tags,
                      info.artifact_uri)


def _experiments(client: Any) -> dict[str, str]:
    return {e.experiment_id: e.name for e in client.search_experiments()}


def _quoted(text: str) -> str | None:
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    return None


def resolve_run(ref: str | Path, store: str | Store | None = None) -> RunRef:
    """Return the run named by a run id, a run name (the latest of that name) or a tracked training folder."""
    path = Path(ref)
    if path.is_dir():
        record = read_run_file(path)
        if record is None:
            raise ConfigError(f"{path}: no tracking.json here; train with a 'tracking:' section in the recipe, "
                              "or give a run id or name")
        if record.get("backend", "mlflow") != "mlflow":
            raise ConfigError(f"{path}: tracked with {record.get('backend')}, not MLflow; runs are read from "
                              "MLflow stores")
        return RunRef(resolve_store(record.get("store") or store), str(record["run_id"]))
    resolved = resolve_store(store)
    client = mlflow_client(resolved, create=False)
    from mlflow.exceptions import MlflowException

    text = str(ref)
    try:
        return RunRef(resolved, client.get_run(text).info.run_id)
    except MlflowException:
        pass
    experiments = _experiments(client)
    quoted = _quoted(text)
    if experiments and quoted is not None:
        found = client.search_runs(list(experiments), filter_string=f"tags.`mlflow.runName` = {quoted}",
                                   order_by=["attributes.start_time DESC"], max_results=10)
        if found:
            if len(found) > 1:
                log.info("%d runs are named %r; using the latest (%s)", len(found), text, found[0].info.run_id)
            return RunRef(resolved, found[0].info.run_id)
    raise ConfigError(f"run '{text}': no run id, run name or tracked training folder of that name in {resolved.uri}; "
                      "`medfuse runs list` shows the runs")


def get_run(ref: str | Path | RunRef, store: str | Store | None = None) -> RunSummary:
    """Return the summary of one run (see :func:`resolve_run` for ``ref``)."""
    run_ref = ref if isinstance(ref, RunRef) else resolve_run(ref, store)
    client = mlflow_client(run_ref.store, create=False)
    return _summary(client, run_ref.store, client.get_run(run_ref.run_id), {})


def list_runs(store: str | Store | None = None, *, experiment: str | None = None,
              max_results: int = 100) -> list[RunSummary]:
    """Return the runs of a store (newest first), optionally of one experiment."""
    resolved = resolve_store(store)
    client = mlflow_client(resolved, create=False)
    experiments = _experiments(client)
    ids = [i for i, name in experiments.items() if experiment is None or name == experiment]
    if not ids:
        return []
    runs = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=min(max_results, _MAX_RUNS))
    return [_summary(client, resolved, run, experiments) for run in runs]


def metric_history(ref: RunRef, key: str) -> list[tuple[int, float]]:
    """Return ``(step, value)`` of every logged value of ``key`` in step order."""
    client = mlflow_client(ref.store, create=False)
    points = client.get_metric_history(ref.run_id, key)
    return sorted((int(m.step), float(m.value)) for m in points)


def list_artifacts(ref: RunRef, path: str | None = None, *, depth: int = 3) -> list[tuple[str, int | None]]:
    """Return ``(path, size in bytes)`` of a run's artifact files, folders walked ``depth`` levels down."""
    client = mlflow_client(ref.store, create=False)
    out: list[tuple[str, int | None]] = []

    def walk(folder: str | None, level: int) -> None:
        for item in client.list_artifacts(ref.run_id, folder):
            if item.is_dir:
                if level < depth:
                    walk(item.path, level + 1)
                else:
                    out.append((item.path + "/", None))
            else:
                out.append((item.path, item.file_size))

    walk(path, 1)
    return out


def download_artifact(ref: RunRef, path: str, dst: Path) -> Path | None:
    """Return a local copy of one artifact (file or folder) of a run; None when the run has no such artifact.

    Artifacts in a local artifact store are returned in place; others are downloaded into ``dst``.
    """
    client = mlflow_client(ref.store, create=False)
    parent = str(Path(path).parent) if Path(path).parent != Path(".") else None
    names = {item.path for item in client.list_artifacts(ref.run_id, parent)}
    if path not in names:
        return None
    root = client.get_run(ref.run_id).info.artifact_uri
    if root.startswith("file:"):  # a local artifact store: read in place
        local = Path(unquote(urlparse(root).path)) / path
        if local.exists():
            return local
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(ref.run_id, path, str(dst)))
