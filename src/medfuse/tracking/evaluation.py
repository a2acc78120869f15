"""``log_evaluation``: attach an evaluation (``results.json``, ``report.html``, per-row predictions) to a run.

Headline metrics go in as ``eval/<split>/<metric>`` with the 95% interval as ``..._ci_lo`` and
``..._ci_hi``; the files go under the artifact folder ``evaluation/<split>/``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfuse.tracking.context import metric_key, sha256_file
from medfuse.tracking.mlflow_cb import log_metrics
from medfuse.tracking.predictions import PREDICTIONS_FILE, compute_predictions
from medfuse.tracking.runs import CI_HI, CI_LO, EVAL_PREFIX, RunRef, resolve_run
from medfuse.tracking.store import Store, mlflow_client

log = logging.getLogger(__name__)

EVALUATION_ARTIFACTS = "evaluation"
_FILES = ("results.json", "report.html")


@dataclass
class EvaluationLog:
    """What :func:`log_evaluation` attached: the run, the artifact folder, the metrics and the files."""

    ref: RunRef
    artifact_path: str
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def has_predictions(self) -> bool:
        """Whether per-row predictions were logged (paired tests between runs need them)."""
        return PREDICTIONS_FILE in self.files


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def evaluation_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Return the headline metrics of a ``results.json`` as ``eval/<split>/<metric>`` (+ interval bounds)."""
    prefix = f"{EVAL_PREFIX}{metric_key(str(results.get('split') or 'all'))}/"
    out: dict[str, float] = {}
    for name, entry in (results.get("metrics") or {}).items():
        if not isinstance(entry, dict):
            continue
        value = _finite(entry.get("value"))
        if value is None:
            continue
        key = prefix + metric_key(name)
        out[key] = value
        ci = entry.get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = _finite(ci[0]), _finite(ci[1])
            if lo is not None and hi is not None:
                out[key + CI_LO], out[key + CI_HI] = lo, hi
    n = _finite(results.get("n"))
    if n is not None:
        out[prefix + "n"] = n
    return out


def log_evaluation(run: str | Path | RunRef, results_dir: str | Path, *, store: str | Store | None = None,
                   predictions: bool = True) -> EvaluationLog:
    """Log an evaluation folder to a run: headline metrics with intervals, results, report, predictions.

    run: a run id or name, a tracked training folder (its ``tracking.json``) or a :class:`RunRef`.
    results_dir: the ``--out`` folder of ``medfuse evaluate``. predictions: also log ``predictions.csv``
    (taken from the folder, else recomputed from the checkpoint and manifest the results name).
    """
    from medfuse.evaluate.results import read_results

    folder = Path(results_dir)
    results = read_results(folder)
    ref = run if isinstance(run, RunRef) else resolve_run(run, store)
    client = mlflow_client(ref.store, create=False)
    split = metric_key(str(results.get("split") or "all"))
    artifact_path = f"{EVALUATION_ARTIFACTS}/{split}"
    metrics = evaluation_metrics(results)
    step = int(client.get_run(ref.run_id).data.metrics.get("train/steps", 0))
    log_metrics(client, ref.run_id, metrics, step)
    config = results.get("config") or {}
    tags = {"medfuse.evaluated": "true", f"medfuse.eval.{split}.task": str(results.get("task")),
            f"medfuse.eval.{split}.manifest": str(config.get("manifest"))}
    digest = sha256_file(config.get("manifest"))
    if digest:
        tags[f"medfuse.eval.{split}.manifest_sha256"] = digest
    for key, value in tags.items():
        client.set_tag(ref.run_id, key, value)
    files = []
    for name in _FILES:
        if (folder / name).is_file():
            client.log_artifact(ref.run_id, str(folder / name), artifact_path)
            files.append(name)
    if predictions:
        if (folder / PREDICTIONS_FILE).is_file():
            client.log_artifact(ref.run_id, str(folder / PREDICTIONS_FILE), artifact_path)
            files.append(PREDICTIONS_FILE)
        else:
            frame = compute_predictions(results)
            if frame is not None:
                with tempfile.TemporaryDirectory() as scratch:
                    path = Path(scratch) / PREDICTIONS_FILE
                    frame.to_csv(path, index=False)
                    client.log_artifact(ref.run_id, str(path), artifact_path)
                files.append(PREDICTIONS_FILE)
    log.info("logged evaluation %s (%d metrics, %s) to run %s", folder, len(metrics), ", ".join(files), ref.run_id)
    return EvaluationLog(ref, artifact_path, metrics, files)


def attach_evaluation(checkpoint: str | Path, results_dir: str | Path, *,
                      store: str | Store | None = None) -> EvaluationLog | None:
    """Log an evaluation to the run that trained ``checkpoint``, when there is one; never raises.

    checkpoint: a checkpoint folder whose training folder holds ``tracking.json``, or ``name@version``
    (the run that produced the registered version). Returns None when the checkpoint was not tracked
    or the store cannot be written (one warning, the evaluation files stay as written).
    """
    from medfuse.tracking.store import read_run_file, resolve_store

    text = str(checkpoint)
    try:
        record = read_run_file(text) if Path(text).is_dir() else None
        if record is not None:
            if record.get("backend", "mlflow") != "mlflow":
                return None
            ref = RunRef(resolve_store(record.get("store")), str(record["run_id"]))
        elif "@" in text and not Path(text).exists():
            from medfuse.tracking.registry import get_version

            version = get_version(text, store)
            if not version.run_id:
                return None
            ref = RunRef(resolve_store(store), version.run_id)
        else:
            return None
        return log_evaluation(ref, results_dir)
    except Exception as exc:  # tracking must never lose an evaluation that was computed
        log.warning("tracking: could not log the evaluation in %s to the training run (%s: %s); the results stay "
                    "in the folder", results_dir, type(exc).__name__, exc)
        return None
