"""PHI spans: the detection record, the PHI types with their placeholders, and overlap merging.

A span's ``source`` reads ``"<kind>:<rule>"``; the kind says how strong the evidence is:
``context`` (a label or title around the value, e.g. ``MRN:`` or ``Dr.``), ``pattern`` (the value's own
shape, e.g. ``555-123-4567``), ``document`` (a word already found as PHI elsewhere in the same text),
``dictionary`` (a word list) and ``ner`` (a statistical tagger).
When spans overlap, the strongest evidence decides the type of the merged span.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PHI_TYPES", "PLACEHOLDERS", "PHISpan", "merge_spans", "strength"]

# Most specific first: when two spans with evidence of the same strength overlap, the earlier type wins.
PHI_TYPES: tuple[str, ...] = (
    "SSN", "EMAIL", "URL", "IP", "PHONE", "ID", "DATE", "AGE", "ADDRESS", "NAME", "LOCATION",
)
PLACEHOLDERS: dict[str, str] = {t: f"[{t}]" for t in PHI_TYPES}

_KIND_STRENGTH = {"context": 3, "pattern": 2, "document": 2, "dictionary": 1, "ner": 1}
_TYPE_RANK = {t: len(PHI_TYPES) - i for i, t in enumerate(PHI_TYPES)}


@dataclass(frozen=True)
class PHISpan:
    """One piece of protected health information found in a text.

    ``start``/``end`` are character offsets (``text[start:end] == span.text``); ``type`` is one of
    :data:`PHI_TYPES`; ``source`` names the rule, word list or tagger that found it.
    """

    start: int
    end: int
    type: str
    text: str
    source: str

    def __post_init__(self) -> None:
        if self.type not in _TYPE_RANK:
            raise ValueError(f"PHISpan.type: unknown value {self.type!r}; allowed: {', '.join(PHI_TYPES)}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"PHISpan: need 0 <= start < end, got start={self.start}, end={self.end}")


def strength(span: PHISpan) -> int:
    """Return how strong the span's evidence is (3 context, 2 pattern or document, 1 dictionary or NER)."""
    return _KIND_STRENGTH.get(span.source.split(":", 1)[0], 2)


def _rank(span: PHISpan) -> tuple[int, int, int]:
    return strength(span), _TYPE_RANK[span.type], span.end - span.start


def merge_spans(spans: Iterable[PHISpan], text: str) -> list[PHISpan]:
    """Return non-overlapping spans sorted by start: overlapping spans become their union.

    The union takes the type and source of its strongest member (evidence strength, then type
    priority in :data:`PHI_TYPES` order, then length). Spans that only touch are kept apart.
    """
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    merged: list[PHISpan] = []
    group: list[PHISpan] = []
    group_end = -1

    def flush() -> None:
        if not group:
            return
        best = max(group, key=_rank)
        start, end = group[0].start, max(s.end for s in group)
        merged.append(PHISpan(start, end, best.type, text[start:end], best.source))

    for span in ordered:
        if group and span.start < group_end:
            group.append(span)
            group_end = max(group_end, span.end)
            continue
        flush()
        group = [span]
        group_end = span.end
    flush()
    return merged
