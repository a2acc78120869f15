"""``medfuse runs compare``: a self-contained HTML page comparing runs.

The page holds the runs (status, timing, commit, data), the parameters that differ, the training
curves side by side (one panel per metric, one line per run, from the MLflow metric history), the
final metrics with their 95% intervals, and paired significance tests between every two runs that
were evaluated on the same rows (see :mod:`medfuse.tracking.paired`). Figures are inline SVG; the
page loads nothing.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from medfuse.tracking.paired import PairedComparison, paired_tests
from medfuse.tracking.predictions import PREDICTIONS_FILE, read_predictions
from medfuse.tracking.runs import (
    RunRef,
    RunSummary,
    download_artifact,
    get_run,
    metric_history,
    preference,
    resolve_run,
)
from medfuse.tracking.store import Store

log = logging.getLogger(__name__)

REPORT_FILE = "compare.html"
MAX_PANELS = 9
_CURVE_SKIP = ("system/", "train/", "eval/", "best/")
_CURVE_SKIP_KEYS = ("epoch", "lr", "samples_per_s")


@dataclass
class Comparison:
    """A written comparison: the page, the runs, their curves and the paired tests."""

    path: Path
    runs: list[RunSummary]
    labels: list[str]
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    paired: list[PairedComparison] = field(default_factory=list)


def run_labels(runs: Sequence[RunSummary]) -> list[str]:
    """Return a display name per run: its name, with the id's start where names repeat."""
    names = [r.name for r in runs]
    return [n if names.count(n) == 1 else f"{n} ({r.run_id[:6]})" for n, r in zip(names, runs)]


def curve_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Return the metrics drawn as curves: the training loss (and its parts), then validation metrics."""
    keys = {k for r in runs for k in r.metrics if not k.startswith(_CURVE_SKIP) and k not in _CURVE_SKIP_KEYS}
    ordered = sorted(keys, key=lambda k: (k != "loss", not k.startswith("loss"), preference(k), k))
    return ordered[:MAX_PANELS]


def evaluated_splits(run: RunSummary) -> list[str]:
    """Return the splits a run has logged evaluations of."""
    head, tail = "medfuse.eval.", ".task"
    return sorted(k[len(head):-len(tail)] for k in run.tags if k.startswith(head) and k.endswith(tail))


def _predictions(ref: RunRef, split: str, scratch: Path) -> Path | None:
    return download_artifact(ref, f"evaluation/{split}/{PREDICTIONS_FILE}", scratch / ref.run_id / split)


def compare_pair(a: RunSummary, b: RunSummary, labels: tuple[str, str], *, n_resamples: int = 1000,
                 seed: int = 0) -> PairedComparison:
    """Return the paired tests of two runs on every split both were evaluated on."""
    result = PairedComparison(labels[0], labels[1], [], [])
    shared = [s for s in evaluated_splits(a) if s in evaluated_splits(b)]
    if not shared:
        result.notes.append("no split was evaluated in both runs (log evaluations with `log_evaluation`)")
    with tempfile.TemporaryDirectory() as scratch:
        for split in shared:
            digests = [r.tags.get(f"medfuse.eval.{split}.manifest_sha256") for r in (a, b)]
            if all(digests) and digests[0] != digests[1]:
                result.notes.append(f"{split}: the runs were evaluated on different manifest files")
                continue
            paths = [_predictions(r.ref, split, Path(scratch)) for r in (a, b)]
            missing = [label for label, p in zip(labels, paths) if p is None]
            if missing:
                result.notes.append(f"{split}: no per-row predictions logged for {', '.join(missing)}")
                continue
            tests, notes = paired_tests(read_predictions(paths[0]), read_predictions(paths[1]),  # type: ignore[arg-type]
                                        n_resamples=n_resamples, seed=seed)
            result.tests.extend(tests)
            result.notes.extend(f"{split}: {n}" for n in notes)
    return result


def compare_runs(refs: Sequence[str | Path | RunRef], *, out: str | Path, store: str | Store | None = None,
                 n_resamples: int = 1000, seed: int = 0) -> Comparison:
    """Write ``<out>/compare.html`` comparing runs (ids, names or tracked training folders); return it."""
    runs = [get_run(r if isinstance(r, RunRef) else resolve_run(r, store)) for r in refs]
    labels = run_labels(runs)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key in curve_keys(runs):
        per_run = {label: metric_history(run.ref, key) for label, run in zip(labels, runs) if key in run.metrics}
        if len({value for points in per_run.values() for _, value in points}) > 1:  # a flat line says nothing
            curves[key] = per_run
    paired = [compare_pair(runs[i], runs[j], (labels[i], labels[j]), n_resamples=n_resamples, seed=seed)
              for i in range(len(runs)) for j in range(i + 1, len(runs))]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(folder / REPORT_FILE, runs, labels, curves, paired)
    staging = folder / f".{REPORT_FILE}.tmp"
    staging.write_text(render_html(comparison), encoding="utf-8")
    staging.replace(comparison.path)
    return comparison


# ---------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2630;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h3{font-size:15px;margin:16px 0 4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6773;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f6f9}td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.panel{border:1px solid #dde3ea;border-radius:6px;padding:6px}
.sig{font-weight:600;color:#0b6e4f}.note{color:#5b6773;font-size:13px}code{font-size:12px}
"""


