"""Plots as inline SVG strings: line charts (ROC, PR, robustness, few-shot), bars, heat maps, reliability.

Every function returns one ``<svg>`` element that is well-formed XML with a ``viewBox``, so the figure
scales with the page and needs no script, font or file. Strings from data are escaped here; values that
are missing (``None``) or not finite break a line rather than drawing a point.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Okabe & Ito's colour-blind-safe palette (yellow left out: too pale on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MAX_POINTS = 400
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""


@dataclass
class Series:
    """One line of a chart: ``x`` and ``y`` of equal length; ``lo``/``hi`` draw a band when given."""

    name: str
    x: Sequence[float | None]
    y: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None


def number(value: object) -> float | None:
    """Return ``value`` as a finite float, or None for None, NaN, inf and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real too
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Return round tick values covering ``[lo, hi]`` with a 1/2/5 x 10^k step, about ``count`` of them."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    """Return a short label for a tick value (``0.5``, ``10``, ``1e+04``)."""
    return f"{value:.6g}" if abs(value) < 1e4 else f"{value:.2g}"


def thin(xs: Sequence[float | None], ys: Sequence[float | None], limit: int = MAX_POINTS) -> list[int]:
    """Return at most ``limit`` indices spread evenly over the points, first and last kept."""
    n = min(len(xs), len(ys))
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def color(i: int) -> str:
    """Return the ``i``-th series colour."""
    return PALETTE[i % len(PALETTE)]


def dash(i: int) -> str:
    """Return the ``stroke-dasharray`` attribute of the ``i``-th series ('' for a solid line)."""
    pattern = DASHES[(i // len(PALETTE)) % len(DASHES)]
    return f' stroke-dasharray="{pattern}"' if pattern else ""


class _Frame:
    """Maps data coordinates to pixels inside the plot area of a chart."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], left: float, top: float,
                 width: float, height: float, x_log: bool = False) -> None:
        self.x_log = x_log
        self.x0, self.x1 = (self._tx(x_range[0]), self._tx(x_range[1]))
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 0.5, self.x1 + 0.5
        if self.y1 <= self.y0:
            self.y0, self.y1 = self.y0 - 0.5, self.y1 + 0.5
        self.left, self.top, self.width, self.height = left, top, width, height

    def _tx(self, x: float) -> float:
        return math.log2(x) if self.x_log else x

    def px(self, x: float) -> float:
        return self.left + (self._tx(x) - self.x0) / (self.x1 - self.x0) * self.width

    def py(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.height


def _svg_open(width: float, height: float, title: str) -> str:
    label = escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{label}" {FONT} font-size="11">'
        f"<title>{label}</title>"
    )


def _axes(frame: _Frame, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]],
          x_label: str, y_label: str) -> list[str]:
    parts = []
    bottom = frame.top + frame.height
    for value, text in y_ticks:
        y = frame.py(value)
        parts.append(f'<line x1="{frame.left:.1f}" x2="{frame.left + frame.width:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e3e6ea"/>')
        parts.append(f'<text x="{frame.left - 5:.1f}" y="{y + 3.5:.1f}" text-anchor="end" fill="#444">'
                     f"{escape(text)}</text>")
    for value, text in x_ticks:
        x = frame.px(value)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top:.1f}" y2="{bottom:.1f}" stroke="#eef0f2"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" fill="#444">{escape(text)}</text>')
    parts.append(f'<rect x="{frame.left:.1f}" y="{frame.top:.1f}" width="{frame.width:.1f}" height="{frame.height:.1f}" '
                 f'fill="none" stroke="#9aa3ad"/>')
    parts.append(f'<text x="{frame.left + frame.width / 2:.1f}" y="{bottom + 30:.1f}" text-anchor="middle" '
                 f'fill="#222">{escape(x_label)}</text>')
    cy = frame.top + frame.height / 2
    parts.append(f'<text x="12" y="{cy:.1f}" text-anchor="middle" fill="#222" transform="rotate(-90 12 {cy:.1f})">'
                 f"{escape(y_label)}</text>")
    return parts


def _path(frame: _Frame, xs: Sequence[float | None], ys: Sequence[float | None]) -> str:
    """Return SVG path data through the finite points, starting a new piece after each gap."""
    commands, pen_down = [], False
    for i in thin(xs, ys):
        x, y = number(xs[i]), number(ys[i])
        if x is None or y is None or (frame.x_log and x <= 0):
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{frame.px(x):.1f},{frame.py(y):.1f}")
        pen_down = True
    return " ".join(commands)


