"""Per-row predictions of an evaluation (``predictions.csv``): what paired significance tests need.

Columns: ``row`` (the manifest line), ``patient``, then per output ``y:<name>`` (0/1 label) and
``p:<name>`` (probability) for binary and multi-label heads; multiclass heads have one ``y`` column
(the class index) and ``p:<class>`` per class. An evaluation folder may hold the file already;
otherwise :func:`compute_predictions` re-runs the evaluated classifier over the evaluated rows.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class PredictionTable:
    """Predictions read back from ``predictions.csv``.

    task: binary | multiclass | multilabel; names: output names; rows: (N,) manifest lines;
    y: (N,) class ids (multiclass) or (N, K) 0/1 labels (NaN: unlabelled); probs: (N, K);
    patients: (N,) patient ids (None when the data names none) for patient-level resampling.
    """

    task: str
    names: list[str]
    rows: np.ndarray
    y: np.ndarray
    probs: np.ndarray
    patients: np.ndarray | None = None

    def take(self, order: np.ndarray) -> PredictionTable:
        """Return the rows at positions ``order``."""
        patients = self.patients[order] if self.patients is not None else None
        return PredictionTable(self.task, self.names, self.rows[order], self.y[order], self.probs[order], patients)


def predictions_frame(task: str, names: Sequence[str], rows: Sequence[Any], patients: Sequence[Any],
                      y: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Return the ``predictions.csv`` table of labelled rows (see the module docstring)."""
    frame: dict[str, Any] = {"row": list(rows), "patient": list(patients)}
    probs = np.asarray(probs, dtype=np.float64).reshape(len(rows), -1)
    if task == "multiclass":
        frame["y"] = np.asarray(y).astype(np.int64)
        for k, name in enumerate(names):
            frame[f"p:{name}"] = probs[:, k]
    else:
        labels = np.asarray(y, dtype=np.float64).reshape(len(rows), -1)
        for k, name in enumerate(names):
            frame[f"y:{name}"] = labels[:, k]
            frame[f"p:{name}"] = probs[:, k]
    return pd.DataFrame(frame)


def read_predictions(path: str | Path, task: str | None = None) -> PredictionTable:
    """Return a ``predictions.csv`` as a :class:`PredictionTable` (task inferred from the columns)."""
    frame = pd.read_csv(path)
    names = [c[2:] for c in frame.columns if c.startswith("p:")]
    if "row" not in frame.columns or not names:
        raise ValueError(f"{path}: not a predictions table (needs 'row' and 'p:<name>' columns)")
    probs = frame[[f"p:{n}" for n in names]].to_numpy(dtype=np.float64)
    if "y" in frame.columns:
        inferred, y = "multiclass", frame["y"].to_numpy()
    else:
        inferred = "binary" if len(names) == 1 else "multilabel"
        y = frame[[f"y:{n}" for n in names]].to_numpy(dtype=np.float64)
    patients = None
    if "patient" in frame.columns and frame["patient"].notna().all() and (frame["patient"].astype(str) != "").all():
        patients = frame["patient"].astype(str).to_numpy(dtype=object)
    return PredictionTable(task or inferred, names, frame["row"].to_numpy(), y, probs, patients)


def _evaluated_task(results: Mapping[str, Any]) -> bool:
    entry = (results.get("tasks") or {}).get("classification")
    return isinstance(entry, Mapping) and "skipped" not in entry and "error" not in entry


def compute_predictions(results: Mapping[str, Any]) -> pd.DataFrame | None:
    """Re-run the classifier of a ``results.json`` over its evaluated rows; None when that cannot be done.

    Uses the checkpoint, manifest, split, data config and settings the results record, so the rows,
    order and probabilities are those the classification metrics were computed from (checked by count).
    """
    config = results.get("config") or {}
    checkpoint, manifest = config.get("checkpoint"), config.get("manifest")
    if not _evaluated_task(results):
        log.info("no per-row predictions: the evaluation ran no classification task")
        return None
    if not checkpoint or not Path(checkpoint).is_dir() or not manifest or not Path(manifest).is_file():
        log.info("no per-row predictions: checkpoint %s or manifest %s is not here any more", checkpoint, manifest)
        return None
    from medfuse.data import ManifestDataset, read_manifest, resolve_config, validate_manifest
    from medfuse.evaluate.runner import eval_config
    from medfuse.evaluate.tasks import EvalContext
    from medfuse.evaluate.tasks.classification import labelled
    from medfuse.models import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    settings = eval_config(config.get("evaluate"))
    data_cfg = resolve_config(dict(config.get("data") or {}))
    with tempfile.TemporaryDirectory() as scratch:
        report = validate_manifest(read_manifest(manifest), data_cfg, quarantine_path=Path(scratch) / "q.csv",
                                   decode=settings.decode_check)
        dataset = ManifestDataset(report, data_cfg, split=results.get("split"), max_rows=settings.max_rows)
        ctx = EvalContext(model=ckpt.model, dataset=dataset, config=settings, seed=int(results.get("seed", 0)),
                          label_names=list(ckpt.label_names) if ckpt.label_names else None,
                          thresholds=ckpt.thresholds, temperature=float(ckpt.extra.get("temperature") or 1.0),
                          checkpoint=ckpt, report=report, out_dir=Path(scratch))
        if ctx.kind != "diagnosis" or ctx.label_task == "regression":
            return None
        scored = labelled(ctx.predictions(), ctx.label_task)
    count = 1 if scored.probs.ndim == 1 else scored.probs.shape[1]
    frame = predictions_frame(scored.task, ctx.output_names(count), [int(dataset.lines[i]) for i in scored.index],
                              [dataset.patient_ids[i] for i in scored.index], scored.y, scored.probs)
    expected = (results.get("tasks") or {}).get("classification", {}).get("n", results.get("n"))
    if expected is not None and len(frame) != int(expected):
        log.warning("per-row predictions left out: %d rows re-predicted but the evaluation scored %s", len(frame),
                    expected)
        return None
    return frame
