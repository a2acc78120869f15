"""Small HTML building blocks of the report: escaping, number formats, tables, figures, lenient readers.

Every string that comes from results data passes through :func:`esc` (or :func:`cell`, which escapes
anything that is not already :class:`Markup`), so a label such as ``<script>`` shows as text.
"""

from __future__ import annotations

import base64
import binascii
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from medfuse.evaluate.report.svg import number

# DESIGN.md's stable metric names, in the order the headline table lists them
STABLE_METRICS = (
    "accuracy", "balanced_accuracy", "auroc", "auprc", "f1_macro", "ece", "brier",
    "vqa_overall", "vqa_closed", "vqa_open",
    "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mrr", "map", "ndcg@10",
    "bleu4", "rouge_l", "cider", "clinical_f1",
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class Markup(str):
    """A string of HTML that is already safe; :func:`cell` passes it through unescaped."""


def esc(value: object) -> str:
    """Return ``str(value)`` with ``& < > " '`` escaped for HTML text and attributes."""
    return escape(str(value), quote=True)


def cell(value: object) -> str:
    """Return ``value`` as table-cell HTML: :class:`Markup` as is, numbers formatted, anything else escaped."""
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return esc(fmt(value))
    return esc("—" if value is None else value)


def fmt(value: object) -> str:
    """Return a number for reading: ints with thousands separators, floats with 3-4 significant places."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return "n/a"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        if value.is_integer() and abs(value) >= 10:
            return f"{int(value):,}"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return "—" if value is None else str(value)


def fmt_p(value: object) -> str:
    """Return a p-value for reading (``<0.001`` below one in a thousand; ``—`` when absent)."""
    p = number(value)
    if p is None:
        return "—"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def fmt_ci(ci: object) -> str:
    """Return ``[lo, hi]`` formatted, or ``—`` when the interval is absent or undefined."""
    pair = ci_pair(ci)
    return f"[{fmt(pair[0])}, {fmt(pair[1])}]" if pair else "—"


def ci_pair(ci: object) -> tuple[float, float] | None:
    """Return a finite ``(lo, hi)`` from a two-item list, else None."""
    pair = items(ci)
    if len(pair) == 2:
        lo, hi = number(pair[0]), number(pair[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def metric_entry(value: object) -> tuple[float | None, tuple[float, float] | None]:
    """Return ``(value, ci95)`` from ``{"value", "ci95"}`` or a bare number (NaN reads as None)."""
    if isinstance(value, Mapping):
        return number(value.get("value")), ci_pair(value.get("ci95"))
    return number(value), None


def metric_order(names: Iterable[str]) -> list[str]:
    """Return metric names with the stable headline names first (in DESIGN order), the rest sorted."""
    names = list(dict.fromkeys(names))
    stable = [n for n in STABLE_METRICS if n in names]
    return stable + sorted(n for n in names if n not in STABLE_METRICS)


def mapping(value: object) -> Mapping[str, Any]:
    """Return ``value`` when it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Any]:
    """Return ``value`` as a list when it is a list, tuple or array (``tolist``), else an empty list."""
    if not isinstance(value, (list, tuple, str)) and callable(getattr(value, "tolist", None)):
        value = value.tolist()  # type: ignore[union-attr]
    return list(value) if isinstance(value, (list, tuple)) else []


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], *, cls: str = "",
          row_classes: Sequence[str] | None = None, caption: str = "") -> str:
    """Return an HTML table; cells go through :func:`cell`."""
    head = "".join(f"<th>{cell(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes and i < len(row_classes) and row_classes[i] else ""
        attr = f' class="{esc(rc)}"' if rc else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<div class="table-wrap"><table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure(svg: str, caption: str = "") -> str:
    """Return an SVG (already built, escaped inside) in a ``<figure>`` with an escaped caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="plot">{svg}{cap}</figure>'


def png_src(value: object) -> str | None:
    """Return a ``data:image/png;base64,...`` URI for base64 PNG text, or None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("data:image/png;base64,"):
        text = text.split(",", 1)[1]
    compact = "".join(text.split())
    if not compact or not _BASE64.fullmatch(compact):
        return None
    try:
        head = base64.b64decode(compact[:24] + "=" * (-len(compact[:24]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not head.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + compact


def img(value: object, alt: str) -> str:
    """Return an ``<img>`` for base64 PNG text, or a visible placeholder when it is not a PNG."""
    src = png_src(value)
    if src is None:
        return f'<div class="no-image">{esc(alt)}: no image</div>'
    return f'<img src="{src}" alt="{esc(alt)}" loading="eager">'


def not_evaluated(reason: str) -> str:
    """Return the visible note of a section without data."""
    return f'<p class="not-evaluated"><strong>Not evaluated.</strong> {esc(reason)}</p>'


@dataclass
class Source:
    """One place results come from: the top level of the results, or one entry of ``tasks``."""

    name: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)


def gather_sources(results: Mapping[str, Any]) -> list[Source]:
    """Return the top-level source (named by ``task``) and one per ``tasks`` entry, in order."""
    out = [Source(str(results.get("task") or "main"), mapping(results.get("metrics")), mapping(results.get("artifacts")))]
    for name, task in mapping(results.get("tasks")).items():
        entry = mapping(task)
        out.append(Source(str(name), mapping(entry.get("metrics")), mapping(entry.get("artifacts"))))
    return out


def without_repeats(sources: Sequence[Source]) -> list[Source]:
    """Return the sources with the top-level metrics that a task also reports left out of the top level.

    The headline metrics are copies of task metrics; drawing both would show each number twice.
    """
    if len(sources) < 2:
        return list(sources)
    repeated = {name for s in sources[1:] for name in s.metrics}
    top = sources[0]
    kept = {k: v for k, v in top.metrics.items() if k not in repeated}
    return [Source(top.name, kept, top.artifacts), *sources[1:]]


def with_artifact(sources: Sequence[Source], key: str) -> list[tuple[Source, Any]]:
    """Return ``(source, artifact)`` for every source holding a non-empty artifact ``key``."""
    return [(s, s.artifacts[key]) for s in sources if s.artifacts.get(key) not in (None, {}, [])]


def heading(source: Source, many: bool) -> str:
    """Return a sub-heading naming the source when more than one source contributes to a section."""
    return f'<h3 class="source">{esc(source.name)}</h3>' if many else ""


__all__ = [
    "STABLE_METRICS",
    "Markup",
    "Source",
    "cell",
    "ci_pair",
    "esc",
    "figure",
    "fmt",
    "fmt_ci",
    "fmt_p",
    "gather_sources",
    "heading",
    "img",
    "items",
    "mapping",
    "metric_entry",
    "metric_order",
    "not_evaluated",
    "png_src",
    "table",
    "with_artifact",
    "without_repeats",
]
