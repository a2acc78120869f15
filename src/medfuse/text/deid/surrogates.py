"""Consistent surrogates: realistic stand-ins that keep a report readable and its mentions linked.

Every choice comes from a keyed hash (HMAC-SHA256) of the original value, so the same name, number
or place maps to the same stand-in in every report of a run and of later runs with the same key,
and nobody without the key can tell which original gave it. Python's ``hash`` is not used (it is
salted per process). Dates move by a per-patient offset of -365..-1 days, which keeps the intervals
between one patient's dates; ages over 89 become ``90+`` (Safe Harbor's "90 or older").
"""

from __future__ import annotations

import hashlib
import hmac
import re

from medfuse.text.deid.dates import shift_date
from medfuse.text.deid.medical_terms import COMMON_WORDS
from medfuse.text.deid.names_data import (
    AMBIGUOUS_FIRST,
    AMBIGUOUS_LAST,
    FIRST_NAMES,
    LAST_NAMES,
    NAME_PARTICLES,
    SPELLINGS,
)
from medfuse.text.deid.places_data import FACILITY_WORDS, GENERIC_FACILITY_WORDS, STREET_SUFFIXES, UNIT_WORDS
from medfuse.text.deid.spans import PLACEHOLDERS, PHISpan

__all__ = ["SurrogateMaker", "derive_key"]


def _tokens(block: str) -> list[str]:
    return block.split()


_FAKE_FIRST = sorted(SPELLINGS[w] for w in FIRST_NAMES - AMBIGUOUS_FIRST - LAST_NAMES)
_FAKE_LAST = sorted(SPELLINGS[w] for w in LAST_NAMES - AMBIGUOUS_LAST - FIRST_NAMES)
_FAKE_PLACES = sorted(_tokens("""
Alderbrook Ashford Bayview Birchwood Brookfield Cedarville Clearwater Eastfield Elmstead Fairhaven Fernwood
Glenmoor Greenhollow Hartwell Hazelton Highcrest Kingsbury Lakemont Larchmere Maplewood Meadowbrook Millbrook
Northgate Oakridge Pinecrest Ravenswood Redfield Riverton Rosedale Silverlake Southwick Stonebridge Sunnyvale
Thornbury Westbrook Whitfield Willowdale Winterport
"""))
_FAKE_STREETS = sorted(_tokens("""
Acorn Aspen Beech Birch Bluebell Cedar Chestnut Clover Cypress Dogwood Elm Fir Hawthorn Hemlock Hickory Holly
Juniper Laurel Linden Magnolia Maple Oak Orchard Pine Poplar Primrose Redwood Sequoia Spruce Sycamore Walnut
Willow
"""))
_KEEP_PLACE_WORDS = (
    {w.lower() for f in FACILITY_WORDS for w in f.split()} | GENERIC_FACILITY_WORDS | COMMON_WORDS
    | STREET_SUFFIXES | set(UNIT_WORDS) | {"n", "s", "e", "w", "ne", "nw", "se", "sw", "north", "south", "east", "west", "of"}
)


def derive_key(seed: int = 0, secret: str | bytes | None = None) -> bytes:
    """Return the 32-byte key for surrogates: from ``secret`` when given, else from ``seed``.

    A secret keeps surrogates unlinkable to originals for anyone who does not hold it; a seed alone
    only makes runs repeatable (anyone who knows the seed can test guesses).
    """
    material = secret if secret is not None else f"seed:{seed}"
    raw = material.encode("utf-8") if isinstance(material, str) else bytes(material)
    return hashlib.sha256(b"medfuse-deid\x00" + raw).digest()


