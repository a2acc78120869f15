"""Street addresses and places smaller than a state: cities, counties, ZIP codes and named facilities.

States and countries are kept (Safe Harbor allows them). A city is found from a word list, from its
place before a state (``Dayton, OH 45402``) or after a phrase such as "lives in" / "native of";
a ZIP code from a state before it or a label; a facility from words such as "Hospital" or "Clinic"
after a proper name.
"""

from __future__ import annotations

import re

from medfuse.text.deid.fastre import compile_lower, lowered
from medfuse.text.deid.medical_terms import COMMON_WORDS, EPONYM_HEADS, EPONYMS
from medfuse.text.deid.names_data import FIRST_NAMES, LAST_NAMES
from medfuse.text.deid.places_data import (
    AMBIGUOUS_CITIES,
    AMBIGUOUS_STATE_ABBREVIATIONS,
    CITIES,
    COUNTRIES,
    FACILITY_WORDS,
    GENERIC_FACILITY_WORDS,
    STATE_ABBREVIATIONS,
    STATE_NAMES,
    STREET_SUFFIXES,
)
from medfuse.text.deid.spans import PHISpan

__all__ = ["find_addresses", "find_locations"]

_U, _L = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"  # upper and lower case letters, Latin-1 included

_LONG_SUFFIXES = ("street", "avenue", "road", "boulevard", "lane", "drive", "court", "way", "place", "terrace",
                  "circle", "parkway", "highway", "trail", "square", "plaza", "crescent", "turnpike", "expressway",
                  "freeway", "alley", "route")
# Short suffixes that are also clinical abbreviations ("2 prior CT", "3 Pl"): the street words must be
# proper names, not report words.
_CLASHING_SUFFIXES = {"ct", "dr", "pl", "pt", "fl", "st", "ter", "cir", "sq", "run", "close", "walk", "path",
                      "point", "row", "loop", "way", "place", "crossing", "xing", "av", "aly", "plz", "cres"}
_SUFFIX_RE = "|".join(sorted(STREET_SUFFIXES, key=len, reverse=True))
_UNIT = (r"(?:,?[ \t]*(?i:apartment|apt|suite|ste|unit|room|rm|floor|fl|building|bldg)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]+"
         r"|,?[ \t]*#[ \t]*[A-Za-z0-9-]+)?")
_DIRECTION = r"(?:(?:[NSEW]|N[EW]|S[EW]|North|South|East|West|NORTH|SOUTH|EAST|WEST)\.?[ \t]+)?"
_STREET = re.compile(
    r"(?<![\w#/.-])(?P<num>\d{1,6}(?:-?[A-Za-z]\b)?(?:-\d{1,4})?)[ \t]+" + _DIRECTION
    + r"(?P<words>(?:(?:[A-Z][A-Za-z'’-]*|[A-Z][A-Za-z]{0,2}\.|\d{1,3}(?i:st|nd|rd|th))[ \t]+){1,4})"
    + r"(?P<suffix>(?i:" + _SUFFIX_RE + r"))\b\.?(?:[ \t]+(?:[NSEW]|N[EW]|S[EW])\b\.?)?" + _UNIT
)
_STREET_LOWER = re.compile(
    r"(?<![\w#/.-])\d{1,6}[ \t]+(?:[a-z]+[ \t]+){1,3}(?:" + "|".join(_LONG_SUFFIXES) + r")\b" + _UNIT
)
_PO_BOX = re.compile(r"(?i:\bp\.?[ \t]?o\.?[ \t]*box|\bpost[ \t]+office[ \t]+box)[ \t]*#?[ \t]*\d+")


def find_addresses(text: str) -> list[PHISpan]:
    """Return ADDRESS spans: street lines (number, street, suffix, unit) and post-office boxes."""
    spans = []
    for m in _STREET.finditer(text):
        words = [w.strip(".").lower() for w in m.group("words").split()]
        suffix = m.group("suffix").lower()
        if suffix in _CLASHING_SUFFIXES and all(w in COMMON_WORDS or w.isdigit() for w in words):
            continue
        if suffix not in _LONG_SUFFIXES and m.group("suffix").isupper() and len(suffix) > 1 and not (
            m.group("words").isupper()
        ):
            continue  # "3 Chest CT": an upper-case abbreviation after mixed-case words is not a street
        end = m.end() - (1 if m.group().endswith(".") else 0)  # the period may also end the sentence
        spans.append(PHISpan(m.start(), end, "ADDRESS", text[m.start():end], "pattern:street"))
    for regex, name in ((_STREET_LOWER, "street-lower"), (_PO_BOX, "po-box")):
        spans.extend(PHISpan(m.start(), m.end(), "ADDRESS", m.group(), f"pattern:{name}") for m in regex.finditer(text))
    return spans


