"""Dates more specific than a year: finding them in many formats and shifting them in place.

Formats found: ``03/14/2021``, ``14/03/21``, ``2021-03-14``, ``14.03.2021``, ``March 14, 2021``,
``Mar 14th``, ``14 March 2021``, ``14-MAR-2021``, ``the 14th of March``, ``March 2021``, ``03/2021``,
``3/14`` (after a cue such as "on" or "since"), ``20210314`` (after a date label), a month name after
"in"/"since"/"early"..., and holidays (``Christmas Eve 2019``). A bare year (``in 2019``) is kept:
Safe Harbor allows years.

:func:`shift_date` moves a found date by a number of days and writes it back in its own format (same
separators, zero padding, month spelling and case, ordinal suffix, two- or four-digit year).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from medfuse.text.deid.spans import PHISpan

__all__ = ["find_dates", "shift_date"]

_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december")
_MONTH = (r"(?P<mon>(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?))(?P<dot>\.)?")
_WEEKDAY = r"(?:(?P<wd>(?i:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?i:day|sday|nesday|rsday|urday)?\.?),?\s+)?"
_FULL_MONTH = r"(?P<mon>January|February|March|April|May|June|July|August|September|October|November|December)"
_DAY = r"(?P<d>0?[1-9]|[12]\d|3[01])"
_NUM_MONTH = r"(?P<m>0?[1-9]|1[0-2])"
_YEAR4 = r"(?P<y>(?:18|19|20)\d{2})"
_ORD = r"(?P<ord>(?i:st|nd|rd|th))?"
_END = r"(?![\w/]|[.-]\d)"
_START = r"(?<![\w/.-])"

# Cue words before a year-less numeric date ("on 3/14", "since 2/3"): without one, 4/5 is a fraction.
_MD_CUE = re.compile(
    r"(?i:\b(?:on|since|from|dated|until|till|through|thru|to|by|before|after|starting|beginning|between|"
    r"and|date|dos|seen|admitted|admission|discharged|discharge|last|next|scheduled|performed|obtained|"
    r"as of|due|returned|began|started|onset|visit|exam|study|surgery|procedure|ct|mri|x-?ray|for|"
    r"ultrasound|biopsy|board|conference|meeting|appointment|appt|clinic|rounds|f/u|fu|follow-?up|admit|pod|dated)\b)"
    r"[\s:,(]{0,3}$|(?:^|\n)[ \t]*$"
)
_MD_SCORE = re.compile(r"(?i:\b(?:strength|power|motor|murmur|reflex(?:es)?|grade|graded|score|scale|ratio|vision|sbp|bp|blood pressure)\b)")
_MD_RANGE = re.compile(r"(\d{1,2}/\d{1,2})\s*(?:to|-|–|and|through|or)\s*$")
_MD_SCORE_AFTER = re.compile(r"^\s*(?i:strength|power|motor|murmur|reflex|in\s+(?:the\s+)?(?:upper|lower|left|right|bilateral)|throughout|of\b|"
                             r"(?:hours?|hrs?|days?|weeks?|wks?|months?|tabs?|tablets?|doses?|cups?|inch|inches|mile|miles)\b)")
_COMPACT_CUE = re.compile(r"(?i:\b(?:date|dated|dob|d\.o\.b\.|on|birth|born|dos|study date|exam date)\b)[\s:#=]{0,3}$")
_MONTH_CUE = r"(?P<cue>\b(?:in|since|during|until|through|by|early|mid|late|last|next|this|of)[- ])"


@dataclass(frozen=True)
class _Pattern:
    name: str
    regex: re.Pattern[str]
    cue: re.Pattern[str] | None = None  # required just before the match (None: no cue needed)


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern("iso", re.compile(_START + _WEEKDAY + _YEAR4 + r"(?P<s1>[-/.])" + _NUM_MONTH + r"(?P=s1)" + _DAY + r"(?![\d]|[.-]\d)")),
    _Pattern("numeric", re.compile(
        _START + _WEEKDAY + r"(?P<a>\d{1,2})(?P<s1>[/-])(?P<b>\d{1,2})(?P=s1)(?P<y>(?:18|19|20)\d{2}|\d{2})" + _END)),
    _Pattern("numeric-dots", re.compile(
        _START + r"(?P<a>\d{1,2})(?P<s1>\.)(?P<b>\d{1,2})\.(?P<y>(?:18|19|20)\d{2})" + _END)),
    _Pattern("month-day-year", re.compile(
        r"\b" + _WEEKDAY + _MONTH + r"(?P<s1>\s+|-|\s*/\s*)" + _DAY + _ORD
        + r"(?:(?P<s2>,\s*|\s+|-|/|,)(?P<y>(?:18|19|20)\d{2}|'\d{2}))?" + r"(?![\w])")),
    _Pattern("day-month-year", re.compile(
        r"(?<![\w/.-])" + _WEEKDAY + _DAY + _ORD + r"(?P<s1>\s+(?i:of)\s+|\s*-\s*|\s*/\s*|\s*)" + _MONTH
        + r"(?:(?P<s2>,\s*|\s+|-|/|(?<=[A-Za-z]))(?P<y>(?:18|19|20)\d{2}|\d{2}))?" + r"(?![\w])")),
    _Pattern("month-year", re.compile(r"\b" + _MONTH + r"(?P<s2>,?\s+(?i:of)\s+|,?\s+|-|\s*'|/)(?P<y>(?:18|19|20)\d{2})(?!\w)")),
    _Pattern("numeric-month-year", re.compile(_START + _NUM_MONTH + r"(?P<s1>/)" + r"(?P<y>(?:18|19|20)\d{2})" + _END)),
    _Pattern("month-day", re.compile(r"(?<![\w/.])" + _WEEKDAY + r"(?P<a>0?[1-9]|1[0-2])(?P<s1>/)(?P<b>0?[1-9]|[12]\d|3[01])(?![\w/]|\.\d)")),
    _Pattern("day-only", re.compile(
        r"(?i:\b(?:on|since|from|until|till|by|before|after)\s+the\s+)(?P<day>(?:[1-9]|[12]\d|3[01])(?i:st|nd|rd|th))\b"
        r"(?=\s*(?:[.,;:)]|$)|\s+(?i:at|in|and|when|of\s+(?:this|last|next)\s+month)\b)")),
    _Pattern("compact", re.compile(r"(?<!\w)(?P<y>(?:19|20)\d{2})(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])(?!\w)"), cue=_COMPACT_CUE),
    _Pattern("month-name", re.compile(_MONTH_CUE + _FULL_MONTH + r"(?!\s*\d|\w)")),
    _Pattern("holiday", re.compile(
        r"\b(?P<hol>Christmas(?:\s+(?:Eve|Day))?|New\s+Year'?s(?:\s+(?:Eve|Day))?|Thanksgiving(?:\s+Day)?|Easter(?:\s+Sunday)?"
        r"|Independence\s+Day|Fourth\s+of\s+July|Halloween|Valentine'?s\s+Day|Memorial\s+Day|Labor\s+Day|Veterans\s+Day"
        r"|Mother'?s\s+Day|Father'?s\s+Day)(?:,?\s+(?:of\s+)?(?P<y>(?:19|20)\d{2}))?\b")),
)


@dataclass(frozen=True)
class _Parsed:
    year: int | None
    month: int
    day: int | None
    day_first: bool


def _year(text: str | None) -> int | None:
    if not text:
        return None
    digits = text.lstrip("'")
    value = int(digits)
    if len(digits) == 2:
        value += 2000 if value < 50 else 1900
    return value


def _month_from_name(name: str) -> int:
    low = name.lower()
    return next(i + 1 for i, full in enumerate(_MONTH_NAMES) if full.startswith(low[:3]))


def _valid(year: int | None, month: int, day: int | None) -> bool:
    if not 1 <= month <= 12:
        return False
    if day is None:
        return True
    try:
        dt.date(year if year is not None else 2000, month, day)  # 2000: a leap year, so Feb 29 passes
    except ValueError:
        return False
    return True


def _parse(pattern: _Pattern, m: re.Match[str]) -> _Parsed | None:
    g = m.groupdict()
    if g.get("hol") is not None or g.get("day") is not None:  # a holiday or "the 21st": found, not shifted
        return _Parsed(_year(g.get("y")), 1, 1, False)
    if g.get("mon") is not None:
        if g["mon"] == "may" and g.get("d") is None and pattern.name != "month-year":
            return None
        if g["mon"].islower() and g["mon"] in {"may", "mar"}:
            return None  # the verb "may", not the month
        month = _month_from_name(g["mon"])
        day = int(g["d"]) if g.get("d") else None
        year = _year(g.get("y"))
        return _Parsed(year, month, day, pattern.name == "day-month-year") if _valid(year, month, day) else None
    if g.get("a") is not None:
        a, b = int(g["a"]), int(g["b"])
        year = _year(g.get("y"))
        if _valid(year, a, b):
            return _Parsed(year, a, b, False)
        if _valid(year, b, a):
            return _Parsed(year, b, a, True)
        return None
    month, day, year = int(g["m"]), (int(g["d"]) if g.get("d") else None), _year(g.get("y"))
    return _Parsed(year, month, day, False) if _valid(year, month, day) else None


def _month_day_ok(text: str, m: re.Match[str], accepted_ends: set[int]) -> bool:
    """Whether a year-less ``3/14`` is a date: a cue before it and no score or strength around it."""
    before = text[max(0, m.start() - 30):m.start()]
    clause = re.split(r"[;.\n]", text[max(0, m.start() - 80):m.start()])[-1]
    if _MD_SCORE.search(clause) or _MD_SCORE_AFTER.match(text[m.end():m.end() + 30]):
        return False
    if text.startswith(":", m.end()) and not text.startswith(":", m.end() + 1):
        return True  # "Progress note 11/3:" - a dated heading
    previous = _MD_RANGE.search(before)
    if previous is not None:  # "4/5 to 5/5" is a range of scores, "3/14-3/16" one of dates
        return m.start() - len(before) + previous.end(1) in accepted_ends
    return bool(_MD_CUE.search(before[-24:]))


# Quick tests that let whole families of patterns be skipped on texts without any candidate.
_HINTS = {
    "digits": re.compile(r"\d[/.-]\d|\d{8}"),
    "month": re.compile(r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"),
    "holiday": re.compile(r"Christmas|Year|Thanksgiving|Easter|Day|July|Halloween"),
    "day": re.compile(r"(?i:the)\s+\d"),
}
_FAMILY = {"iso": "digits", "numeric": "digits", "numeric-dots": "digits", "numeric-month-year": "digits",
           "month-day": "digits", "compact": "digits", "month-day-year": "month", "day-month-year": "month",
           "month-year": "month", "month-name": "month", "holiday": "holiday", "day-only": "day"}


def _matches(text: str) -> Iterator[tuple[_Pattern, re.Match[str], _Parsed]]:
    present = {family: bool(hint.search(text)) for family, hint in _HINTS.items()}
    for pattern in _PATTERNS:
        if not present[_FAMILY[pattern.name]]:
            continue
        accepted_ends: set[int] = set()
        for m in pattern.regex.finditer(text):
            if pattern.name == "month-day":
                if not _month_day_ok(text, m, accepted_ends):
                    continue
            elif pattern.cue is not None and not pattern.cue.search(text[max(0, m.start() - 24):m.start()]):
                continue
            parsed = _parse(pattern, m)
            if parsed is not None:
                accepted_ends.add(m.end())
                yield pattern, m, parsed


def find_dates(text: str) -> list[PHISpan]:
    """Return a DATE span for every date more specific than a year in ``text``."""
    spans = []
    for pattern, m, _ in _matches(text):
        start = m.start("mon") if pattern.name == "month-name" else m.start("day") if pattern.name == "day-only" else m.start()
        spans.append(PHISpan(start, m.end(), "DATE", text[start:m.end()], f"pattern:date-{pattern.name}"))
    return spans


def _fmt_number(new: int, padded: bool) -> str:
    return f"{new:02d}" if padded else str(new)


def _fmt_year(new: int, old: str) -> str:
    if old.startswith("'"):
        return f"'{new % 100:02d}"
    return f"{new % 100:02d}" if len(old) == 2 else f"{new:04d}"


def _fmt_month_name(new: int, old: str) -> str:
    full = _MONTH_NAMES[new - 1]
    if old.lower() in _MONTH_NAMES:
        word = full
    elif len(old) == 4 and old.lower() == "sept":
        word = full[:4] if new == 9 else full[:3]
    else:
        word = full[:3] if new != 5 else full
    return _match_case(word, old)


def _fmt_weekday(new: dt.date, old: str) -> str:
    word = new.strftime("%A")
    if len(old.rstrip(".")) <= 4:
        word = word[:len(old.rstrip("."))] + ("." if old.endswith(".") else "")
    return _match_case(word, old)


def _match_case(word: str, old: str) -> str:
    if old.isupper():
        return word.upper()
    return word.capitalize() if old[:1].isupper() else word.lower()


def _ordinal(day: int, old: str) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if old.isupper() else suffix


def shift_date(text: str, days: int) -> str | None:
    """Return ``text`` (one date as found by :func:`find_dates`) moved by ``days``, in its own format.

    Dates without a day (``March 2021``) move with the middle of their month; dates without a year
    move within a leap year. Returns None when ``text`` is not a single date this module reads.
    """
    for pattern in _PATTERNS:
        if pattern.name in ("holiday", "day-only"):
            continue  # a shifted holiday names another day, a lone day has no month: the caller writes a placeholder
        m = pattern.regex.fullmatch(text)
        if m is None and pattern.name == "month-name":
            m = re.fullmatch(_FULL_MONTH + r"(?!\s*\d|\w)", text)
        if m is None:
            continue
        parsed = _parse(pattern, m)
        if parsed is None:
            continue
        base = dt.date(parsed.year if parsed.year is not None else 2000, parsed.month, parsed.day or 15)
        new = base + dt.timedelta(days=days)
        if parsed.year is None and parsed.day is not None and new.year != 2000:
            new = new.replace(year=2000) if not (new.month == 2 and new.day == 29) else new
        values = {"y": new.year, "m": new.month, "d": new.day}
        if m.groupdict().get("a") is not None:
            values["a"], values["b"] = (new.day, new.month) if parsed.day_first else (new.month, new.day)
        numbers = [v for k, v in m.groupdict().items() if k in ("m", "d", "a", "b") and v]
        # Zero padding is visible in "03/14" or "04-MAR-21"; "14-MAR-21" and "14Mar2021" are written padded too.
        dashed = (m.groupdict().get("s1") or "") in ("-", "")
        padded = pattern.name in ("iso", "compact") or any(v.startswith("0") for v in numbers) or (
            len(numbers) > 1 and all(len(v) == 2 for v in numbers)) or (
            pattern.name in ("day-month-year", "month-day-year") and dashed and all(len(v) == 2 for v in numbers))
        edits = []
        for name, group_text in m.groupdict().items():
            if group_text is None or m.start(name) < 0:
                continue
            if name in ("m", "d", "a", "b"):
                edits.append((m.start(name), m.end(name), _fmt_number(values[name], padded)))
            elif name == "y":
                edits.append((m.start(name), m.end(name), _fmt_year(new.year, group_text)))
            elif name == "mon":
                edits.append((m.start(name), m.end(name), _fmt_month_name(new.month, group_text)))
            elif name == "ord":
                edits.append((m.start(name), m.end(name), _ordinal(new.day, group_text)))
            elif name == "wd":
                edits.append((m.start(name), m.end(name), _fmt_weekday(new, group_text)))
        out = text
        for start, end, value in sorted(edits, reverse=True):
            out = out[:start] + value + out[end:]
        return out
    return None