def _cell(text: object, num: bool = False) -> str:
    return f'<td class="num">{escape(str(text))}</td>' if num else f"<td>{escape(str(text))}</td>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def _runs_table(c: Comparison) -> str:
    head = ("run", "run id", "experiment", "status", "started (UTC)", "duration", "git commit", "manifest sha256",
            "rows read / kept / quarantined")
    rows = []
    for label, run in zip(c.labels, c.runs):
        counts = " / ".join(run.params.get(f"data.{k}", "-") for k in ("read", "kept", "quarantined"))
        rows.append("<tr>" + "".join([
            _cell(label), f"<td><code>{escape(run.run_id)}</code></td>", _cell(run.experiment), _cell(run.status),
            _cell(run.start.strftime("%Y-%m-%d %H:%M:%S") if run.start else "-"), _cell(_duration(run.duration_s), True),
            f"<td><code>{escape(run.tags.get('mlflow.source.git.commit', '-')[:10])}</code></td>",
            f"<td><code>{escape(run.tags.get('medfuse.manifest_sha256', '-')[:12])}</code></td>", _cell(counts, True),
        ]) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _params_table(c: Comparison) -> str:
    keys = sorted({k for r in c.runs for k in r.params})
    differ = [k for k in keys if len({r.params.get(k) for r in c.runs}) > 1][:60]
    if not differ:
        return '<p class="note">All logged parameters are the same.</p>'
    head = "<tr><th>parameter</th>" + "".join(f"<th>{escape(label)}</th>" for label in c.labels) + "</tr>"
    body = "".join("<tr>" + _cell(k) + "".join(_cell(r.params.get(k, "-")) for r in c.runs) + "</tr>" for k in differ)
    return f"<table>{head}{body}</table>"


def _curves(c: Comparison) -> str:
    from medfuse.evaluate.report.svg import Series, line_chart

    if not c.curves:
        return '<p class="note">No training metrics were logged.</p>'
    panels = []
    for key, per_run in c.curves.items():
        series = [Series(label, [float(s) for s, _ in points], [v for _, v in points])
                  for label, points in per_run.items() if points]
        if not series:
            continue
        markers = max(len(s.x) for s in series) <= 30
        panels.append(f'<div class="panel">{line_chart(series, title=key, x_label="step", y_label=key, markers=markers)}'
                      "</div>")
    return '<div class="grid">' + "".join(panels) + "</div>"


def _metrics_table(c: Comparison) -> str:
    finals = [r.final_metrics() for r in c.runs]
    keys: list[str] = []
    for values in finals:
        keys.extend(k for k in values if k not in keys)
    if not keys:
        return '<p class="note">No final metrics were logged.</p>'
    keys.sort(key=lambda k: (not k.startswith("eval/"), k.startswith("loss"), k))
    head = "<tr><th>metric</th>" + "".join(f"<th>{escape(label)}</th>" for label in c.labels) + "</tr>"
    body = "".join(
        "<tr>" + _cell(k) + "".join(_cell(v[k].text() if k in v else "-", True) for v in finals) + "</tr>" for k in keys
    )
    return (f"<table>{head}{body}</table><p class=\"note\">eval/&lt;split&gt;/&lt;metric&gt;: evaluation with its "
            "95% interval in brackets; val/: the last validation during training; loss: the last training loss.</p>")


def _paired(c: Comparison) -> str:
    if not c.paired:
        return '<p class="note">Paired tests need at least two runs.</p>'
    parts = []
    for pair in c.paired:
        parts.append(f"<h3>{escape(pair.a)} vs {escape(pair.b)}</h3>")
        if pair.tests:
            head = ("metric", "output", "test", pair.a, pair.b, "z", "p-value", "rows")
            rows = []
            for t in pair.tests:
                p_text = f"{t.p:.4f}" if t.p >= 1e-4 else f"{t.p:.1e}"
                p_cell = f'<td class="num sig">{p_text}</td>' if t.p < 0.05 else _cell(p_text, True)
                rows.append("<tr>" + "".join([
                    _cell(t.metric), _cell(t.output), _cell(t.test), _cell(f"{t.value_a:.4f}", True),
                    _cell(f"{t.value_b:.4f}", True), _cell("-" if t.statistic is None else f"{t.statistic:.3f}", True),
                    p_cell, _cell(t.n, True)]) + "</tr>")
            parts.append("<table><tr>" + "".join(f"<th>{escape(str(h))}</th>" for h in head) + "</tr>"
                         + "".join(rows) + "</table>")
        parts.extend(f'<p class="note">{escape(n)}</p>' for n in pair.notes)
    parts.append('<p class="note">Two-sided p-values on the same rows; highlighted below 0.05, not corrected for '
                 "multiple comparisons. DeLong et al. (1988) for AUROC; paired bootstrap (Koehn 2004) otherwise.</p>")
    return "".join(parts)


def render_html(c: Comparison) -> str:
    """Return the comparison page as one self-contained HTML document."""
    stores = sorted({r.ref.store.uri for r in c.runs})
    title = "medfuse run comparison: " + ", ".join(c.labels)
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Run comparison</h1><p class=\"sub\">{len(c.runs)} runs from {escape(', '.join(stores))}</p>",
        "<h2>Runs</h2>", _runs_table(c),
        "<h2>Parameters that differ</h2>", _params_table(c),
        "<h2>Training curves</h2>", _curves(c),
        "<h2>Final metrics</h2>", _metrics_table(c),
        "<h2>Paired significance tests</h2>", _paired(c),
        "</body></html>\n",
    ])
