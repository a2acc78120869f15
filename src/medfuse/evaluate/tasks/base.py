"""What every evaluation task shares: the registry, the config, the context and bootstrap helpers.

A task is a function ``task(ctx: EvalContext, **options) -> TaskResult``, registered in
:data:`EVAL_TASKS`. The context carries the model, the evaluated split, the settings and the seed, and
caches what several tasks need (the predictions over the split, other splits' datasets).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError, MedfuseError
from medfuse.core.registry import Registry, unknown_name_message
from medfuse.data import ManifestDataset, ValidationReport, build_loader
from medfuse.evaluate.metrics import bootstrap_ci
from medfuse.evaluate.metrics.uncertainty import draw_counts
from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.models import LoadedCheckpoint
from medfuse.models.inference import Predictions, predict, unwrap

log = logging.getLogger(__name__)

EVAL_TASKS: Registry[Callable[..., TaskResult]] = Registry("evaluation task")
KINDS = ("diagnosis", "dual_encoder", "vqa")


class TaskSkipped(MedfuseError):
    """The task does not apply to this model or data (the reason is recorded, nothing fails)."""


@dataclass
class EvalConfig:
    """Settings of an evaluation run; ``--set key=value`` overrides them.

    batch_size, num_workers, device (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``): how batches run.
    n_resamples: bootstrap resamples for the 95% intervals (0: no intervals).
    train_split: rows the probes, few-shot and retrieval drafting learn from.
    calibration_split: rows a temperature is fitted on (None: no fitting).
    min_group_size: subgroups with fewer rows are flagged ``small`` (never hidden).
    max_rows: evaluate the first rows of the split only (quick runs).
    decode_check: decode every referenced file during validation (else check existence only).
    data: overrides of the data config (column roles, image size, ...).
    options: per-task keyword options, e.g. ``{"few_shot": {"ks": [1, 4]}}`` (``--set few_shot.ks=[1,4]``).
    """

    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    n_resamples: int = 1000
    train_split: str = "train"
    calibration_split: str | None = None
    min_group_size: int = 30
    max_rows: int | None = None
    decode_check: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "min_group_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"evaluate.{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int) or self.n_resamples < 0:
            raise ConfigError(f"evaluate.n_resamples: expected an integer >= 0, got {self.n_resamples!r}")
        if self.max_rows is not None and (not isinstance(self.max_rows, int) or self.max_rows < 1):
            raise ConfigError(f"evaluate.max_rows: expected a positive integer or null, got {self.max_rows!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or str(self.device).startswith("cuda:")):
            raise ConfigError(f"evaluate.device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        for name, opts in self.options.items():
            if not isinstance(opts, Mapping):
                raise ConfigError(f"evaluate.options.{name}: expected a mapping of options, got {opts!r}")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``auto`` (CUDA when available) or an explicit name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_kind(model: nn.Module, checkpoint: LoadedCheckpoint | None = None) -> str:
    """Return ``dual_encoder``, ``vqa`` (a diagnosis model answering ``question``) or ``diagnosis``."""
    inner = unwrap(model)
    if callable(getattr(inner, "encode_image", None)) and callable(getattr(inner, "encode_text", None)):
        return "dual_encoder"
    extra = checkpoint.extra if checkpoint is not None else {}
    trained_for = str(extra.get("task") or extra.get("train_task") or "").lower()  # the trainer writes train_task
    if trained_for == "vqa" or "question" in dict(getattr(inner, "inputs", {}) or {}).values():
        return "vqa"
    return "diagnosis"


def output_names(label_names: Sequence[str] | None, count: int) -> list[str]:
    """Return one name per output column: the label names, the positive class of two, or ``0..K-1``."""
    names = [str(n) for n in (label_names or [])]
    if len(names) == count:
        return names
    if count == 1 and len(names) == 2:
        return names[1:]
    return [str(i) for i in range(count)]


def threshold_values(cut: Any, names: Sequence[str], count: int) -> float | list[float]:
    """Return a checkpoint's thresholds (None, float, list or ``{label: cut}``) as one float or one per output."""
    if cut is None:
        return 0.5
    if isinstance(cut, Mapping):
        values = [float(cut.get(name, 0.5)) for name in names]
        return values[0] if count == 1 else values
    if isinstance(cut, (list, tuple)):
        values = [float(c) for c in cut]
        if count == 1 and values:
            return values[-1]
        if len(values) != count:
            raise ConfigError(f"thresholds: {len(values)} values for {count} outputs")
        return values
    return float(cut)


