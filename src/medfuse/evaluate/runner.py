"""``evaluate_checkpoint``: a checkpoint and a manifest in, ``results.json`` and ``report.html`` out.

The steps: load the checkpoint (a folder, or ``name@version`` from the model registry), pick the data
config (the one stored at training, else the preset detected from the manifest), validate the manifest
(bad rows quarantined to a file in ``out``), read the evaluated split, run the tasks (by default the
ones that suit the model kind), write ``results.json`` and render the report. Every number but the
timings follows from the command and the seed.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfuse.core import progress
from medfuse.core.config import apply_overrides, from_dict, load_yaml, to_dict
from medfuse.core.errors import ConfigError
from medfuse.data import ManifestDataset, ValidationReport, read_manifest, validate_manifest
from medfuse.data.splits import canonical_split, resolve_split
from medfuse.evaluate.results import EvaluationResult, TaskResult, build_results, write_results
from medfuse.evaluate.tasks import EVAL_TASKS, EvalConfig, EvalContext, TaskSkipped, run_task
from medfuse.evaluate.tasks.efficiency import parameter_counts
from medfuse.evaluate.tasks.sources import data_config_for, resolve_checkpoint
from medfuse.models import LoadedCheckpoint

log = logging.getLogger(__name__)

DEFAULT_TASKS: dict[str, tuple[str, ...]] = {
    "diagnosis": ("classification", "fairness", "robustness", "efficiency", "modality_comparison", "interpretability"),
    "dual_encoder": ("retrieval", "zero_shot", "efficiency"),
    "vqa": ("vqa",),
}
# Tasks whose metrics are the run's headline ``metrics`` (the first task naming a metric wins).
HEADLINE_TASKS = ("classification", "calibration", "retrieval", "zero_shot", "vqa", "report_generation", "drafting")
SPLIT_PREFERENCE = ("test", "val")


def eval_config(
    config: EvalConfig | Mapping[str, Any] | str | Path | None, overrides: Sequence[str] = (),
) -> EvalConfig:
    """Return the evaluation settings (a config, a mapping or a YAML file) with ``key=value`` overrides applied.

    A YAML file may hold the settings at the top level or under ``evaluate:``. ``<task>.<option>=v``
    sets a task option (``few_shot.ks=[1,4]``), ``data.<field>=v`` a data-config field, anything else
    an :class:`EvalConfig` field (``n_resamples=200``).
    """
    if isinstance(config, (str, Path)):
        loaded = load_yaml(config)
        config = loaded["evaluate"] if isinstance(loaded.get("evaluate"), Mapping) else loaded
    base = to_dict(config) if isinstance(config, EvalConfig) else dict(config or {})
    routed = []
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        head = key.split(".", 1)[0]
        routed.append(f"options.{text.strip()}" if head in EVAL_TASKS and "." in key else text)
    return from_dict(EvalConfig, apply_overrides(base, routed), where="evaluate")


def choose_split(report: ValidationReport, requested: str | None) -> str | None:
    """Return the split to evaluate: the requested one, else test, else val, else the only/first one."""
    column = report.config.split
    if not column or column not in report.kept_frame.columns:
        if requested:
            raise ConfigError(f"split: '{requested}' asked for, but the data config names no split column")
        return None
    available = sorted({str(v) for v in report.kept_frame[column].dropna().astype(str) if str(v).strip()})
    if requested:
        return resolve_split(requested, available)
    for wanted in SPLIT_PREFERENCE:
        matches = [a for a in available if canonical_split(a) == wanted]
        if matches:
            return matches[0]
    if not available:
        raise ConfigError(f"{report.manifest.where()}: no rows left to evaluate after validation")
    log.warning("no test or validation split in %s; evaluating split '%s'", report.manifest.name, available[0])
    return available[0]


def default_tasks(kind: str) -> list[str]:
    """Return the tasks run for a model kind when none are named."""
    return list(DEFAULT_TASKS[kind])


def _headline(order: Sequence[str], results: Mapping[str, TaskResult]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in order:
        if name in HEADLINE_TASKS and name in results:
            for metric, entry in results[name].metrics.items():
                merged.setdefault(metric, entry)
    return merged


def _model_card(ckpt: LoadedCheckpoint, ctx: EvalContext) -> dict[str, Any]:
    card = ckpt.card.to_dict() if ckpt.card is not None else {}
    return {**card, "kind": ctx.kind, "label_names": ctx.label_names, "thresholds": ckpt.thresholds,
            "temperature": ctx.temperature, **parameter_counts(ckpt.model), "versions": dict(ckpt.versions),
            "checkpoint": str(ckpt.path) if ckpt.path else None}


def run_tasks(ctx: EvalContext, names: Sequence[str]) -> tuple[dict[str, Any], dict[str, TaskResult]]:
    """Run ``names`` in order; return each task's entry for ``results["tasks"]`` and the results that ran.

    A task that does not apply is recorded as skipped with its reason; a task that fails is recorded
    with its error (and logged with the traceback) while the others still run.
    """
    entries: dict[str, Any] = {}
    done: dict[str, TaskResult] = {}
    with progress.task("evaluate", total=len(names)) as bar:
        for name in names:
            start = time.perf_counter()
            bar.update(0, task=name)
            try:
                result = run_task(name, ctx)
            except TaskSkipped as exc:
                log.info("task %s skipped: %s", name, exc)
                entries[name] = {"skipped": str(exc)}
            except Exception as exc:  # one failing task must not lose the others' results
                log.error("task %s failed: %s\n%s", name, exc, traceback.format_exc())
                entries[name] = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                done[name] = result
                entry = result.to_dict()
                if name == "fairness":
                    entry.pop("subgroups", None)  # written once, as the run's top-level "subgroups"
                entries[name] = {**entry, "seconds": round(time.perf_counter() - start, 3)}
            bar.update(1)
    return entries, done


def _write_report(results: dict[str, Any], out: Path) -> Path | None:
    try:
        from medfuse.evaluate.report import write_report
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.startswith("medfuse.evaluate.report"):
            log.info("no report writer installed (medfuse.evaluate.report); wrote results.json only")
        else:
            log.error("report.html could not be written: the report writer failed to import: %s", exc)
        return None
    try:
        return Path(write_report(results, out))
    except Exception as exc:  # the results are written; a report failure is reported, not fatal
        log.error("report.html could not be written: %s\n%s", exc, traceback.format_exc())
        return None


@dataclass
class EvaluatedSplit:
    """The manifest read for a checkpoint: its data config, the validation report, the split and its rows."""

    rows: Any
    data_cfg: Any
    report: ValidationReport
    split: str | None
    dataset: ManifestDataset
    quarantine: Path


def read_split(model: Any, manifest: str | Path, split: str | None, out_dir: Path, settings: EvalConfig) -> EvaluatedSplit:
    """Read ``manifest`` with ``model``'s stored data config, validate it (quarantine in ``out_dir``), pick the split."""
    rows = read_manifest(manifest)
    data_cfg = data_config_for(model, rows.columns, settings.data, path=rows.path)
    quarantine = out_dir / f"{Path(manifest).stem}.quarantine.csv"
    report = validate_manifest(rows, data_cfg, quarantine_path=quarantine, decode=settings.decode_check)
    chosen = choose_split(report, split)
    dataset = ManifestDataset(report, data_cfg, split=chosen, max_rows=settings.max_rows)
    if len(dataset) == 0:
        raise ConfigError(f"{rows.where()}: split '{chosen}' has no rows left after validation; see {quarantine}")
    return EvaluatedSplit(rows, data_cfg, report, chosen, dataset, quarantine)


