"""Report sections built from examples and descriptions: Grad-CAM gallery, retrieval, report generation,
VQA, few-shot learning curve and the model card.

Same contract as :mod:`medfuse.evaluate.report.sections`: a builder returns the body HTML or None.
"""

from __future__ import annotations

import json
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
    heading,
    img,
    items,
    mapping,
    metric_entry,
    metric_order,
    table,
    with_artifact,
)
from medfuse.evaluate.report.svg import Series, bar_chart, line_chart, number

MAX_EXAMPLES = 24
CARD_FIELDS = (
    ("description", "Description"),
    ("intended_use", "Intended use"),
    ("out_of_scope_use", "Out-of-scope use"),
    ("data", "Data"),
    ("limitations", "Limitations"),
    ("ethical_considerations", "Ethical considerations"),
)
CARD_KNOWN = {key for key, _ in CARD_FIELDS} | {"name", "metrics", "versions", "authors", "license"}
GENERATION_PREFIXES = ("bleu", "rouge", "cider", "meteor", "clinical_")


def _first(entry: Mapping[str, Any], *keys: str) -> Any:
    return next((entry[k] for k in keys if entry.get(k) not in (None, "")), None)


def _scores_line(scores: object) -> str:
    pairs = [f"{esc(k)} {esc(fmt(number(v)))}" for k, v in mapping(scores).items() if number(v) is not None]
    return f'<p class="note">{" · ".join(pairs)}</p>' if pairs else ""


def _metric_block(sources: Sequence[Source], keep: Any, title: str) -> tuple[str, list[tuple[str, float]]]:
    """Return a table of the metrics ``keep(name)`` accepts over all sources and the headline (name, value) pairs.

    Headline (stable) names lead; the rest (per direction, per finding, ranks) fold into a details block.
    """
    headline: list[list[Any]] = []
    rest: list[list[Any]] = []
    pairs: list[tuple[str, float]] = []
    for source in sources:
        for name in metric_order(source.metrics):
            if keep(name):
                value, ci = metric_entry(source.metrics[name])
                row = [source.name, name, value if value is not None else "n/a", fmt_ci(ci)]
                (headline if name in STABLE_METRICS else rest).append(row)
                if value is not None and name in STABLE_METRICS:
                    pairs.append((name, value))
    headers = ["task", "metric", "value", "95% CI"]
    if not headline:
        headline, rest = rest, []
    block = table(headers, headline, caption=title) if headline else ""
    if rest:
        block += f"<details><summary>More metrics ({len(rest)})</summary>{table(headers, rest)}</details>"
    return block, pairs


