"""``medfuse evaluate`` for a vision-language checkpoint: ``results.json`` and ``report.html`` like any model.

The split is read with the data config stored at training (or the preset detected from the manifest),
questions are answered as :func:`medfuse.evaluate.generative.evaluate_generative` does (closed questions
choose among the candidates of the answer bank saved with the model, open ones are generated) and the
headline accuracies and report scores get (patient-level) bootstrap intervals. The visual-reliance figures
(blank and shuffled images) are reported next to them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.core.config import to_dict
from medfuse.core.errors import ConfigError
from medfuse.data import build_loader
from medfuse.evaluate.generative import GenerativeEvalConfig, answer_kinds, collect_rows, evaluate_generative
from medfuse.evaluate.metrics import vqa_score
from medfuse.evaluate.results import EvaluationResult, TaskResult, build_results, metric_entry
from medfuse.evaluate.tasks.base import multi_interval
from medfuse.evaluate.tasks.efficiency import parameter_counts

log = logging.getLogger(__name__)

GENERATION_KEYS = ("max_new_tokens", "num_beams", "length_penalty", "temperature", "top_k", "top_p", "stop")


def vlm_directory(checkpoint: str | Path) -> Path | None:
    """Return the vision-language checkpoint folder ``checkpoint`` names (a run folder's ``model/`` too), else None."""
    from medfuse.models.generative import is_vlm_checkpoint

    path = Path(checkpoint)
    for candidate in (path, path / "model"):
        if candidate.is_dir() and is_vlm_checkpoint(candidate):
            return candidate
    return None


def _eval_settings(loaded: Any, settings: Any, seed: int) -> GenerativeEvalConfig:
    """Return the generation settings saved with the model, with ``vlm.*`` evaluation options on top."""
    saved = dict(loaded.extra.get("generation") or {})
    generation = {k: saved[k] for k in GENERATION_KEYS if saved.get(k) is not None}
    options = dict(settings.options.get("vlm", {}))
    generation.update(dict(options.pop("generation", {}) or {}))
    known = set(GenerativeEvalConfig.__dataclass_fields__) - {"generation", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"options.vlm: unknown option(s) {unknown}; known: {sorted(known)}")
    if saved.get("prompt") and "prompt" not in options:
        options["prompt"] = saved["prompt"]
    return GenerativeEvalConfig(generation=generation, seed=seed, **options)


def _intervals(result: Any, settings: Any, seed: int, uncertain_as: int = 1) -> dict[str, dict[str, Any]]:
    """Return the headline metrics with (patient-level) bootstrap intervals, others as plain entries."""
    rows = result.rows
    metrics: dict[str, dict[str, Any]] = {}
    if result.kind == "report":
        from medfuse.evaluate.drafting import score_drafts

        metrics = score_drafts({"generated": result.predictions["image"]}, rows.targets, main="generated",
                               groups=np.asarray(rows.groups, dtype=object), n_resamples=settings.n_resamples,
                               seed=seed, uncertain_as=uncertain_as)
    if result.kind == "vqa":
        scores = np.asarray([vqa_score(p, t) for p, t in zip(result.predictions["image"], rows.targets)], dtype=np.float64)
        closed = np.asarray([k == "closed" for k in answer_kinds(rows)])

        def measure(sel: np.ndarray) -> dict[str, float]:
            s, c = scores[sel], closed[sel]
            return {"vqa_overall": float(s.mean()),
                    "vqa_closed": float(s[c].mean()) if c.any() else float("nan"),
                    "vqa_open": float(s[~c].mean()) if (~c).any() else float("nan")}

        groups = np.asarray(rows.groups, dtype=object)
        metrics = multi_interval(measure, len(scores), groups=groups, n_resamples=settings.n_resamples, seed=seed)
    for name, value in result.metrics.items():
        metrics.setdefault(name, metric_entry(value))
    return metrics


def evaluate_vlm_checkpoint(
    directory: Path, manifest: str | Path, *, split: str | None, out: Path, settings: Any, overrides: Sequence[str],
    seed: int,
) -> EvaluationResult:
    """Evaluate the vision-language checkpoint in ``directory`` on ``manifest``'s split; write results and report."""
    from medfuse.evaluate.runner import read_split, split_summary, write_outputs
    from medfuse.models.generative import AnswerBank, load_vlm

    loaded = load_vlm(directory)
    data = read_split(loaded, manifest, split, out, settings)
    dataset = data.dataset
    cfg = _eval_settings(loaded, settings, seed)
    bank_data = loaded.extra.get("answer_bank")
    bank = AnswerBank.from_dict(bank_data) if isinstance(bank_data, Mapping) and bank_data else None
    log.info("evaluating vision-language model %s on %s split %r (%d rows)", directory, data.rows.name, data.split,
             len(dataset))
    batches = collect_rows(build_loader(dataset, batch_size=cfg.batch_size), cfg)
    result = evaluate_generative(loaded.model, batches, bank=bank, config=cfg)
    metrics = _intervals(result, settings, seed, cfg.uncertain_as)
    task = "vqa" if result.kind == "vqa" else "report_generation"
    entry = TaskResult(metrics=metrics, artifacts={"examples": result.examples(), "generation": cfg.generation,
                                                   "constrained_closed": cfg.constrained_closed}, n=len(result.rows.targets))
    card = loaded.card.to_dict() if loaded.card is not None else {}
    results = build_results(
        task=task, split=data.split, n=entry.n, metrics=metrics, subgroups={},
        config={"checkpoint": str(directory), "manifest": str(manifest), "split": data.split, "tasks": [task],
                "overrides": list(overrides), "evaluate": to_dict(settings), "data": to_dict(data.data_cfg),
                "model": to_dict(loaded.config)},
        tasks={task: entry.to_dict()},
        artifacts={"results": "results.json", "quarantine": str(data.report.quarantine_path or data.quarantine)},
        model_card={**card, "kind": "vlm", **parameter_counts(loaded.model), "versions": dict(loaded.versions),
                    "checkpoint": str(directory)},
        data=split_summary(data), seed=int(seed),
    )
    return write_outputs(results, out)

__all__ = ["evaluate_vlm_checkpoint", "vlm_directory"]