def split_summary(data: EvaluatedSplit) -> dict[str, Any]:
    """Return the ``data`` entry of ``results.json``: validation counts, the split and the rows evaluated."""
    return {**data.report.to_dict(), "split": data.split, "rows_evaluated": len(data.dataset),
            "failed_samples": data.dataset.n_failed}


def write_outputs(results: dict[str, Any], out_dir: Path) -> EvaluationResult:
    """Write ``results.json`` and ``report.html`` (linked from the results) to ``out_dir``."""
    path = write_results(results, out_dir)
    report_path = _write_report(results, out_dir)
    if report_path is not None:
        results["artifacts"]["report"] = report_path.name if report_path.parent == out_dir else str(report_path)
        path = write_results(results, out_dir)
    return EvaluationResult(results=results, out_dir=out_dir, results_path=path, report_path=report_path)


def evaluate_checkpoint(
    checkpoint: str | Path | LoadedCheckpoint,
    manifest: str | Path,
    *,
    split: str | None = None,
    tasks: Sequence[str] | None = None,
    out: str | Path,
    overrides: Sequence[str] = (),
    seed: int = 0,
    config: EvalConfig | Mapping[str, Any] | str | Path | None = None,
) -> EvaluationResult:
    """Evaluate a checkpoint on a manifest's split and write ``results.json`` (and ``report.html``) to ``out``.

    checkpoint: a checkpoint folder, ``name@version`` (model registry) or a loaded checkpoint.
    split: the split to evaluate (default: test, else val). tasks: registered task names (default:
    by model kind, see :data:`DEFAULT_TASKS`). config: settings (:class:`EvalConfig`, a mapping or a YAML
    file); overrides: ``key=value`` settings on top (see :func:`eval_config`).
    seed: drives every resample and random draw.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = eval_config(config, overrides)
    names = list(tasks) if tasks else None
    for name in names or ():
        EVAL_TASKS.get(name)  # unknown names fail before any work, with the close matches
    if isinstance(checkpoint, (str, Path)):
        from medfuse.evaluate.generative_runner import evaluate_vlm_checkpoint, vlm_directory

        vlm = vlm_directory(checkpoint)
        if vlm is not None:
            return evaluate_vlm_checkpoint(vlm, manifest, split=split, out=out_dir, settings=settings,
                                           overrides=overrides, seed=seed)
    ckpt = resolve_checkpoint(checkpoint)
    data = read_split(ckpt, manifest, split, out_dir, settings)
    rows, data_cfg, report, chosen, dataset = data.rows, data.data_cfg, data.report, data.split, data.dataset
    ctx = EvalContext(
        model=ckpt.model, dataset=dataset, config=settings, seed=int(seed),
        label_names=list(ckpt.label_names) if ckpt.label_names else None, thresholds=ckpt.thresholds,
        temperature=float(ckpt.extra.get("temperature") or 1.0), checkpoint=ckpt, report=report, out_dir=out_dir,
    )
    names = names or default_tasks(ctx.kind)
    log.info("evaluating %s (%s) on %s split %r (%d rows): %s", ckpt.path, ctx.kind, rows.name, chosen,
             len(dataset), ", ".join(names))
    entries, done = run_tasks(ctx, names)
    if not done:
        errors = {n: e.get("error") or e.get("skipped") for n, e in entries.items()}
        raise ConfigError(f"no evaluation task could run: {errors}")
    primary = next(n for n in names if n in done)
    subgroups = done["fairness"].subgroups if "fairness" in done else {}
    results = build_results(
        task=primary, split=chosen, n=done[primary].n, metrics=_headline(names, done), subgroups=subgroups,
        config={"checkpoint": str(ckpt.path) if ckpt.path else str(checkpoint), "manifest": str(manifest),
                "split": chosen, "tasks": names, "overrides": list(overrides), "evaluate": to_dict(settings),
                "data": to_dict(data_cfg), "model": to_dict(ckpt.config)},
        tasks=entries, artifacts={"results": "results.json", "quarantine": str(report.quarantine_path or data.quarantine)},
        model_card=_model_card(ckpt, ctx), data=split_summary(data), seed=int(seed),
    )
    return write_outputs(results, out_dir)

