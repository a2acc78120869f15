"""Optional statistical name/place tagger (Microsoft Presidio on spaCy) added to the rule-based finder.

Presidio is not a dependency: it is imported when a :class:`PresidioNER` is made, through
``medfuse.core.require``, which fails with one line naming the extra (``medfuse[deid-ner]``).
Any object with ``find(text) -> list[PHISpan]`` can serve as a tagger instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from medfuse.core import ConfigError, require
from medfuse.text.deid.spans import PHISpan

__all__ = ["NERBackend", "PresidioNER", "resolve_ner"]

# Presidio entity -> PHI type; entities not listed are ignored.
PRESIDIO_TYPES: dict[str, str] = {
    "PERSON": "NAME",
    "DATE_TIME": "DATE",
    "LOCATION": "LOCATION",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "IP_ADDRESS": "IP",
    "URL": "URL",
    "US_SSN": "SSN",
    "MEDICAL_LICENSE": "ID",
    "US_DRIVER_LICENSE": "ID",
    "US_PASSPORT": "ID",
    "US_BANK_NUMBER": "ID",
    "CREDIT_CARD": "ID",
    "IBAN_CODE": "ID",
}


@runtime_checkable
class NERBackend(Protocol):
    """A tagger: ``find(text)`` returns PHI spans (source ``ner:...``)."""

    def find(self, text: str) -> list[PHISpan]: ...


class PresidioNER:
    """Spans from Presidio's ``AnalyzerEngine`` (spaCy NER plus its pattern recognizers)."""

    def __init__(self, *, language: str = "en", score_threshold: float = 0.5) -> None:
        presidio = require("presidio_analyzer", extra="deid-ner", purpose="NER-based de-identification")
        self.language = language
        self.score_threshold = score_threshold
        self._analyzer: Any = presidio.AnalyzerEngine()

    def find(self, text: str) -> list[PHISpan]:
        """Return the tagger's spans of the PHI types medfuse knows, above the score threshold."""
        results = self._analyzer.analyze(text=text, language=self.language, entities=list(PRESIDIO_TYPES))
        return [
            PHISpan(r.start, r.end, PRESIDIO_TYPES[r.entity_type], text[r.start:r.end], f"ner:presidio-{r.entity_type.lower()}")
            for r in results
            if r.entity_type in PRESIDIO_TYPES and r.score >= self.score_threshold and r.end > r.start
        ]


class _CallableNER:
    def __init__(self, fn: Callable[[str], list[PHISpan]]) -> None:
        self._fn = fn

    def find(self, text: str) -> list[PHISpan]:
        return list(self._fn(text))


def resolve_ner(ner: str | NERBackend | Callable[[str], list[PHISpan]] | None) -> NERBackend | None:
    """Return the tagger named or given by ``ner``: None, ``"presidio"``, a tagger or a function."""
    if ner is None or ner == "none":
        return None
    if ner == "presidio":
        return PresidioNER()
    if isinstance(ner, NERBackend):
        return ner
    if callable(ner):
        return _CallableNER(ner)
    raise ConfigError(f"ner: unknown value {ner!r}; allowed: None, 'presidio', an object with find(text), or a function")