@dataclass
class EvalContext:
    """Everything a task reads: the model, the evaluated split and the run's settings.

    model: a diagnosis model / dual encoder (anything with the same outputs). dataset: the evaluated
    split. kind: ``diagnosis`` | ``dual_encoder`` | ``vqa`` (inferred when empty). label_names: output
    names (default: the dataset's). thresholds: float, per-label list or ``{label: cut}``. temperature:
    divides logits before the activation. checkpoint / report: where model and rows came from (optional).
    results: earlier tasks' results of the same run (fairness and robustness reuse them).
    """

    model: nn.Module
    dataset: ManifestDataset
    config: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    kind: str = ""
    label_names: list[str] | None = None
    thresholds: Any = None
    temperature: float = 1.0
    checkpoint: LoadedCheckpoint | None = None
    report: ValidationReport | None = None
    out_dir: Path | None = None
    results: dict[str, TaskResult] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.kind = self.kind or model_kind(self.model, self.checkpoint)
        check_choice("kind", self.kind, KINDS)
        self.device = resolve_device(self.config.device)
        self.model = self.model.to(self.device).eval()
        if self.label_names is None:
            self.label_names = self.dataset.label_names
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ConfigError(f"temperature: expected a positive number, got {self.temperature!r}")

    # ------------------------------------------------------------------ what the model predicts
    @property
    def label_task(self) -> str:
        """binary | multiclass | multilabel | regression: the head's task, else the data's."""
        if self.kind == "vqa":
            return "multiclass"  # one answer out of the vocabulary
        head = getattr(unwrap(self.model), "head", None)
        task = getattr(head, "task", "") or ""
        if not task and self.checkpoint is not None and self.checkpoint.config.head is not None:
            task = self.checkpoint.config.head.type
        task = task or self.dataset.task or ""
        if not task:
            raise TaskSkipped("the model has no prediction head and the data names no label")
        return task

    def threshold(self, count: int) -> float | list[float]:
        """Return the decision threshold: one float, or one per label (``count`` labels)."""
        return threshold_values(self.thresholds, self.output_names(count), count)

    def output_names(self, count: int) -> list[str]:
        """Return one name per output column (binary: the positive class)."""
        return output_names(self.label_names, count)

    # ------------------------------------------------------------------ data
    def split_dataset(self, split: str) -> ManifestDataset:
        """Return another split of the same (validated) rows and data config, cached."""
        key = f"split/{split}"
        if key not in self.cache:
            source = self.report if self.report is not None else self.dataset.manifest
            self.cache[key] = ManifestDataset(
                source, self.dataset.config, split=split, classes=self.dataset.classes,
            )
        return self.cache[key]

    def batches(
        self, dataset: Dataset | None = None, *, batch_size: int | None = None,
        transform: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the batches of ``dataset`` (default: the evaluated split) in order, empty ones skipped.

        ``transform(batch, batch_number)`` may change each batch (corruptions, absent modalities).
        Batch keys are aliased to the keys a dual encoder reads when they differ.
        """
        ds = dataset if dataset is not None else self.dataset
        loader = build_loader(ds, batch_size or self.config.batch_size, shuffle=False,
                              num_workers=self.config.num_workers, seed=self.seed)
        inner = unwrap(self.model)
        for number, batch in enumerate(loader):
            if len(batch["index"]) == 0:
                continue
            for attr, key in (("image_key", "image"), ("text_key", "text")):
                wanted = getattr(inner, attr, key)
                if wanted not in batch and key in batch:
                    batch[wanted] = batch[key]
            yield transform(batch, number) if transform is not None else batch

    def predictions(
        self, dataset: Dataset | None = None, *, transform: Callable[..., dict[str, Any]] | None = None,
        temperature: float | None = None, model: nn.Module | None = None, keep_fused: bool = False,
    ) -> Predictions:
        """Return the classifier's predictions over ``dataset`` (the evaluated split cached when plain)."""
        plain = dataset is None and transform is None and temperature is None and model is None
        if plain and "predictions" in self.cache and (not keep_fused or self.cache["predictions"].fused is not None):
            return self.cache["predictions"]
        net = model if model is not None else self.model
        net.to(self.device)
        pred = predict(net, self.batches(dataset, transform=transform), self.label_task,
                       temperature=self.temperature if temperature is None else temperature,
                       keep_fused=keep_fused or plain)
        if plain:
            self.cache["predictions"] = pred
        return pred

    def patient_groups(self, index: Sequence[int], dataset: ManifestDataset | None = None) -> np.ndarray | None:
        """Return patient ids ``(N,)`` of dataset positions ``index`` for cluster resampling, or None."""
        ds = dataset if dataset is not None else self.dataset
        if not ds.config.patient:
            return None
        ids = [ds.patient_ids[i] for i in index]
        if not any(ids):
            return None
        return np.asarray([pid or f"row:{i}" for pid, i in zip(ids, index)], dtype=object)

    # ------------------------------------------------------------------ intervals
    def interval(
        self, fn: Callable[..., Any], *arrays: Any, groups: Any = None,
        kwargs: Mapping[str, Any] | None = None, n_resamples: int | None = None,
    ) -> dict[str, Any]:
        """Return ``{"value", "ci95"}`` of ``fn(*arrays, **kwargs)`` with a (patient-level) bootstrap interval."""
        resamples = self.config.n_resamples if n_resamples is None else n_resamples
        value = float(fn(*arrays, **dict(kwargs or {})))
        if resamples == 0 or not np.isfinite(value):
            return metric_entry(value)
        ci = bootstrap_ci(fn, *arrays, groups=groups, n_resamples=resamples, seed=self.seed, metric_kwargs=kwargs)
        return metric_entry(ci.value, (ci.lo, ci.hi) if ci.n_valid else None)


def bootstrap_draws(
    fn: Callable[[np.ndarray], Mapping[str, float]], n: int, *, groups: Any = None, n_resamples: int, seed: int,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Return the point values of ``fn(arange(n))`` and each metric's values over the resamples.

    fn: maps the row positions of one resample ``(N',)`` (with repeats) to ``{name: value}``. Rows are
    drawn with the metrics package's resampler (whole patients when ``groups`` is given), so several
    metrics share the same resamples.
    """
    point = {k: float(v) for k, v in fn(np.arange(n)).items()}
    draws: dict[str, list[float]] = {k: [] for k in point}
    rng = np.random.default_rng(seed)
    positions = np.arange(n)
    for block in (draw_counts(n, n_resamples, groups, rng) if n_resamples else ()):
        for counts in block.astype(np.int64):
            values = fn(np.repeat(positions, counts))
            for k in draws:
                draws[k].append(float(values.get(k, np.nan)))
    return point, {k: np.asarray(v, dtype=np.float64) for k, v in draws.items()}


def entries_from_draws(point: Mapping[str, float], draws: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Return ``{"value", "ci95"}`` entries: percentile intervals of the finite resample values."""
    out = {}
    for k, v in point.items():
        arr = np.asarray(draws.get(k, ()), dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        ci = tuple(np.quantile(arr, [0.025, 0.975])) if len(arr) and np.isfinite(v) else None
        out[k] = metric_entry(v, ci)
    return out


def multi_interval(
    fn: Callable[[np.ndarray], Mapping[str, float]], n: int, *, groups: Any = None, n_resamples: int, seed: int,
) -> dict[str, dict[str, Any]]:
    """Return entries for every metric of ``fn(rows)`` with one shared bootstrap (see :func:`bootstrap_draws`)."""
    return entries_from_draws(*bootstrap_draws(fn, n, groups=groups, n_resamples=n_resamples, seed=seed))


def task_options(name: str, fn: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``options`` after checking each is a keyword the task accepts (close matches on typos)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in allowed:
            raise ConfigError(f"options.{name}: {unknown_name_message('option', str(key), allowed)}")
    return dict(options)


def run_task(name: str, ctx: EvalContext, **options: Any) -> TaskResult:
    """Run registered task ``name`` on ``ctx`` with its configured options (``options`` override them)."""
    fn = EVAL_TASKS.get(name)
    merged = {**dict(ctx.config.options.get(name, {})), **options}
    result = fn(ctx, **task_options(name, fn, merged))
    ctx.results[name] = result
    return result