def gradcam(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return a gallery of images beside their Grad-CAM (or attention-rollout) overlays."""
    found = with_artifact(sources, "gradcam")
    parts = []
    for source, entries in found:
        cards = []
        for entry in [mapping(e) for e in items(entries)][:MAX_EXAMPLES]:
            title = str(entry.get("title") or "example")
            pictures = img(entry.get("overlay_png"), f"{title} overlay")
            if entry.get("image_png"):
                pictures = img(entry.get("image_png"), f"{title} image") + pictures
            facts = []
            if entry.get("label") is not None:
                facts.append(f"label: {esc(entry.get('label'))}")
            if number(entry.get("prob")) is not None:
                facts.append(f"p = {esc(fmt(number(entry.get('prob'))))}")
            cards.append(f'<figure class="card"><div class="pair">{pictures}</div><figcaption>'
                         f'<strong>{esc(title)}</strong><br>{" · ".join(facts)}</figcaption></figure>')
        if cards:
            parts.append(heading(source, len(found) > 1) + f'<div class="gallery">{"".join(cards)}</div>')
    if not parts:
        return None
    return "".join(parts) + '<p class="note">Warm colours: regions that raised the target class score.</p>'


def _hit_html(rank: int, hit: Mapping[str, Any]) -> str:
    relevant = bool(hit.get("relevant"))
    mark = '<span class="badge relevant">✓ relevant</span>' if relevant else '<span class="badge">not relevant</span>'
    picture = img(hit["image_png"], f"hit {rank}") if hit.get("image_png") else ""
    text = _first(hit, "text", "caption")
    ident = f' <span class="note">{esc(hit["id"])}</span>' if hit.get("id") is not None else ""
    score = number(hit.get("score"))
    return (f'<li class="hit{" is-relevant" if relevant else ""}">{picture}<div><span class="rank">#{rank}</span> '
            f'{mark}{f" <span class=note>score {esc(fmt(score))}</span>" if score is not None else ""}{ident}'
            f'{f"<p>{esc(text)}</p>" if text is not None else ""}</div></li>')


def retrieval(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return retrieval metrics (Recall@K chart) and example queries with their top hits, relevant marked."""
    def keep(name: str) -> bool:
        return name.startswith(("i2t_", "t2i_")) or name in ("mrr", "map", "ndcg@10")

    block, pairs = _metric_block(sources, keep, "Retrieval metrics")
    recall = [(n, v) for n, v in pairs if "_R@" in n]  # stable names: i2t_R@K, t2i_R@K
    parts = []
    if recall:
        parts.append(figure(bar_chart([n for n, _ in recall], [v for _, v in recall], title="Recall at K",
                                      x_label="recall (fraction of queries)", x_range=(0.0, 1.0)), "Recall@K"))
    parts.append(block)
    found = with_artifact(sources, "retrieval_examples")
    for source, entries in found:
        parts.append(heading(source, len(found) > 1))
        for entry in [mapping(e) for e in items(entries)][:MAX_EXAMPLES]:
            query = entry.get("query")
            query_map = mapping(query)
            text = query if isinstance(query, str) else _first(query_map, "text")
            picture = _first(entry, "query_image_png", "image_png") or query_map.get("image_png")
            direction = f' <span class="note">({esc(entry["direction"])})</span>' if entry.get("direction") else ""
            if query_map.get("id") is not None:
                direction += f' <span class="note">{esc(query_map["id"])}</span>'
            hits = "".join(_hit_html(i + 1, mapping(h)) for i, h in enumerate(items(entry.get("hits"))))
            parts.append(f'<div class="example"><div class="query"><strong>Query</strong>{direction}'
                         f'{img(picture, "query image") if picture else ""}'
                         f'{f"<p>{esc(text)}</p>" if text is not None else ""}</div><ol class="hits">{hits}</ol></div>')
    body = "".join(parts)
    return body or None


def generation(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return BLEU/ROUGE/CIDEr/clinical F1 and a few generated reports beside their references."""
    block, _ = _metric_block(sources, lambda n: n.startswith(GENERATION_PREFIXES), "Report generation metrics")
    parts = [block]
    found = with_artifact(sources, "generation_examples")
    for source, entries in found:
        parts.append(heading(source, len(found) > 1))
        for entry in [mapping(e) for e in items(entries)][:MAX_EXAMPLES]:
            generated = _first(entry, "generated", "hypothesis", "prediction")
            reference = _first(entry, "reference", "references", "target")
            if isinstance(reference, list):
                reference = " | ".join(str(r) for r in reference)
            picture = img(entry["image_png"], "input image") if entry.get("image_png") else ""
            parts.append(f'<div class="example gen">{picture}<div class="texts"><div><h5>Generated</h5>'
                         f"<p>{esc(generated if generated is not None else '—')}</p></div><div><h5>Reference</h5>"
                         f"<p>{esc(reference if reference is not None else '—')}</p></div></div>"
                         f"{_scores_line(entry.get('scores'))}</div>")
    body = "".join(parts)
    return body or None


def vqa(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return VQA accuracy (overall, closed, open, per answer type) and example questions."""
    block, pairs = _metric_block(sources, lambda n: n.startswith("vqa"), "Visual question answering")
    parts = []
    if pairs:
        parts.append(figure(bar_chart([n for n, _ in pairs], [v for _, v in pairs], title="VQA accuracy",
                                      x_label="accuracy", x_range=(0.0, 1.0)), "VQA accuracy"))
    parts.append(block)
    for source, entries in with_artifact(sources, "vqa_examples"):
        rows, classes = [], []
        for entry in [mapping(e) for e in items(entries)][:MAX_EXAMPLES]:
            raw = _first(entry, "score", "correct")
            score = float(raw) if isinstance(raw, bool) else number(raw)
            mark = Markup('<span class="ok">✓</span>' if score and score >= 1 else
                          ('<span class="bad">✗</span>' if score == 0 else esc(fmt(score))))
            answer = entry.get("answer")
            rows.append([entry.get("question"), " | ".join(map(str, answer)) if isinstance(answer, list) else answer,
                         entry.get("prediction"), entry.get("answer_type"), mark])
            classes.append("wrong" if score == 0 else "")
        parts.append(table(["question", "reference", "prediction", "type", "correct"], rows, row_classes=classes,
                           caption=f"Examples ({source.name})"))
    body = "".join(parts)
    return body or None


def _few_shot_series(art: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    if items(art.get("k")):
        return [(str(art.get("name") or art.get("metric") or "few-shot"), art)]
    nested = mapping(art.get("series")) or art
    return [(str(n), mapping(e)) for n, e in nested.items() if items(mapping(e).get("k"))]


def _band(entry: Mapping[str, Any], values: Sequence[Any]) -> tuple[list[float | None] | None, list[float | None] | None]:
    """Return the lower and upper band of a few-shot series: its ``ci95`` pairs, else mean ± ``std``."""
    cis = [ci_pair(c) for c in items(entry.get("ci95"))]
    if cis and len(cis) == len(values):
        return [c[0] if c else None for c in cis], [c[1] if c else None for c in cis]
    std = items(entry.get("std"))
    if std and len(std) == len(values):
        pairs = [(number(v), number(s)) for v, s in zip(values, std)]
        return ([v - s if v is not None and s is not None else None for v, s in pairs],
                [v + s if v is not None and s is not None else None for v, s in pairs])
    return None, None


def few_shot(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return the few-shot learning curve: the metric against ``k`` labelled examples per class."""
    parts = []
    found = [(s, mapping(a)) for s, a in with_artifact(sources, "few_shot")]
    for source, art in found:
        named = _few_shot_series(art)
        series, rows, ks, bands = [], [], [], set()
        metric = str(art.get("metric") or next((e.get("metric") for _, e in named if e.get("metric")), "metric"))
        for name, entry in named:
            k, values = items(entry.get("k")), items(entry.get("values"))
            if len(k) != len(values):
                continue
            lo, hi = _band(entry, values)
            bands.add("sd" if items(entry.get("std")) and not items(entry.get("ci95")) else "ci" if lo else "")
            series.append(Series(name, k, values, lo, hi))
            ks += [number(x) for x in k]
            for i, (x, y) in enumerate(zip(k, values)):
                rows.append([name, x, number(y), f"[{fmt(lo[i])}, {fmt(hi[i])}]" if lo and hi and lo[i] is not None else "—"])
        if not series:
            continue
        ticks = sorted({x for x in ks if x is not None and x > 0})
        chart = line_chart(series, title="Few-shot learning curve", x_label="labelled examples per class (k)",
                           y_label=metric, markers=True, x_log=True, x_ticks=ticks)
        band = "mean ± 1 standard deviation over seeds" if "sd" in bands else "95% interval" if "ci" in bands else ""
        caption = f"Band: {band}" if band else "Mean over episodes"
        parts.append(heading(source, len(found) > 1) + f'<div class="plots">{figure(chart, caption)}'
                     f'{table(["series", "k", metric, band or "interval"], rows)}</div>')
    return "".join(parts) or None


def _plain(value: Any) -> Any:
    """Return a value for a facts table: numbers and text as they are, lists joined, mappings as JSON."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if all(not isinstance(v, (Mapping, list)) for v in value) else \
            json.dumps(value, default=str)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def model_card(results: Mapping[str, Any], sources: Sequence[Source]) -> str | None:
    """Return the model card: intended use, data, limitations, versions and the configuration."""
    card = mapping(results.get("model_card"))
    versions = dict(mapping(results.get("versions")))
    versions.update(mapping(card.get("versions")))
    if results.get("medfuse_version") is not None:
        versions.setdefault("medfuse", results["medfuse_version"])
    config = results.get("config")
    if not card and not versions and not config and not mapping(results.get("data")):
        return None
    parts = []
    if card.get("name"):
        parts.append(f"<h3>{esc(card['name'])}</h3>")
    for key, title in CARD_FIELDS:
        text = card.get(key)
        body = f"<p>{esc(text)}</p>" if text else '<p class="missing">Not stated.</p>'
        parts.append(f'<div class="card-field"><h4>{esc(title)}</h4>{body}</div>')
    data = [(k, results.get(k)) for k in ("split", "n") if results.get(k) is not None]
    data += [(k, _plain(v)) for k, v in mapping(results.get("data")).items() if k not in ("split",)]
    quarantine = mapping(results.get("artifacts")).get("quarantine")
    if quarantine:
        data.append(("quarantine file", str(quarantine)))
    if data:
        parts.append("<h4>Evaluation data</h4>" + table(["", ""], data, cls="facts"))
    facts = [(k, _plain(v)) for k, v in card.items() if k not in CARD_KNOWN]
    if facts:
        parts.append("<h4>Model facts</h4>" + table(["", ""], facts, cls="facts"))
    card_metrics = mapping(card.get("metrics"))
    if card_metrics:
        parts.append("<h4>Reported metrics</h4>" + table(["metric", "value"],
                                                        [[k, metric_entry(v)[0]] for k, v in card_metrics.items()]))
    parts.append("<h4>Versions</h4>" + (table(["package", "version"], list(versions.items()), cls="facts")
                                        if versions else '<p class="missing">Not recorded.</p>'))
    for key in ("authors", "license"):
        if card.get(key):
            parts.append(f'<p class="note">{esc(key.capitalize())}: {esc(card[key])}</p>')
    if config:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        parts.append(f"<details><summary>Configuration</summary><pre>{esc(text)}</pre></details>")
    else:
        parts.append('<p class="missing">Configuration not recorded.</p>')
    return "".join(parts)


__all__ = ["few_shot", "generation", "gradcam", "model_card", "retrieval", "vqa"]
