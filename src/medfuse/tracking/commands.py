"""The command-line side of tracking: ``medfuse runs list|show|compare`` and ``medfuse registry register|list``.

These functions print (they are called by :mod:`medfuse.cli` with its parsed arguments); the library
functions they call return typed results.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence

from medfuse.tracking.runs import MetricValue, RunSummary, preference


def metric_columns(runs: Sequence[RunSummary], limit: int = 3) -> list[str]:
    """Return the metrics shown in ``runs list``: evaluation first, then validation, preferred names first."""
    available = {k for r in runs for k in r.final_metrics() if k != "loss"}

    chosen = sorted(available, key=lambda k: (not k.startswith("eval/"), preference(k), k))[:limit]
    if any("loss" in r.metrics for r in runs):
        chosen.append("loss")
    return chosen


def _console() -> object:
    from rich.console import Console

    return Console(width=max(160, shutil.get_terminal_size((160, 24)).columns), highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _print_runs(runs: Sequence[RunSummary]) -> None:
    from rich.table import Table

    columns = metric_columns(runs)
    table = Table(show_lines=False)
    for head in ("run", "id", "experiment", "status", "started (UTC)", "duration", *columns):
        table.add_column(head, overflow="fold")
    for run in runs:
        finals = run.final_metrics()
        cells = [finals[c].text() if c in finals else "-" for c in columns]
        table.add_row(run.name, run.run_id[:8], run.experiment, run.status,
                      run.start.strftime("%Y-%m-%d %H:%M") if run.start else "-", _duration(run.duration_s), *cells)
    _console().print(table)  # type: ignore[attr-defined]


def _show(summary: RunSummary) -> None:
    from medfuse.tracking.runs import list_artifacts

    started = f", started {summary.start:%Y-%m-%d %H:%M:%S} UTC" if summary.start else ""
    print(f"run {summary.name} ({summary.run_id}) in experiment {summary.experiment}: {summary.status}{started}, "
          f"took {_duration(summary.duration_s)}")
    print(f"store: {summary.ref.store.uri}")
    print(f"artifacts: {summary.artifact_uri}")
    print("\nparameters:")
    for key in sorted(summary.params):
        print(f"  {key} = {summary.params[key]}")
    finals = summary.final_metrics()
    print("\nmetrics:")
    for key, value in finals.items():
        print(f"  {key} = {value.text(4)}")
    for key in sorted(k for k in summary.metrics if k not in finals and not k.endswith(("_ci_lo", "_ci_hi"))):
        print(f"  {key} = {MetricValue(summary.metrics[key]).text(4)}")
    tags = {k: v for k, v in summary.tags.items() if k.startswith("medfuse.") or k == "mlflow.source.git.commit"}
    print("\ntags:")
    for key in sorted(tags):
        print(f"  {key} = {tags[key]}")
    print("\nartifacts:")
    for path, size in list_artifacts(summary.ref):
        print(f"  {path}" + (f"  ({size:,} bytes)" if size is not None else ""))


def cli_runs(args: argparse.Namespace) -> int:
    """``medfuse runs list|show|compare``: print runs, one run, or write the comparison page."""
    from medfuse.tracking.runs import get_run, list_runs
    from medfuse.tracking.store import resolve_store

    store = getattr(args, "store", None)
    if args.runs_cmd == "list":
        runs = list_runs(store)
        if not runs:
            print(f"no runs in {resolve_store(store).uri}")
            return 0
        _print_runs(runs)
        return 0
    if args.runs_cmd == "show":
        _show(get_run(args.run, store))
        return 0
    from medfuse.tracking.compare_report import compare_runs

    comparison = compare_runs(args.runs, out=args.out, store=store)
    print(f"compared {len(comparison.runs)} runs: {comparison.path}")
    for pair in comparison.paired:
        for test in pair.tests:
            print(f"  {pair.a} vs {pair.b}: {test.metric} {test.output} ({test.test}) "
                  f"{test.value_a:.4f} vs {test.value_b:.4f}, p = {test.p:.4g}")
        for note in pair.notes:
            print(f"  {pair.a} vs {pair.b}: {note}")
    return 0


def cli_registry(args: argparse.Namespace) -> int:
    """``medfuse registry register|list``: register a checkpoint as name@version, or list the versions."""
    from medfuse.tracking.registry import list_models, register_checkpoint

    store = getattr(args, "store", None)
    if args.registry_cmd == "register":
        version = register_checkpoint(args.checkpoint, args.name, store)
        print(f"registered {args.checkpoint} as {args.name}@{version}")
        return 0
    versions = list_models(store)
    if not versions:
        print("no registered models")
        return 0
    from rich.table import Table

    table = Table()
    for head in ("model", "registered (UTC)", "kind", "labels", "source"):
        table.add_column(head, overflow="fold")
    for v in versions:
        table.add_row(v.ref, v.created.strftime("%Y-%m-%d %H:%M") if v.created else "-", v.tags.get("medfuse.kind", "-"),
                      v.tags.get("medfuse.labels", "-"), v.source)
    _console().print(table)  # type: ignore[attr-defined]
    return 0