# ---------------------------------------------------------------- places
def _variants(place: str) -> list[str]:
    title = " ".join(w[:1].upper() + w[1:] for w in place.split())
    title = re.sub(r"(?<=-)([a-z])", lambda m: m.group(1).upper(), title)
    title = title.replace(" De ", " de ").replace(" Of ", " of ")
    return [re.escape(title), re.escape(place.upper())]


_NAME_WORDS = FIRST_NAMES | LAST_NAMES
_NOT_A_NAME = GENERIC_FACILITY_WORDS | COMMON_WORDS
# Cities by their first word, longest first: "new" -> ["new york", "new orleans", ...].
_CITIES_BY_FIRST: dict[str, list[str]] = {}
for _city in sorted(CITIES, key=len, reverse=True):
    _CITIES_BY_FIRST.setdefault(_city.split()[0], []).append(_city)
_CAPITALISED = re.compile(rf"(?<![\w'’-])[{_U}][\w.'’-]*")
_STATE_WORD_RE = "|".join(sorted((v for s in STATE_NAMES for v in _variants(s)), key=len, reverse=True))
_STATE_ABBR_RE = "|".join(sorted(STATE_ABBREVIATIONS))
_ZIP = r"\d{5}(?:-\d{4})?"
_CITY_WORD = rf"(?:(?:St|Ste|Mt|Ft|Pt|ST|MT|FT)\.|[{_U}][{_U}{_L}'’-]+)"
_CITY_STATE = re.compile(
    r"(?P<city>" + _CITY_WORD + r"(?:[ \t]+" + _CITY_WORD + r"){0,2}),[ \t]*(?P<state>(?:" + _STATE_ABBR_RE
    + r")\b\.?|(?:" + _STATE_WORD_RE + r")\b)(?:[ \t,]+(?P<zip>" + _ZIP + r"))?(?!\d)"
)
_STATE_ZIP = re.compile(r"\b(?:" + _STATE_ABBR_RE + r"|" + _STATE_WORD_RE + r")\.?,?[ \t]+(?P<v>" + _ZIP + r")(?![\d-])")
_ZIP_LABEL = compile_lower(r"(?i:\bzip(?:[ \t]*code)?|\bpostal[ \t]*code|\bpostcode)[ \t]*[:#]?[ \t]*(?P<v>" + _ZIP + r")(?!\d)")
_PLACE_CUE = compile_lower(  # runs on lowered text; the place itself is read from the text by _PLACE_WORDS
    r"(?i:\b(?:lives|living|live|resides|residing|resident|resided|born|moved|relocated|visiting|visited|"
    r"vacationing|vacation|traveled|travelled|travel|trip|returned|returning|home|native|originally|hometown|"
    r"transferred|transfer|emigrated|immigrated|works|worked|employed|grew up)\b[ \t]+(?:[a-z]+[ \t]+){0,3}?"
    r"(?:in|at|from|to|of|near|outside|nearby)[ \t]+(?:(?:the[ \t]+)?(?:town|city|village|area)[ \t]+of[ \t]+)?)"
)
_PLACE_WORDS = re.compile(_CITY_WORD + r"(?:[ \t]+" + _CITY_WORD + r"){0,2}")
_COUNTY = re.compile(rf"\b(?P<v>(?:[{_U}][{_L}]+[ \t]+){{1,2}}(?:County|Parish|Township|Borough)|(?:[{_U}]{{2,}}[ \t]+){{1,2}}(?:COUNTY|PARISH|TOWNSHIP|BOROUGH))\b")
_FACILITY = re.compile(
    rf"(?P<name>(?:(?:St\.?|Saint|Mount|Mt\.?)[ \t]+)?(?:[{_U}][{_U}{_L}'’&-]*[ \t]+){{1,4}})(?P<kind>"
    + "|".join(re.escape(v) for f in FACILITY_WORDS for v in (f, f.upper()))
    + rf")(?:[ \t]+(?:of|OF)[ \t]+(?P<of>[{_U}][{_U}{_L}]+(?:[ \t]+[{_U}][{_U}{_L}]+)?))?\b"
)


def _trim_place(start: int, words: str) -> tuple[int, int] | None:
    """Return the span of the place in ``words``: a listed city, else the words without report words.

    States and countries alone give None (Safe Harbor keeps them).
    """
    tokens = list(re.finditer(r"\S+", words))
    for i in range(len(tokens)):  # the longest listed city at the end wins: "Apt 4B New York" -> "New York"
        if words[tokens[i].start():tokens[-1].end()].lower() in CITIES:
            return start + tokens[i].start(), start + tokens[-1].end()
    keep = list(tokens)
    while keep and (keep[0].group().lower() in COMMON_WORDS or keep[0].group().lower() in COUNTRIES):
        keep.pop(0)
    while keep and (keep[-1].group().lower() in COMMON_WORDS or keep[-1].group().lower() in COUNTRIES):
        keep.pop()
    if not keep:
        return None
    phrase = words[keep[0].start():keep[-1].end()]
    if phrase.lower() in STATE_NAMES or phrase.lower() in COUNTRIES or phrase.upper() in STATE_ABBREVIATIONS:
        return None
    return start + keep[0].start(), start + keep[-1].end()