def _band(frame: _Frame, series: Series) -> str:
    if series.lo is None or series.hi is None:
        return ""
    upper, lower = [], []
    for i in range(min(len(series.x), len(series.lo), len(series.hi))):
        x, lo, hi = number(series.x[i]), number(series.lo[i]), number(series.hi[i])
        if x is None or lo is None or hi is None or (frame.x_log and x <= 0):
            continue
        upper.append(f"{frame.px(x):.1f},{frame.py(hi):.1f}")
        lower.append(f"{frame.px(x):.1f},{frame.py(lo):.1f}")
    if len(upper) < 2:
        return ""
    return " ".join(upper + lower[::-1])


def _legend(names: Sequence[str], left: float, top: float, markers: bool) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        y = top + 15 * i
        parts.append(f'<line x1="{left:.1f}" x2="{left + 22:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color(i)}" '
                     f'stroke-width="2.2"{dash(i)}/>')
        if markers:
            parts.append(f'<circle cx="{left + 11:.1f}" cy="{y:.1f}" r="2.6" fill="{color(i)}"/>')
        parts.append(f'<text x="{left + 28:.1f}" y="{y + 3.5:.1f}" fill="#222">{escape(name)}</text>')
    return parts


def _data_range(values: Sequence[float | None]) -> tuple[float, float] | None:
    finite = [v for v in (number(x) for x in values) if v is not None]
    return (min(finite), max(finite)) if finite else None


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    markers: bool = False,
    x_log: bool = False,
    x_ticks: Sequence[float] | None = None,
    width: int = 380,
) -> str:
    """Return an SVG line chart of ``series`` with axes, grid, optional ``y = x`` diagonal and a legend.

    Ranges default to the data's (padded when flat); ``x_log`` uses a base-2 axis (few-shot ``k``);
    ``x_ticks`` places ticks at given values instead of round numbers.
    """
    plot_w, plot_h, left, top = width - 62.0, 210.0, 50.0, 10.0
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in s.y] + [v for s in series for v in (s.lo or [])] + [v for s in series for v in (s.hi or [])]
    x_range = x_range or _data_range([v for v in xs if not x_log or (number(v) or 0) > 0]) or (0.0, 1.0)
    if y_range is None:
        found = _data_range(ys) or (0.0, 1.0)
        pad = (found[1] - found[0]) * 0.08 or 0.05
        y_range = (found[0] - pad, found[1] + pad)
    frame = _Frame(x_range, y_range, left, top, plot_w, plot_h, x_log=x_log)
    if x_ticks is not None:
        xt = [(float(v), tick_label(float(v))) for v in x_ticks if number(v) is not None]
    else:
        xt = [(v, tick_label(v)) for v in nice_ticks(x_range[0], x_range[1])]
    yt = [(v, tick_label(v)) for v in nice_ticks(frame.y0, frame.y1)]
    names = [s.name for s in series]
    height = top + plot_h + 42 + 15 * len(names)
    parts = [_svg_open(width, height, title), *_axes(frame, xt, yt, x_label, y_label)]
    if diagonal:
        lo, hi = max(frame.x0, frame.y0), min(frame.x1, frame.y1)
        parts.append(f'<line x1="{frame.px(lo):.1f}" y1="{frame.py(lo):.1f}" x2="{frame.px(hi):.1f}" '
                     f'y2="{frame.py(hi):.1f}" stroke="#9aa3ad" stroke-dasharray="4 4"/>')
    for i, s in enumerate(series):
        band = _band(frame, s)
        if band:
            parts.append(f'<polygon points="{band}" fill="{color(i)}" fill-opacity="0.15" stroke="none"/>')
        d = _path(frame, s.x, s.y)
        if d:
            parts.append(f'<path d="{d}" fill="none" stroke="{color(i)}" stroke-width="2"{dash(i)} '
                         f'stroke-linejoin="round"/>')
        if markers:
            for j in thin(s.x, s.y):
                x, y = number(s.x[j]), number(s.y[j])
                if x is not None and y is not None and not (x_log and x <= 0):
                    parts.append(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.8" fill="{color(i)}"/>')
    parts += _legend(names, left + 4, top + plot_h + 50, markers)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    names: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    x_label: str,
    errors: Sequence[tuple[float, float] | None] | None = None,
    x_range: tuple[float, float] | None = None,
    highlight: int | None = None,
    width: int = 460,
) -> str:
    """Return a horizontal bar chart; ``errors`` draws (lo, hi) whiskers; bar ``highlight`` is drawn darker."""
    label_w = min(170.0, 16.0 + 6.6 * max((len(n) for n in names), default=4))
    left, top, row = label_w, 8.0, 24.0
    plot_w = width - left - 56.0
    plot_h = row * max(len(names), 1)
    finite = [number(v) for v in values] + [number(e[k]) for e in (errors or []) if e for k in (0, 1)]
    present = [v for v in finite if v is not None]
    if x_range is None:
        hi = max(present, default=1.0)
        lo = min(0.0, min(present, default=0.0))
        x_range = (lo, hi * 1.05 if hi > 0 else 1.0)
    frame = _Frame(x_range, (0.0, 1.0), left, top, plot_w, plot_h)
    height = top + plot_h + 40
    parts = [_svg_open(width, height, title)]
    for v in nice_ticks(x_range[0], x_range[1]):
        x = frame.px(v)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{top + plot_h:.1f}" stroke="#eef0f2"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle" fill="#444">'
                     f"{tick_label(v)}</text>")
    zero = frame.px(max(x_range[0], 0.0))
    for i, name in enumerate(names):
        y = top + row * i
        fill = "#0b4f7c" if highlight == i else color(0)
        value = number(values[i]) if i < len(values) else None
        parts.append(f'<text x="{left - 6:.1f}" y="{y + row / 2 + 4:.1f}" text-anchor="end" fill="#222">'
                     f"{escape(name)}</text>")
        if value is None:
            parts.append(f'<text x="{zero + 4:.1f}" y="{y + row / 2 + 4:.1f}" fill="#888">n/a</text>')
            continue
        x = frame.px(value)
        parts.append(f'<rect x="{min(zero, x):.1f}" y="{y + 4:.1f}" width="{abs(x - zero):.1f}" height="{row - 8:.1f}" '
                     f'fill="{fill}" fill-opacity="0.85"><title>{escape(name)}: {value:.4g}</title></rect>')
        err = errors[i] if errors and i < len(errors) else None
        err_lo, err_hi = (number(err[0]), number(err[1])) if err else (None, None)
        end = x
        if err_lo is not None and err_hi is not None:
            cy = y + row / 2
            parts.append(f'<path d="M{frame.px(err_lo):.1f},{cy:.1f} H{frame.px(err_hi):.1f} M{frame.px(err_lo):.1f},{cy - 5:.1f} '
                         f'V{cy + 5:.1f} M{frame.px(err_hi):.1f},{cy - 5:.1f} V{cy + 5:.1f}" stroke="#222" '
                         f'stroke-width="1.3" fill="none"/>')
            end = max(end, frame.px(err_hi))
        parts.append(f'<text x="{end + 4:.1f}" y="{y + row / 2 + 4:.1f}" fill="#222">{value:.3g}</text>')
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top:.1f}" y2="{top + plot_h:.1f}" stroke="#666"/>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32:.1f}" text-anchor="middle" fill="#222">'
                 f"{escape(x_label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _blue(fraction: float) -> str:
    """Return a white-to-dark-blue colour for ``fraction`` in [0, 1]."""
    f = min(max(fraction, 0.0), 1.0)
    r, g, b = (round(255 + (end - 255) * f) for end in (8, 48, 107))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], *, title: str,
            row_label: str = "true", col_label: str = "predicted") -> str:
    """Return a confusion-matrix heat map: cells coloured by row share, labelled with count and row %."""
    k = len(matrix)
    cell = max(30.0, min(64.0, 420.0 / max(k, 1)))
    short = [n if len(n) <= 14 else n[:13] + "…" for n in labels]
    label_w = 20.0 + 6.6 * max((len(n) for n in short), default=3)
    left, top = label_w + 18, 22.0
    width, height = left + cell * k + 10, top + cell * k + 16 + 0.75 * label_w
    parts = [_svg_open(width, height, title)]
    for i, row in enumerate(matrix):
        values = [number(v) or 0.0 for v in row]
        total = sum(values)
        for j, value in enumerate(values):
            share = value / total if total > 0 else 0.0
            x, y = left + cell * j, top + cell * i
            ink = "#fff" if share > 0.55 else "#111"
            count = f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{_blue(share)}" '
                         f'stroke="#fff"><title>{escape(labels[i] if i < len(labels) else str(i))} → '
                         f"{escape(labels[j] if j < len(labels) else str(j))}: {count} ({share:.1%} of row)</title></rect>")
            parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" fill="{ink}">{count}</text>')
            if cell >= 40:
                parts.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 12:.1f}" text-anchor="middle" '
                             f'fill="{ink}" font-size="9">{share:.0%}</text>')
    for i, name in enumerate(short):
        y = top + cell * i + cell / 2 + 4
        parts.append(f'<text x="{left - 5:.1f}" y="{y:.1f}" text-anchor="end" fill="#222">{escape(name)}</text>')
        x = left + cell * i + cell / 2
        yb = top + cell * k + 8
        parts.append(f'<text x="{x:.1f}" y="{yb:.1f}" text-anchor="end" fill="#222" '
                     f'transform="rotate(-45 {x:.1f} {yb:.1f})">{escape(name)}</text>')
    parts.append(f'<text x="{left + cell * k / 2:.1f}" y="14" text-anchor="middle" fill="#222">{escape(col_label)} →</text>')
    cy = top + cell * k / 2
    parts.append(f'<text x="10" y="{cy:.1f}" text-anchor="middle" fill="#222" transform="rotate(-90 10 {cy:.1f})">'
                 f"{escape(row_label)} →</text>")
    parts.append("</svg>")
    return "".join(parts)


