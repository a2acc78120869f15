"""Read the artifacts the evaluation tasks write into the shapes the report draws.

The report draws one canonical shape per figure (``roc``, ``pr``, ``confusion``, ``reliability``,
``robustness``, ``few_shot``, ``modality_comparison``, ``*_examples``, ``efficiency``; see
:mod:`medfuse.evaluate.report.render`). The tasks of :mod:`medfuse.evaluate.tasks` write richer records
(``roc_curves`` with per-label tables, ``curves`` of the robustness task, ``k_curve`` of few-shot,
``configurations`` of the modality comparison, ...). :func:`canonical` adds the canonical keys beside
the original ones and says which original keys it read, so nothing read is listed as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medfuse.evaluate.report.html import Source, items, mapping, metric_entry
from medfuse.evaluate.report.svg import number

ROBUSTNESS_KINDS = (("missing_modality", "missing_modality"), ("image_corruptions", "image_corruption"),
                    ("image_corruption", "image_corruption"), ("text_corruptions", "text_noise"),
                    ("text_noise", "text_noise"))
EFFICIENCY_HINTS = ("latency_ms_p50", "parameters", "params", "throughput_per_s")


def _label_value(source: Source, label: str, metric: str, single: bool) -> float | None:
    value = number(mapping(mapping(source.artifacts.get("per_label")).get(label)).get(metric))
    if value is None:
        value = metric_entry(source.metrics.get(f"{metric}/{label}"))[0]
    if value is None and single:
        value = metric_entry(source.metrics.get(metric))[0]
    return value


def _curves(source: Source, art: dict[str, Any], used: set[str]) -> None:
    for raw, key, area, metric in (("roc_curves", "roc", "auc", "auroc"), ("pr_curves", "pr", "ap", "auprc")):
        curves = mapping(art.get(raw))
        if key in art or not curves:
            continue
        art[key] = {str(label): {**mapping(c), area: mapping(c).get(area, _label_value(source, str(label), metric,
                                                                                        len(curves) == 1))}
                    for label, c in curves.items()}
        used.add(raw)
    if art.get("per_label"):
        used.add("per_label")


def _confusion(art: dict[str, Any], used: set[str]) -> None:
    matrix = mapping(art.get("confusion_matrix"))
    if "confusion" in art or not matrix:
        return
    per_label = mapping(matrix.get("per_label"))
    art["confusion"] = {"labels": list(per_label), "matrix": list(per_label.values())} if per_label else dict(matrix)
    used.add("confusion_matrix")


def _calibration(art: dict[str, Any], used: set[str]) -> None:
    if "reliability" not in art and mapping(art.get("reliability_diagram")):
        art["reliability"] = art["reliability_diagram"]
        used.add("reliability_diagram")
    scaling = mapping(art.get("temperature_scaling"))
    if scaling:
        art.setdefault("temperature", scaling.get("temperature"))
        if mapping(scaling.get("reliability_diagram")):
            art.setdefault("reliability_scaled", scaling["reliability_diagram"])
        used.add("temperature_scaling")
    if "temperature_applied" in art:
        used.add("temperature_applied")


def _robustness(art: dict[str, Any], used: set[str]) -> None:
    curves = mapping(art.get("curves"))
    if "robustness" in art or not any(mapping(curves.get(k)) for k, _ in ROBUSTNESS_KINDS):
        return
    metric = curves.get("metric")
    out: dict[str, Any] = {}
    for raw, kind in ROBUSTNESS_KINDS:
        for name, entry in mapping(curves.get(raw)).items():
            out.setdefault(kind, {})[str(name)] = {"metric": metric, **mapping(entry)}
    art["robustness"] = out
    used.add("curves")


def _few_shot(art: dict[str, Any], used: set[str]) -> None:
    curve = mapping(art.get("k_curve"))
    if "few_shot" in art or not curve:
        return
    ks = items(curve.get("ks"))
    series = {str(m): {"k": ks, "values": items(mapping(e).get("mean")), "std": items(mapping(e).get("std"))}
              for m, e in mapping(curve.get("metrics")).items()}
    art["few_shot"] = {"metric": "score", "series": series, "seeds": curve.get("seeds")}
    used.update({"k_curve", "per_seed"} & set(art))


def _modality(art: dict[str, Any], used: set[str]) -> None:
    configurations = [mapping(c) for c in items(art.get("configurations"))]
    if "modality_comparison" in art or not configurations:
        return
    metric = str(art.get("metric") or "auroc")
    rows = []
    for config in configurations:
        value, ci = metric_entry(mapping(config.get("metrics")).get(metric))
        rows.append({"name": config.get("name"), "value": value, "ci95": list(ci) if ci else None,
                     "p_value": config.get("p_value"), "n": config.get("n")})
    art["modality_comparison"] = {"metric": metric, "rows": rows}
    used.update({"configurations", "metric", "fusion_beats_all"} & set(art))


def _examples(art: dict[str, Any], used: set[str]) -> None:
    examples = [mapping(e) for e in items(art.get("examples"))]
    if examples and any("question" in e for e in examples) and "vqa_examples" not in art:
        art["vqa_examples"] = [{"answer_type": e.get("type"), **e} for e in examples]
        used.add("examples")
    elif examples and any("generated" in e for e in examples) and "generation_examples" not in art:
        art["generation_examples"] = examples
        used.add("examples")
    grouped = art.get("retrieval_examples")
    if isinstance(grouped, Mapping):
        flat = []
        for direction, entries in grouped.items():
            for entry in [mapping(e) for e in items(entries)]:
                row = entry.get("query_row")
                kind = {"i2t": "image", "t2i": "text"}.get(str(direction), "query")
                flat.append({"direction": str(direction),
                             "query": {"id": f"{kind} of row {row}" if row is not None else None,
                                       "text": entry.get("query_text")},
                             "hits": [{**mapping(h), "id": f"row {mapping(h).get('row')}"} for h in items(entry.get("hits"))]})
        art["retrieval_examples"] = flat


def _efficiency(source: Source, art: dict[str, Any], used: set[str]) -> None:
    if "efficiency" in art or not (source.name == "efficiency" or any(k in source.metrics for k in EFFICIENCY_HINTS)):
        return
    out: dict[str, Any] = {name: metric_entry(entry)[0] for name, entry in source.metrics.items()}
    for key, value in list(art.items()):
        if isinstance(value, (list, tuple)) and value and all(number(v) is not None for v in value):
            out[f"{key} (measurements)"] = len(value)
        elif value is None or isinstance(value, str) or number(value) is not None or isinstance(value, bool):
            out[key] = value
        else:
            continue
        used.add(key)
    art["efficiency"] = out


def canonical(source: Source) -> tuple[Source, set[str]]:
    """Return the source with canonical artifact keys added, and the original keys those were read from."""
    art = dict(source.artifacts)
    used: set[str] = set()
    _curves(source, art, used)
    _confusion(art, used)
    _calibration(art, used)
    _robustness(art, used)
    _few_shot(art, used)
    _modality(art, used)
    _examples(art, used)
    _efficiency(source, art, used)
    return Source(source.name, source.metrics, art), used


__all__ = ["canonical"]