def _eponym_use(text: str, end: int) -> bool:
    nxt = re.match(r"(?:['’]s)?[ \t-]+([A-Za-z]+)", text[end:end + 30])
    return bool(nxt and nxt.group(1).lower() in EPONYM_HEADS)


def _listed_cities(text: str, low_text: str) -> list[tuple[int, int]]:
    """Return the spans of listed cities written in title or upper case."""
    out = []
    last_end = -1
    for m in _CAPITALISED.finditer(text):
        if m.start() < last_end:
            continue
        first = low_text[m.start():m.end()].rstrip(".,'’")
        for city in _CITIES_BY_FIRST.get(first.split(".")[0] if first not in _CITIES_BY_FIRST else first, ()):
            end = m.start() + len(city)
            if low_text[m.start():end] != city or (end < len(text) and (text[end].isalnum() or text[end] in "'’-")):
                continue
            written = text[m.start():end]
            if written.isupper() or all(w[:1].isupper() or w in {"de", "of"} for w in re.split(r"[ -]", written)):
                out.append((m.start(), end))
                last_end = end
                break
    return out


def find_locations(text: str) -> list[PHISpan]:
    """Return LOCATION spans: cities, counties, ZIP codes and named facilities (never states or countries)."""
    spans: list[PHISpan] = []
    low_text = lowered(text)
    for start, end in _listed_cities(text, low_text):
        low = low_text[start:end]
        if low in AMBIGUOUS_CITIES or low in _NAME_WORDS or low in EPONYMS or _eponym_use(text, end):
            continue
        spans.append(PHISpan(start, end, "LOCATION", text[start:end], "dictionary:city"))
    for m in _CITY_STATE.finditer(text):
        state = m.group("state").rstrip(".")
        zip_code = m.group("zip")
        trimmed = _trim_place(m.start("city"), m.group("city"))
        if trimmed is not None:
            city = text[trimmed[0]:trimmed[1]]
            # "Smith, MD" or "Chest CT, PA": an abbreviation that is also a credential or clinical term
            # makes a place only with a ZIP code or a listed city.
            backed = zip_code or city.lower() in CITIES or len(state) > 2 or state not in AMBIGUOUS_STATE_ABBREVIATIONS
            if backed:
                spans.append(PHISpan(trimmed[0], trimmed[1], "LOCATION", city, "context:city-state"))
        if zip_code:
            spans.append(PHISpan(m.start("zip"), m.end("zip"), "LOCATION", zip_code, "context:zip"))
    spans.extend(PHISpan(m.start("v"), m.end("v"), "LOCATION", m.group("v"), "context:zip") for m in _STATE_ZIP.finditer(text))
    spans.extend(PHISpan(m.start("v"), m.end("v"), "LOCATION", text[m.start("v"):m.end("v")], "context:zip-label")
                 for m in _ZIP_LABEL.finditer(low_text))
    for cue in _PLACE_CUE.finditer(low_text):
        words = _PLACE_WORDS.match(text, cue.end())
        if words is None:
            continue
        trimmed = _trim_place(words.start(), words.group())
        if trimmed is not None:
            spans.append(PHISpan(trimmed[0], trimmed[1], "LOCATION", text[trimmed[0]:trimmed[1]], "context:place-phrase"))
    for m in _COUNTY.finditer(text):
        tokens = list(re.finditer(r"\S+", m.group("v")))[:-1]
        named = [t for t in tokens if t.group().lower() not in _NOT_A_NAME]
        if named:
            start = m.start("v") + named[0].start()
            spans.append(PHISpan(start, m.end("v"), "LOCATION", text[start:m.end("v")], "context:county"))
    for m in _FACILITY.finditer(text):
        tokens = list(re.finditer(r"\S+", m.group("name")))
        named = [t for t in tokens if t.group().lower() not in _NOT_A_NAME]
        if not named and not m.group("of"):
            continue  # "the Community Hospital": a kind of place, not a named one
        first = named[0] if named else next((t for t in tokens if t.group().lower() not in {"the", "a", "an"}), tokens[-1])
        start = m.start("name") + first.start()
        spans.append(PHISpan(start, m.end(), "LOCATION", text[start:m.end()], "context:facility"))
    return spans
