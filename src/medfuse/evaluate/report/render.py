"""Assemble the self-contained ``report.html`` from a results dictionary.

The page holds its stylesheet inline and draws every plot as inline SVG; images are ``data:`` URIs. It
loads nothing from a network and runs no script. Every section is always on the page under a fixed
``id``; one without data says "Not evaluated" and names what it looked for, so a reader can tell a
result that was not computed from one that was cut.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medfuse.evaluate.report import examples, sections
from medfuse.evaluate.report.html import Source, esc, gather_sources, mapping, not_evaluated, without_repeats
from medfuse.evaluate.report.normalise import canonical

log = logging.getLogger(__name__)

Builder = Callable[[Mapping[str, Any], Sequence[Source]], "str | None"]
MAX_RAW_CHARS = 200_000
KNOWN_TOP = {"task", "split", "n", "metrics", "subgroups", "config", "medfuse_version", "tasks", "artifacts",
             "model_card", "versions", "fairness", "title", "data", "seed"}
KNOWN_TASK = {"metrics", "artifacts", "task", "split", "n", "subgroups", "skipped", "error", "seconds"}
KNOWN_ARTIFACTS = {"roc", "pr", "confusion", "reliability", "reliability_scaled", "robustness", "efficiency",
                   "modality_comparison", "gradcam", "retrieval_examples", "generation_examples", "vqa_examples",
                   "few_shot", "calibration", "temperature", "results", "report", "quarantine"}
# errors a malformed piece of results can raise while a section is drawn
DATA_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError)


@dataclass(frozen=True)
class SectionSpec:
    """A section of the page: its anchor ``id``, heading, builder and what it needs when absent."""

    id: str
    title: str
    build: Builder
    needs: str


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec("summary", "Summary", sections.summary, "no metrics in the results (metrics, tasks.*.metrics)"),
    SectionSpec("curves", "ROC and precision-recall curves", sections.curves, "no curves (artifacts.roc, artifacts.pr)"),
    SectionSpec("confusion", "Confusion matrix", sections.confusion, "no confusion matrix (artifacts.confusion)"),
    SectionSpec("calibration", "Calibration", sections.calibration,
                "no reliability diagram or calibration metrics (artifacts.reliability, metrics.ece)"),
    SectionSpec("robustness", "Robustness", sections.robustness,
                "no robustness curves (artifacts.robustness: missing_modality, image_corruption, text_noise)"),
    SectionSpec("subgroups", "Subgroups and fairness", sections.subgroups, "no subgroup results (subgroups)"),
    SectionSpec("efficiency", "Efficiency", sections.efficiency,
                "no efficiency measurements (artifacts.efficiency: params, FLOPs, latency, memory)"),
    SectionSpec("modality", "Fused versus single modality", sections.modality,
                "no modality comparison (artifacts.modality_comparison)"),
    SectionSpec("gradcam", "Grad-CAM", examples.gradcam, "no saliency overlays (artifacts.gradcam)"),
    SectionSpec("retrieval", "Retrieval", examples.retrieval,
                "no retrieval metrics or examples (i2t_R@K, artifacts.retrieval_examples)"),
    SectionSpec("generation", "Report generation", examples.generation,
                "no report-generation metrics or examples (bleu4, rouge_l, cider, artifacts.generation_examples)"),
    SectionSpec("vqa", "Visual question answering", examples.vqa, "no VQA metrics or examples (vqa_overall)"),
    SectionSpec("few-shot", "Few-shot learning curve", examples.few_shot, "no few-shot results (artifacts.few_shot)"),
    SectionSpec("model-card", "Model card", examples.model_card, "no model card, versions or configuration"),
)


def stylesheet() -> str:
    """Return the report's CSS (``medfuse/evaluate/templates/report.css``)."""
    return resources.files("medfuse").joinpath("evaluate", "templates", "report.css").read_text(encoding="utf-8")


def sources_of(results: Mapping[str, Any]) -> tuple[list[Source], list[set[str]]]:
    """Return the canonical sources of ``results`` and, per source, the original artifact keys they read."""
    pairs = [canonical(s) for s in gather_sources(results)]
    return without_repeats([p[0] for p in pairs]), [p[1] for p in pairs]


