"""Report sections over metrics and curves: summary, curves, confusion, calibration, robustness,
subgroups, efficiency and the fused-versus-single-modality comparison.

Each builder takes the results and their sources and returns the section's HTML body, or None when the
results hold nothing for it (the page then shows the section's "not evaluated" note).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medfuse.evaluate.report.html import (
    STABLE_METRICS,
    Markup,
    Source,
    ci_pair,
    esc,
    figure,
    fmt,
    fmt_ci,
    fmt_p,
    heading,
    items,
    mapping,
    metric_entry,
    metric_order,
    table,
    with_artifact,
)
from medfuse.evaluate.report.svg import Series, bar_chart, heatmap, line_chart, number, reliability_chart

CALIBRATION_KEYS = ("ece", "mce", "brier", "nll", "temperature")
EOD_KEYS = ("equalized_odds_difference", "equalised_odds_difference", "eod")
X_KEYS = ("rates", "rate", "severity", "severities", "levels", "level", "x")
ROBUSTNESS_TITLES = {
    "missing_modality": ("Missing modality", "fraction of samples without the modality"),
    "image_corruption": ("Image corruption", "severity"),
    "text_noise": ("Text noise", "noise level"),
}


def _metrics_table(metrics: Mapping[str, Any], names: Sequence[str]) -> str:
    rows = []
    for name in names:
        value, ci = metric_entry(metrics[name])
        rows.append([name, value if value is not None else "n/a", fmt_ci(ci)])
    return table(["metric", "value", "95% CI"], rows, cls="metrics")


def _task_rows(results: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for name, task in mapping(results.get("tasks")).items():
        task = mapping(task)
        if task.get("error") is not None:
            status: Any = Markup(f'<span class="bad">failed</span>: {esc(task["error"])}')
        elif task.get("skipped") is not None:
            status = Markup(f'<span class="warn">not run</span>: {esc(task["skipped"])}')
        else:
            status = Markup('<span class="ok">done</span>')
        rows.append([str(name), status, task.get("n"), len(mapping(task.get("metrics"))), number(task.get("seconds"))])
    return rows


def summary(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return the headline table (metric, value, 95% CI), the tasks' outcomes and each task's metrics."""
    headline = mapping(results.get("metrics"))
    task_rows = _task_rows(results)
    if not headline and not any(s.metrics for s in sources):
        return None
    facts = [(k, results.get(k)) for k in ("task", "split", "n", "seed", "medfuse_version") if results.get(k) is not None]
    data = mapping(results.get("data"))
    facts += [(f"rows {k}", data[k]) for k in ("read", "kept", "quarantined") if data.get(k) is not None]
    parts = [table(["", ""], facts, cls="facts")] if facts else []
    if headline:
        names = metric_order(headline)
        main = [n for n in names if n in STABLE_METRICS] or [n for n in names if "/" not in n]
        rest = [n for n in names if n not in main]
        parts.append('<h3 class="source">Headline metrics</h3>' + _metrics_table(headline, main))
        if rest:
            parts.append(f"<details><summary>More metrics ({len(rest)})</summary>{_metrics_table(headline, rest)}</details>")
    if task_rows:
        parts.append('<h3 class="source">Tasks</h3>' + table(["task", "outcome", "n", "metrics", "seconds"], task_rows))
    blocks = []
    for source in sources[1:] if headline else sources:
        if source.metrics:
            blocks.append(f"<details><summary>{esc(source.name)}: {len(source.metrics)} metrics</summary>"
                          f"{_metrics_table(source.metrics, metric_order(source.metrics))}</details>")
    return "".join(parts) + "".join(blocks)