def reliability_chart(confidence: Sequence[float | None], accuracy: Sequence[float | None],
                      count: Sequence[float | None], *, edges: Sequence[float] | None = None,
                      title: str = "Reliability diagram") -> str:
    """Return a reliability diagram: per-bin accuracy bars, the gap to confidence, ``y = x``, and bin counts."""
    n = len(accuracy)
    if edges is None or len(edges) != n + 1:
        edges = [i / n for i in range(n + 1)] if n else [0.0, 1.0]
    width, left, top, plot_w, plot_h, hist_h = 380.0, 50.0, 10.0, 318.0, 220.0, 46.0
    frame = _Frame((0.0, 1.0), (0.0, 1.0), left, top, plot_w, plot_h)
    ticks = [(v, tick_label(v)) for v in nice_ticks(0.0, 1.0)]
    height = top + plot_h + hist_h + 58
    parts = [_svg_open(width, height, title)]
    parts += _axes(frame, ticks, ticks, "", "observed frequency")
    parts.append(f'<line x1="{frame.px(0):.1f}" y1="{frame.py(0):.1f}" x2="{frame.px(1):.1f}" y2="{frame.py(1):.1f}" '
                 f'stroke="#9aa3ad" stroke-dasharray="4 4"/>')
    counts = [number(c) or 0.0 for c in count] if count else [0.0] * n
    top_count = max(counts, default=0.0) or 1.0
    hist_top = top + plot_h + 22
    for i in range(n):
        x0, x1 = frame.px(float(edges[i])), frame.px(float(edges[i + 1]))
        acc = number(accuracy[i])
        conf = number(confidence[i]) if i < len(confidence) else None
        if acc is not None:
            parts.append(f'<rect x="{x0:.1f}" y="{frame.py(acc):.1f}" width="{x1 - x0:.1f}" '
                         f'height="{frame.py(0) - frame.py(acc):.1f}" fill="{color(0)}" fill-opacity="0.8" stroke="#fff">'
                         f"<title>bin {edges[i]:.2f}–{edges[i + 1]:.2f}: accuracy {acc:.3f}"
                         f"{f', confidence {conf:.3f}' if conf is not None else ''}, n={counts[i]:.0f}</title></rect>")
            if conf is not None:
                lo, hi = sorted((frame.py(acc), frame.py(conf)))
                parts.append(f'<rect x="{x0:.1f}" y="{lo:.1f}" width="{x1 - x0:.1f}" height="{hi - lo:.1f}" '
                             f'fill="{color(1)}" fill-opacity="0.25" stroke="{color(1)}" stroke-width="0.8"/>')
        h = counts[i] / top_count * hist_h if i < len(counts) else 0.0
        parts.append(f'<rect x="{x0:.1f}" y="{hist_top + hist_h - h:.1f}" width="{x1 - x0:.1f}" height="{h:.1f}" '
                     f'fill="#9aa3ad" stroke="#fff"/>')
    parts.append(f'<line x1="{left:.1f}" x2="{left + plot_w:.1f}" y1="{hist_top + hist_h:.1f}" '
                 f'y2="{hist_top + hist_h:.1f}" stroke="#9aa3ad"/>')
    parts.append(f'<text x="{left - 5:.1f}" y="{hist_top + 8:.1f}" text-anchor="end" fill="#444">n</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{hist_top + hist_h + 16:.1f}" text-anchor="middle" fill="#222">'
                 "confidence</text>")
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["PALETTE", "Series", "bar_chart", "color", "heatmap", "line_chart", "nice_ticks", "number",
           "reliability_chart", "thin"]
