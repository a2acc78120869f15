"""The de-identifier: find PHI in a report and replace it by typed placeholders or consistent surrogates."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from medfuse.core import DataError
from medfuse.core.config import check_choice
from medfuse.text.deid.dates import find_dates
from medfuse.text.deid.names import find_names
from medfuse.text.deid.ner import NERBackend, resolve_ner
from medfuse.text.deid.places import find_addresses, find_locations
from medfuse.text.deid.rules import find_pattern_phi
from medfuse.text.deid.spans import PHI_TYPES, PLACEHOLDERS, PHISpan, merge_spans
from medfuse.text.deid.surrogates import SurrogateMaker, derive_key

__all__ = ["MODES", "DeidResult", "Deidentifier"]

log = logging.getLogger(__name__)

MODES = ("placeholder", "surrogate")


@dataclass(frozen=True)
class DeidResult:
    """A de-identified text and the spans (offsets into the original text) that were replaced."""

    text: str
    spans: list[PHISpan] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Return the number of replaced spans per PHI type (types with none left out)."""
        out: dict[str, int] = {}
        for span in self.spans:
            out[span.type] = out.get(span.type, 0) + 1
        return out


class Deidentifier:
    """Finds PHI (HIPAA Safe Harbor identifiers found in clinical text) and replaces it.

    ``mode="placeholder"`` writes ``[NAME]``, ``[DATE]``, ...; ``mode="surrogate"`` writes stand-ins
    chosen by a keyed hash of the original (``seed`` or, better, a private ``secret``), with dates
    moved by a per-patient offset. ``ner`` adds a statistical tagger: ``"presidio"``, an object with
    ``find(text)``, or a function returning :class:`PHISpan` lists.

    >>> Deidentifier().redact("Seen by Dr. Alice Moreau on 03/14/2021.").text
    'Seen by Dr. [NAME] on [DATE].'
    """

    def __init__(
        self,
        mode: str = "placeholder",
        seed: int = 0,
        ner: str | NERBackend | Callable[[str], list[PHISpan]] | None = None,
        *,
        secret: str | bytes | None = None,
    ) -> None:
        check_choice("mode", mode, MODES)
        self.mode = mode
        self.seed = seed
        self.ner = resolve_ner(ner)
        self._surrogates = SurrogateMaker(derive_key(seed, secret))

    def find(self, text: str) -> list[PHISpan]:
        """Return the PHI spans of ``text``: non-overlapping, sorted by start."""
        if not isinstance(text, str):
            raise DataError(f"expected a text (str) to de-identify, got {type(text).__name__}")
        if not text.strip():
            return []
        candidates = find_dates(text) + find_pattern_phi(text) + find_addresses(text) + find_locations(text) + find_names(text)
        if self.ner is not None:
            candidates += [s for s in self.ner.find(text) if s.type in PHI_TYPES and 0 <= s.start < s.end <= len(text)]
        return merge_spans(candidates, text)

    def replacement(self, span: PHISpan, patient_id: str | None = None) -> str:
        """Return what replaces ``span``: its placeholder, or its surrogate in surrogate mode."""
        if self.mode == "placeholder":
            return PLACEHOLDERS[span.type]
        return self._surrogates.replace(span, patient_id)

    def redact(self, text: str, patient_id: str | None = None) -> DeidResult:
        """Return ``text`` with every PHI span replaced; ``patient_id`` keys the date shift."""
        spans = self.find(text)
        pieces = []
        last = 0
        for span in spans:
            pieces.append(text[last:span.start])
            pieces.append(self.replacement(span, None if patient_id is None else str(patient_id)))
            last = span.end
        pieces.append(text[last:])
        return DeidResult("".join(pieces), spans)