def curves(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return ROC and precision-recall charts per source (one line per label) with their areas."""
    found = [s for s in sources if mapping(s.artifacts.get("roc")) or mapping(s.artifacts.get("pr"))]
    parts = []
    for source in found:
        roc, pr = mapping(source.artifacts.get("roc")), mapping(source.artifacts.get("pr"))
        rows: dict[str, list[Any]] = {}
        roc_series, pr_series = [], []
        for label, curve in roc.items():
            curve = mapping(curve)
            auc = number(curve.get("auc"))
            rows.setdefault(str(label), [str(label), None, None])[1] = auc
            roc_series.append(Series(f"{label} (AUC {fmt(auc)})", items(curve.get("fpr")), items(curve.get("tpr"))))
        for label, curve in pr.items():
            curve = mapping(curve)
            ap = number(curve.get("ap"))
            rows.setdefault(str(label), [str(label), None, None])[2] = ap
            pr_series.append(Series(f"{label} (AP {fmt(ap)})", items(curve.get("recall")), items(curve.get("precision"))))
        charts = []
        if roc_series:
            charts.append(figure(line_chart(roc_series, title="ROC", x_label="false positive rate",
                                            y_label="true positive rate", x_range=(0, 1), y_range=(0, 1),
                                            diagonal=True), "ROC curve per label; dashed: chance"))
        if pr_series:
            charts.append(figure(line_chart(pr_series, title="Precision-recall", x_label="recall",
                                            y_label="precision", x_range=(0, 1), y_range=(0, 1)),
                                 "Precision-recall curve per label"))
        per_label = mapping(source.artifacts.get("per_label"))
        for label, row in rows.items():
            info = mapping(per_label.get(label))
            prevalence = number(info.get("prevalence"))
            if prevalence is None:
                prevalence = number(mapping(pr.get(label)).get("prevalence"))
            row += [info.get("support"), prevalence]
        headers, body = ["label", "AUROC", "AP", "support", "prevalence"], list(rows.values())
        keep = [j for j in range(len(headers)) if j < 3 or any(r[j] is not None for r in body)]
        parts.append(heading(source, len(found) > 1) + f'<div class="plots">{"".join(charts)}</div>'
                     + table([headers[j] for j in keep], [[r[j] for j in keep] for r in body]))
    return "".join(parts) or None


def confusion(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return the confusion-matrix heat map (or one 2x2 map per label for multilabel results)."""
    found = [(s, mapping(a)) for s, a in with_artifact(sources, "confusion")]
    parts = []
    for source, art in found:
        matrix = items(art.get("matrix"))
        labels = [str(x) for x in items(art.get("labels"))]
        if not matrix:
            continue
        if all(isinstance(m, (list, tuple)) and m and isinstance(m[0], (list, tuple)) for m in matrix):
            maps = [figure(heatmap(["negative", "positive"], m, title=f"Confusion: {name}"), name)
                    for name, m in zip(labels or [str(i) for i in range(len(matrix))], matrix)]
            body = f'<div class="plots small">{"".join(maps)}</div>'
        else:
            names = labels if len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
            body = figure(heatmap(names, matrix, title="Confusion matrix"),
                          "Rows: true class; columns: predicted class; colour: share of the row")
        parts.append(heading(source, len(found) > 1) + body)
    return "".join(parts) or None


def _calibration_rows(source: Source) -> list[list[Any]]:
    rows: dict[str, list[Any]] = {}
    for name in metric_order(source.metrics):
        base = name.split("/")[0].split("@")[0]
        if base in CALIBRATION_KEYS or any(base.startswith(k + "_") for k in CALIBRATION_KEYS):
            value, ci = metric_entry(source.metrics[name])
            rows[name] = [name, value if value is not None else "n/a", fmt_ci(ci)]
    extra = dict(mapping(source.artifacts.get("calibration")))
    if "temperature" in source.artifacts:
        extra["temperature"] = source.artifacts["temperature"]
    for name, raw in extra.items():
        value, ci = metric_entry(raw)
        if value is not None and name not in rows:
            rows[name] = [name, value, fmt_ci(ci)]
    if "temperature" not in rows:
        rows["temperature"] = ["temperature", "not fitted", "—"]
    applied = number(source.artifacts.get("temperature_applied"))
    if applied is not None:
        rows["temperature_applied"] = ["temperature applied to the scores", applied, "—"]
    return list(rows.values())


def _diagram(rel: Mapping[str, Any], title: str, caption: str) -> str:
    if not items(rel.get("accuracy")):
        return ""
    chart = reliability_chart(items(rel.get("confidence")), items(rel.get("accuracy")), items(rel.get("count")),
                              edges=items(rel.get("edges")) or None, title=title)
    return figure(chart, caption)


def calibration(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return the reliability diagram(s) with ECE, MCE, Brier score and the fitted temperature."""
    found = [s for s in sources if mapping(s.artifacts.get("reliability"))
             or any(k in s.metrics for k in ("ece", "mce", "brier"))]
    parts = []
    for source in found:
        legend = ("Bars: accuracy per confidence bin; shaded: gap to the mean confidence; grey: samples per bin; "
                  "dashed: perfect calibration")
        charts = _diagram(mapping(source.artifacts.get("reliability")), "Reliability diagram", legend)
        charts += _diagram(mapping(source.artifacts.get("reliability_scaled")), "After temperature scaling",
                           "The same rows after dividing the logits by the fitted temperature")
        parts.append(heading(source, len(found) > 1) + f'<div class="plots">{charts}'
                     f'{table(["measure", "value", "95% CI"], _calibration_rows(source))}</div>')
    return "".join(parts) or None


def _x_values(entry: Mapping[str, Any]) -> list[Any]:
    for key in X_KEYS:
        if items(entry.get(key)):
            return items(entry.get(key))
    return []


def _level(value: object) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:g}"


def robustness(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return one chart per kind of degradation (missing modality, image corruption, text noise)."""
    found = [(s, mapping(a)) for s, a in with_artifact(sources, "robustness")]
    parts = []
    for source, art in found:
        parts.append(heading(source, len(found) > 1))
        for kind, entries in art.items():
            title, x_label = ROBUSTNESS_TITLES.get(str(kind), (str(kind).replace("_", " ").capitalize(), "level"))
            series, rows, metric = [], [], ""
            for name, entry in mapping(entries).items():
                entry = mapping(entry)
                xs, ys = _x_values(entry), items(entry.get("values"))
                if not xs or len(xs) != len(ys):
                    rows.append([str(name), "—", Markup(f'<span class="warn">unreadable: {len(xs)} levels, '
                                                        f"{len(ys)} values</span>")])
                    continue
                metric = metric or str(entry.get("metric") or "")
                cis = [ci_pair(c) for c in items(entry.get("ci95"))]
                lo = [c[0] if c else None for c in cis] if len(cis) == len(xs) else None
                hi = [c[1] if c else None for c in cis] if len(cis) == len(xs) else None
                series.append(Series(str(name), xs, ys, lo, hi))
                rows.append([str(name), str(entry.get("metric") or ""),
                             ", ".join(f"{_level(x)}: {fmt(number(y))}" for x, y in zip(xs, ys))])
            if not rows:
                continue
            chart = ""
            if series:
                chart = figure(line_chart(series, title=title, x_label=x_label, y_label=metric or "metric",
                                          markers=True), f"{title}: {metric} by {x_label}")
            parts.append(f'<h4>{esc(title)}</h4><div class="plots">{chart}'
                         f'{table(["setting", "metric", "level: value"], rows)}</div>')
    body = "".join(parts)
    return body if "<h4>" in body else None


def _eod(column: str, info: Mapping[str, Any], results: Mapping[str, Any], sources: Sequence[Source]) -> float | None:
    for key in EOD_KEYS:
        if number(info.get(key)) is not None:
            return number(info.get(key))
        fair = mapping(mapping(results.get("fairness")).get(column))
        if number(fair.get(key)) is not None:
            return number(fair.get(key))
        for source in sources:
            value, _ = metric_entry(source.metrics.get(f"{key}/{column}"))
            if value is not None:
                return value
    return None


def _subgroup_columns(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Return (column, info) from ``subgroups`` and from each task's ``subgroups`` (duplicates once)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for block in [results.get("subgroups")] + [mapping(t).get("subgroups") for t in mapping(results.get("tasks")).values()]:
        for column, info in mapping(block).items():
            if isinstance(info, Mapping) and (str(column), info) not in found:
                found.append((str(column), info))
    return found


def _group_row(group: str, entry: Mapping[str, Any], names: Sequence[str], rates: bool) -> tuple[list[Any], bool]:
    """Return a subgroup's table row (each metric with its gap to the whole beside it) and its small flag."""
    small = bool(entry.get("small"))
    label = Markup(esc(group) + (' <span class="badge small-n">small n: read with care</span>' if small else ""))
    cells: list[Any] = []
    for n in names:
        value = metric_entry(mapping(entry.get("metrics")).get(n))[0]
        gap = metric_entry(mapping(entry.get("gap")).get(n))[0]
        text = esc(fmt(value)) if value is not None else "n/a"
        if gap is not None:
            text += f' <span class="{"gap-neg" if gap < 0 else "gap-pos"}">({gap:+.4f})</span>'
        cells.append(Markup(text))
    row = [label, entry.get("n"), *cells]
    if rates:
        row += [number(entry.get("tpr")), number(entry.get("fpr"))]
    return row, small


def subgroups(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return one table per subgroup column: n, metrics, gap to the whole; small groups flagged, never hidden."""
    parts = []
    for column, info in _subgroup_columns(results):
        nested = mapping(info.get("groups"))
        members = {str(g): mapping(e) for g, e in (nested or info).items()
                   if isinstance(e, Mapping) and ("n" in e or "metrics" in e)}
        if not members:
            continue
        names = metric_order(n for e in members.values() for n in mapping(e.get("metrics")) if "/" not in n)
        rates = any(number(e.get("tpr")) is not None for e in members.values())
        headers: list[Any] = ["group", "n", *names, *(["TPR", "FPR"] if rates else [])]
        rows, classes = [], []
        for group, entry in members.items():
            row, small = _group_row(group, entry, names, rates)
            rows.append(row)
            classes.append("small-group" if small else "")
        eod = _eod(column, info, results, sources)
        notes = [f"Equalised-odds difference: <strong>{esc(fmt(eod))}</strong>" if eod is not None
                 else "Equalised-odds difference: not computed"]
        for key, text in (("tpr_difference", "largest TPR difference"), ("fpr_difference", "largest FPR difference")):
            if number(info.get(key)) is not None:
                notes.append(f"{text}: {esc(fmt(number(info.get(key))))}")
        small_n = number(info.get("min_group_size"))
        notes.append("In brackets: the group's value minus the whole test set's" +
                     (f"; groups under {small_n:g} rows are flagged small" if small_n is not None else ""))
        parts.append(f"<h4>{esc(column)}</h4>{table(headers, rows, cls='subgroups', row_classes=classes)}"
                     f'<p class="note">{". ".join(notes)}.</p>')
    return "".join(parts) or None


def _unit(key: str, value: float | int) -> str:
    """Return a measurement with its unit guessed from the key (params, FLOPs, ms, MB, bytes, /s)."""
    k = key.lower()
    if "batch" in k or "thread" in k or "repeat" in k or "warmup" in k or "measurements" in k:
        return fmt(value)
    if "gflop" in k:
        return f"{value:,.4g} GFLOPs"
    if "param" in k:
        return f"{value / 1e6:,.2f} M" if value >= 1e5 else f"{value:,.0f}"
    if "flop" in k or "mac" in k:
        return f"{value / 1e9:,.3f} G" if value >= 1e8 else f"{value / 1e6:,.3f} M"
    if k.endswith("_bytes"):
        return f"{value / 2**20:,.2f} MiB"
    if k.endswith("_ms") or "latency" in k:
        return f"{value:,.2f} ms"
    if "throughput" in k:
        return f"{value:,.1f} /s"
    if k.endswith("_mb") or "memory" in k:
        return f"{value:,.3g} MB" if value < 100 else f"{value:,.0f} MB"
    return fmt(value)


def _flatten(prefix: str, value: Any, rows: list[list[Any]], lists: list[tuple[str, list[Any]]]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows, lists)
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        lists.append((prefix, list(value)))
    elif number(value) is not None:
        rows.append([prefix, _unit(prefix, value)])
    elif isinstance(value, (list, tuple)) and value and all(number(v) is not None for v in value):
        ordered = sorted(float(v) for v in value)
        rows.append([prefix, f"{len(ordered)} values, median {_unit(prefix, ordered[len(ordered) // 2])}"])
    else:
        rows.append([prefix, "n/a" if value is None else str(value)])


def efficiency(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return parameters, FLOPs, latency percentiles, throughput and memory as a table (and sub-tables)."""
    parts = []
    found = with_artifact(sources, "efficiency")
    for source, art in found:
        rows: list[list[Any]] = []
        lists: list[tuple[str, list[Any]]] = []
        _flatten("", {k: (metric_entry(v)[0] if isinstance(v, Mapping) and "value" in v else v)
                      for k, v in mapping(art).items()}, rows, lists)
        block = table(["measure", "value"], rows) if rows else ""
        for name, entries in lists:
            keys = list(dict.fromkeys(k for e in entries for k in e))
            block += f"<h4>{esc(name)}</h4>" + table(keys, [[_cell(k, e.get(k)) for k in keys] for e in entries])
        parts.append(heading(source, len(found) > 1) + block)
    return "".join(parts) or None


def _cell(key: str, value: Any) -> Any:
    numeric = number(value) is not None
    return _unit(key, value) if numeric else value


def modality(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return fused versus single-modality scores: bar chart with 95% CIs and a table with paired-test p."""
    found = [(s, mapping(a)) for s, a in with_artifact(sources, "modality_comparison")]
    parts = []
    for source, art in found:
        rows = [mapping(r) for r in items(art.get("rows"))]
        if not rows:
            continue
        metric = str(art.get("metric") or "metric")
        names = [str(r.get("name", "?")) for r in rows]
        values = [metric_entry(r.get("value"))[0] for r in rows]
        errors = [ci_pair(r.get("ci95")) for r in rows]
        fused = next((i for i, n in enumerate(names) if "fus" in n.lower()), None)
        chart = bar_chart(names, values, title=f"{metric} by modality", x_label=metric, errors=errors,
                          highlight=fused)
        body = table(["model", metric, "95% CI", "p (paired test vs fused)"],
                     [[n, v if v is not None else "n/a", fmt_ci(e), fmt_p(r.get("p_value"))]
                      for n, v, e, r in zip(names, values, errors, rows)])
        parts.append(heading(source, len(found) > 1) + f'<div class="plots">{figure(chart, "Whiskers: 95% CI")}{body}</div>')
    return "".join(parts) or None


__all__ = ["calibration", "confusion", "curves", "efficiency", "modality", "robustness", "subgroups", "summary"]