def _match_case(word: str, like: str) -> str:
    """Return ``word`` in the case of ``like`` (upper, lower, or its own spelling for title case)."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like.islower():
        return word.lower()
    return word[:1].upper() + word[1:]


class SurrogateMaker:
    """Stand-ins for each PHI type, chosen by a keyed hash of the original value."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def number(self, kind: str, value: str) -> int:
        """Return a 64-bit integer from the keyed hash of ``(kind, value)``."""
        digest = hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def _pick(self, kind: str, value: str, choices: list[str]) -> str:
        h = self.number(kind, value.lower())
        pick = choices[h % len(choices)]
        return choices[(h + 1) % len(choices)] if pick.lower() == value.lower() else pick

    def _stream(self, kind: str, value: str, n: int) -> bytes:
        """Return ``n`` keyed pseudo-random bytes for ``(kind, value)``."""
        out = b""
        counter = 0
        while len(out) < n:
            out += hmac.new(self._key, f"{kind}\x00{value}\x00{counter}".encode(), hashlib.sha256).digest()
            counter += 1
        return out[:n]

    def _shape(self, kind: str, value: str) -> str:
        """Same shape as ``value``: each digit and letter replaced, separators kept."""
        out = []
        for ch, r in zip(value, self._stream(kind, value, len(value))):
            if ch.isdigit():
                out.append(str(r % 10))
            elif ch.isalpha() and ch.isascii():
                letter = chr(ord("A") + r % 26)
                out.append(letter if ch.isupper() else letter.lower())
            else:
                out.append(ch)
        return "".join(out)

    # ------------------------------------------------------------ per type
    def date_offset(self, patient_id: str | None) -> int:
        """Return the day offset (-365..-1) of ``patient_id`` (one offset for all when None)."""
        return -(1 + self.number("date-offset", patient_id or "") % 365)

    def name_word(self, word: str) -> str:
        """Return the stand-in of one name word (first names for first names, surnames otherwise)."""
        if "-" in word:
            return "-".join(self.name_word(part) for part in word.split("-"))
        low = word.lower().strip(".")
        if len(low) == 1:
            return chr(ord("A") + self.number("initial", low) % 26) + ("." if word.endswith(".") else "")
        if low in NAME_PARTICLES or low in {"jr", "sr", "ii", "iii", "iv"}:
            return word
        pool = _FAKE_FIRST if low in FIRST_NAMES and low not in LAST_NAMES else _FAKE_LAST
        fake = self._pick("name", low, pool)
        return _match_case(fake, word) + ("." if word.endswith(".") else "")

    def name(self, text: str) -> str:
        return re.sub(r"[^\W\d_][^\s,;:]*", lambda m: self.name_word(m.group()), text)

    def place(self, text: str) -> str:
        if re.fullmatch(r"[\d-]+", text):
            return self._shape("zip", text)

        def word(m: re.Match[str]) -> str:
            w = m.group()
            if w.lower().strip(".'’s") in _KEEP_PLACE_WORDS:
                return w
            return _match_case(self._pick("place", w.strip(".'’"), _FAKE_PLACES), w)

        return re.sub(r"[A-Za-z][A-Za-z'’.-]*", word, text)

    def address(self, text: str) -> str:
        def word(m: re.Match[str]) -> str:
            w = m.group()
            if w[0].isdigit():
                return self._shape("street-number", w)
            if w.lower().strip(".") in _KEEP_PLACE_WORDS or re.fullmatch(r"\d+(?:st|nd|rd|th)", w):
                return w
            return _match_case(self._pick("street", w.strip("."), _FAKE_STREETS), w)

        return re.sub(r"[A-Za-z0-9][A-Za-z0-9'’.-]*", word, text)

    def replace(self, span: PHISpan, patient_id: str | None) -> str:
        """Return the stand-in text for ``span`` (the placeholder when no stand-in fits its form)."""
        value = span.text
        if span.type == "NAME":
            return self.name(value)
        if span.type == "DATE":
            shifted = shift_date(value, self.date_offset(patient_id))
            return shifted if shifted is not None else PLACEHOLDERS["DATE"]
        if span.type == "AGE":
            return "90+"
        if span.type in ("PHONE", "ID"):
            return self._shape(span.type, value)
        if span.type == "SSN":
            digits = self._shape("SSN", value)
            return re.sub(r"^\d{3}", "000", digits)  # area 000 is never issued
        if span.type == "EMAIL":
            h = self.number("email", value.lower())
            user = f"{_FAKE_FIRST[h % len(_FAKE_FIRST)]}.{_FAKE_LAST[(h >> 20) % len(_FAKE_LAST)]}".replace("'", "")
            return f"{user}@example.org".lower()
        if span.type == "URL":
            token = f"{self.number('url', value) % 16**8:08x}"
            return f"https://example.org/{token}" if "://" in value else f"www.example.org/{token}"
        if span.type == "IP":
            h = self.number("ip", value)
            return f"2001:db8::{h % 65536:x}" if ":" in value else f"192.0.2.{1 + h % 254}"
        if span.type == "ADDRESS":
            return self.address(value)
        if span.type == "LOCATION":
            return self.place(value)
        return PLACEHOLDERS[span.type]
