"""int8 ONNX models and what they cost: size, CPU latency, and the metric change on a manifest.

Dynamic quantization (onnxruntime ``quantize_dynamic``) stores weights as int8 and quantizes activations
on the fly; static quantization (``quantize_static``, QDQ format, per-channel weights) also fixes the
activation ranges from a calibration data reader fed with rows of a manifest (MinMax calibration).
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.core import require
from medfuse.core.errors import ConfigError
from medfuse.export.onnx import Role, session

log = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "dev", "validate", "validation", "test")


def quantize_dynamic_file(source: Path, target: Path) -> Path:
    """Write a dynamically quantized (int8 weights) copy of ``source`` to ``target``."""
    require("onnxruntime.quantization", extra="onnx", purpose="int8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


class FeedReader:
    """An onnxruntime ``CalibrationDataReader`` over prepared feeds (input name -> array per batch)."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self._iter: Iterator[Mapping[str, np.ndarray]] = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return dict(batch) if batch is not None else None

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


def quantize_static_file(source: Path, target: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> Path:
    """Write a statically quantized (QDQ, per-channel int8) copy of ``source`` calibrated on ``feeds``."""
    require("onnxruntime.quantization", extra="onnx", purpose="int8 quantization")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not feeds:
        raise ConfigError("calibration: no rows to calibrate on")

    class Reader(FeedReader, CalibrationDataReader):  # onnxruntime checks the base class
        pass

    with warnings.catch_warnings():
        # constant-zero tensors (zero biases, the zeros that replace absent inputs) get scale 0; onnxruntime
        # divides by it computing their zero point and warns, while they still dequantize to exactly 0
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        quantize_static(str(source), str(target), Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return target


def latency_ms(run: Callable[[], Any], *, budget_s: float = 1.5, min_runs: int = 5, max_runs: int = 50) -> dict[str, float]:
    """Return the median and p90 wall time (ms) of ``run()`` after one warm-up, within about ``budget_s``."""
    run()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    ordered = sorted(times)
    return {"median": round(statistics.median(times), 3), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
            "runs": len(times)}


# ---------------------------------------------------------------- manifest rows as feeds
def manifest_feeds(ckpt: Any, manifest: str | Path, model_roles: Sequence[Role], *, split: str | None, max_rows: int,
                   batch_size: int = 16) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None, str | None, str | None]:
    """Return ``model.onnx`` feeds for rows of ``manifest`` (one per batch), their labels, the task and split.

    ``split``: ``"eval"`` picks the first of val/dev/validate/test the manifest has (else every row),
    ``"train"`` the training split (else every row), None every row.
    """
    from medfuse.data import ManifestDataset, build_loader, read_manifest
    from medfuse.evaluate.tasks.sources import data_config_for

    table = read_manifest(manifest)
    cfg = data_config_for(ckpt, table.columns, path=table.path)
    chosen = _pick_split(table, cfg, split)
    dataset = ManifestDataset(table, cfg, split=chosen, max_rows=max_rows)
    if len(dataset) == 0:
        raise ConfigError(f"{table.path}: no rows in split {chosen!r}")
    encoders = ckpt.model.named_encoders()
    feeds, labels = [], []
    for batch in build_loader(dataset, batch_size, shuffle=False):
        if len(batch["index"]) == 0:
            continue
        feeds.append(_batch_feeds(batch, model_roles, encoders))
        if "labels" in batch:
            labels.append(batch["labels"].numpy())
    return feeds, (np.concatenate(labels) if labels else None), dataset.task, dataset.split


def _pick_split(table: Any, cfg: Any, split: str | None) -> str | None:
    from medfuse.data import text_value

    if split is None or not cfg.split or cfg.split not in table.columns:
        return None
    names = {text_value(v) for v in table.dataframe[cfg.split].unique()}
    wanted = EVAL_SPLITS if split == "eval" else ("train",)
    return next((s for s in wanted if s in names), None)


def _batch_feeds(batch: Mapping[str, Any], model_roles: Sequence[Role], encoders: Mapping[str, Any]) -> dict[str, np.ndarray]:
    size = len(batch["index"])
    present = batch.get("present", {})
    feeds: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for role in model_roles:
        value = batch.get(role.key if role.kind != "image" else "image")
        mask = present.get(role.key)
        if role.kind == "text":
            texts = list(value) if value is not None else [""] * size
            tokens = encoders[role.encoder].tokenize(texts)
            feeds[role.names[0]] = tokens["input_ids"].long().numpy()
            feeds[role.names[1]] = tokens["attention_mask"].long().numpy()
            if mask is None:
                mask = torch.tensor([bool(t.strip()) for t in texts])
        elif value is None:
            feeds[role.names[0]] = np.zeros((size, *role.shape), dtype=np.float32)
            mask = torch.zeros(size, dtype=torch.bool)
        else:
            feeds[role.names[0]] = value.float().numpy()
        masks[f"{role.key}_present"] = (mask if mask is not None else torch.ones(size, dtype=torch.bool)).bool().numpy()
    return feeds | masks


def run_feeds(path: Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """Return the concatenated ``logits`` of ``model.onnx``-style graph ``path`` over ``feeds``."""
    sess = session(path)
    return np.concatenate([sess.run(["logits"], dict(f))[0] for f in feeds])


@torch.no_grad()
def torch_logits(graph_module: torch.nn.Module, feeds: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """Return PyTorch logits of a ``DiagnosisGraph`` over the same feeds."""
    return np.concatenate([graph_module(*(torch.from_numpy(v) for v in f.values()))[0].float().numpy() for f in feeds])


def metrics_of(logits: np.ndarray, labels: np.ndarray | None, task: str | None, temperature: float,
               thresholds: Any) -> dict[str, float]:
    """Return ``accuracy`` and ``auroc`` (``medfuse.evaluate.metrics``) of calibrated probabilities."""
    from medfuse.evaluate.metrics import classification_metrics
    from medfuse.models.inference import probabilities

    if labels is None or task not in ("binary", "multiclass", "multilabel"):
        return {}
    probs = probabilities(torch.from_numpy(logits), task, temperature).numpy()
    ok = labels >= 0 if task != "multilabel" else np.isfinite(labels).all(axis=1)
    if not ok.any():
        return {}
    cut = thresholds if isinstance(thresholds, (float, list)) else 0.5
    values = classification_metrics(labels[ok], probs[ok], task=task, threshold=cut)
    return {k: round(float(values[k]), 6) for k in ("accuracy", "auroc") if k in values}