def unknown_keys(results: Mapping[str, Any]) -> dict[str, Any]:
    """Return the pieces of the results no section reads, by dotted path."""
    _, used = sources_of(results)
    out: dict[str, Any] = {k: v for k, v in results.items() if k not in KNOWN_TOP}
    for key, value in mapping(results.get("artifacts")).items():
        if key not in KNOWN_ARTIFACTS and key not in used[0]:
            out[f"artifacts.{key}"] = value
    for i, (name, task) in enumerate(mapping(results.get("tasks")).items(), start=1):
        task = mapping(task)
        for key, value in task.items():
            if key not in KNOWN_TASK:
                out[f"tasks.{name}.{key}"] = value
        for key, value in mapping(task.get("artifacts")).items():
            if key not in KNOWN_ARTIFACTS and key not in used[i]:
                out[f"tasks.{name}.artifacts.{key}"] = value
    return out


def _raw_block(extra: Mapping[str, Any]) -> str:
    text = json.dumps(extra, indent=2, sort_keys=True, default=str)
    if len(text) > MAX_RAW_CHARS:
        text = text[:MAX_RAW_CHARS] + f"\n… ({len(text) - MAX_RAW_CHARS:,} more characters cut)"
    names = ", ".join(extra)
    return (f'<details class="raw"><summary>Keys this report does not draw ({len(extra)}): {esc(names)}</summary>'
            f"<pre>{esc(text)}</pre></details>")


def render_section(spec: SectionSpec, results: Mapping[str, Any], sources: Sequence[Source]) -> tuple[str, bool]:
    """Return the section's HTML and whether it holds data; a malformed piece shows as a visible note."""
    try:
        body = spec.build(results, sources)
    except DATA_ERRORS as exc:
        log.warning("report section '%s' could not be drawn: %s: %s", spec.id, type(exc).__name__, exc)
        body = (f'<p class="not-evaluated error"><strong>Could not be drawn.</strong> The results for this section '
                f"are malformed: {esc(type(exc).__name__)}: {esc(exc)}</p>")
    has_data = body is not None
    content = body if body is not None else not_evaluated(spec.needs)
    state = "evaluated" if has_data else "missing"
    return (f'<section id="{esc(spec.id)}" class="{state}"><h2>{esc(spec.title)}</h2>{content}</section>', has_data)


def render_report(results: Mapping[str, Any], *, title: str | None = None) -> str:
    """Return the report page for ``results`` as one HTML string (see :func:`write_report`)."""
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping (the content of results.json), got {type(results).__name__}")
    sources, _ = sources_of(results)
    heading = title or str(results.get("title") or f"medfuse evaluation: {results.get('task') or 'results'}")
    blocks, nav = [], []
    for spec in SECTIONS:
        html, has_data = render_section(spec, results, sources)
        blocks.append(html)
        mark = "" if has_data else ' <span class="nav-missing">(not evaluated)</span>'
        nav.append(f'<li class="{"ok" if has_data else "missing"}"><a href="#{esc(spec.id)}">{esc(spec.title)}</a>{mark}</li>')
    extra = unknown_keys(results)
    if extra:
        blocks.append(f'<section id="extra"><h2>Other results</h2>{_raw_block(extra)}</section>')
        nav.append('<li class="ok"><a href="#extra">Other results</a></li>')
    facts = " · ".join(f"{esc(k)}: <strong>{esc(results[k])}</strong>" for k in ("task", "split", "n")
                       if results.get(k) is not None)
    version = results.get("medfuse_version")
    footer = f"medfuse {esc(version)}" if version else "medfuse"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{esc(heading)}</title><style>{stylesheet()}</style></head>"
        f'<body><header><h1>{esc(heading)}</h1><p class="facts">{facts}</p></header>'
        f'<nav aria-label="sections"><ul>{"".join(nav)}</ul></nav>'
        f'<main>{"".join(blocks)}</main>'
        f"<footer>Written by {footer}. Self-contained: no network, no scripts.</footer></body></html>\n"
    )


def write_report(results: Mapping[str, Any], out_dir: str | Path, *, title: str | None = None) -> Path:
    """Write ``report.html`` for ``results`` (the ``results.json`` content) into ``out_dir``; return its path.

    The file is self-contained: inline CSS, inline SVG plots, images as ``data:`` URIs, no scripts and no
    network references. Missing pieces show a "Not evaluated" note; keys no section reads are listed in a
    raw-JSON block at the end.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.html"
    path.write_text(render_report(results, title=title), encoding="utf-8")
    return path


__all__ = ["SECTIONS", "SectionSpec", "render_report", "stylesheet", "unknown_keys", "write_report"]
