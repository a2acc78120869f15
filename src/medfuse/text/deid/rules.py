"""Pattern rules for ages over 89, phone and fax numbers, e-mail, URLs, IP addresses, SSNs and ID numbers.

Each rule is a regular expression with an optional named group ``v`` (the value to remove when the
match also holds its label, as in ``MRN: 1234567``) and an optional check of the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from medfuse.text.deid.fastre import compile_lower, lowered
from medfuse.text.deid.spans import PHISpan

__all__ = ["Rule", "find_pattern_phi", "RULES"]


@dataclass(frozen=True)
class Rule:
    """A regular expression that finds one PHI type; ``kind`` is ``context`` (labelled) or ``pattern``."""

    name: str
    type: str
    regex: re.Pattern[str]
    kind: str = "pattern"
    check: Callable[[str], bool] | None = None
    lower: bool = False  # the regex runs on the lower-cased text (see :mod:`fastre`)

    def find(self, text: str, low: str | None = None) -> list[PHISpan]:
        """Return the spans this rule finds in ``text`` (the ``v`` group when present, else the match).

        ``low`` is ``lowered(text)`` when the caller has it already.
        """
        out = []
        subject = (low if low is not None else lowered(text)) if self.lower else text
        for m in self.regex.finditer(subject):
            group = "v" if "v" in self.regex.groupindex and m.group("v") is not None else 0
            start, end = m.span(group)
            value = text[start:end]
            stripped = value.rstrip(".,;:!?)]}'\"")
            end -= len(value) - len(stripped)
            if end <= start or (self.check is not None and not self.check(stripped)):
                continue
            out.append(PHISpan(start, end, self.type, stripped, f"{self.kind}:{self.name}"))
        return out


# ---------------------------------------------------------------- ages over 89
_WORD_AGES = re.compile(r"(?i)ninety|one hundred|hundred|nonagenarian|centenarian|supercentenarian|\d{2,3}['’]?s")


def _old_age(value: str) -> bool:
    digits = re.match(r"\d+", value)
    if digits is None:
        return bool(_WORD_AGES.match(value)) and not value.lower().startswith(("8", "7"))
    return 90 <= int(digits.group()) <= 125


_AGE_UNIT = r"(?:(?:years?|yrs?|yr|y)\.?[\s-]*(?:old\b|o\b\.?)|y/o\b|yo\b|y\.o\.)"
_AGE_WORDS = r"(?i:ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?|one[- ]hundred(?:[- ](?:and[- ])?(?:one|two|three|four|five|six|seven|eight|nine|ten))?)"

_AGE_RULES = (
    Rule("age-year-old", "AGE", compile_lower(r"(?<![\d.])(?P<v>\d{2,3})[\s-]*(?i:" + _AGE_UNIT + r")"), check=_old_age, lower=True),
    Rule("age-years-of-age", "AGE", compile_lower(r"(?<![\d.])(?P<v>\d{2,3})[\s-]*(?i:years?|yrs?)[\s-]+(?i:of[\s-]+age)\b"), check=_old_age, lower=True),
    Rule("age-label", "AGE", compile_lower(
        r"(?i:\b(?:age|aged|ages|at the age of|at age)\b)[\s:=]*(?:of\s+|is\s+|was\s+|~\s*|about\s+)?(?P<v>\d{2,3})(?![\d.%]|\s*(?i:%|mm|cm|kg|mg|lbs?|months?|mos?|weeks?|wks?|days?|hours?))"),
        kind="context", check=_old_age, lower=True),
    Rule("age-sex", "AGE", re.compile(r"(?<![\d.])(?P<v>\d{2,3})[\s-]?(?:y\s?|yo\s?)?(?:M|F|(?i:male|female|man|woman|gentleman|lady|gent))\b"), check=_old_age),
    Rule("age-years", "AGE", compile_lower(r"(?i:\b(?:is|was|at|now|turned|turning|of)\s+)(?P<v>\d{2,3})\s*(?i:years?|yrs?)\b"), check=_old_age, lower=True),
    Rule("age-decade", "AGE", compile_lower(
        r"(?i:\bin\s+(?:his|her|their|the)\s+(?:early\s+|mid[\s-]+|late\s+)?)(?P<v>(?:9\d|1[01]\d)['’]?s|(?i:nineties))\b"), check=_old_age, lower=True),
    Rule("age-term", "AGE", compile_lower(r"\b(?P<v>nonagenarian|centenarian|supercentenarian)s?\b"), check=_old_age, lower=True),
    Rule("age-words", "AGE", compile_lower(r"\b(?P<v>" + _AGE_WORDS + r")[\s-]+(?i:years?)[\s-]+(?i:old|of age)\b"), check=_old_age, lower=True),
)

# ---------------------------------------------------------------- phone and fax
_PHONE_LABEL = (r"(?i:\b(?:phone|ph|tel|telephone|cell|cellular|mobile|fax|facsimile|pager|pgr|beeper|call|"
                r"contact|callback|call back|reached at|reach at)\b|\b(?:home|work|office|direct|main)\s*[:#])[\s.:#=]*(?:(?i:at|is)\s+)?")
_EXT = r"(?:\s*(?i:x|ext\.?|extension)\s*\d{1,6})?"


_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _enough_digits(value: str) -> bool:
    return 7 <= sum(c.isdigit() for c in value) <= 15 and not _DATE_LIKE.fullmatch(value)


_PHONE_RULES = (
    Rule("phone-us", "PHONE", re.compile(
        r"(?<![\w+/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\d-])" + _EXT)),
    Rule("phone-international", "PHONE", re.compile(
        r"(?<![\w+])\+(?:[2-9]\d{0,2})[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?!\d)" + _EXT), check=_enough_digits),
    Rule("phone-labelled", "PHONE", compile_lower(
        _PHONE_LABEL + r"(?P<v>\+?(?:\(\d{3}\)|\d)[\d\s().-]{5,18}\d" + _EXT + r")(?!\d)"), kind="context", check=_enough_digits, lower=True),
    Rule("phone-extension", "PHONE", compile_lower(r"(?i:\b(?:ext\.?|extension)\s*#?\s*)(?P<v>\d{2,6})\b"), kind="context", lower=True),
    # In-house pagers and extensions: "pager 4-4412", "pgr 54412", "beeper #3312".
    Rule("phone-pager", "PHONE", compile_lower(
        r"\b(?:pager|pgr|beeper|bleep|vocera|spectralink|ext|extension|x)\b\.?\s*[:#]?\s*(?P<v>\d{1,2}-\d{4}|\d{4,5})(?![\d-])"),
        kind="context", lower=True),
)

# ---------------------------------------------------------------- e-mail, web, network
_TLDS = r"(?:com|org|net|edu|gov|mil|int|io|ai|health|info|biz|us|uk|ca|de|fr|au|nl|ch|se|in|jp|cn|br|es|it|eu)"


def _ipv4(value: str) -> bool:
    return all(0 <= int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in value.split("."))


def _ipv6(value: str) -> bool:
    groups = [g for g in value.split(":") if g]
    return len(groups) >= 3 or ("::" in value and len(groups) >= 2) or value == "::1"


_NET_RULES = (
    Rule("email", "EMAIL", re.compile(r"(?<![\w.+-])[^\W_][\w.%+-]*@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")),
    Rule("url", "URL", compile_lower(r"\b(?:(?:https?|ftp|sftp)://|www\.)[^\s<>\"']+"), lower=True),
    Rule("url-domain", "URL", compile_lower(r"(?<![@\w.-])(?:[a-z0-9-]+\.)+" + _TLDS + r"(?:/[^\s<>\"']*)?(?![\w@-])"), lower=True),
    Rule("ipv4", "IP", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)"), check=_ipv4),
    Rule("ipv6", "IP", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?(?![\w:])"), check=_ipv6),
)

# ---------------------------------------------------------------- SSN and identifying numbers
_SSN_RULES = (
    Rule("ssn", "SSN", re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")),
    Rule("ssn-labelled", "SSN", compile_lower(
        r"(?i:\b(?:ssn\b|ss\s?#|ss\s?no\b\.?|soc(?:ial)?\.?\s+sec(?:urity)?\b\.?(?:\s+(?:number|no\.?|num|#))?))[\s.:#=]*(?:(?i:is)\s+)?"
        r"(?P<v>\d{3}[-\s.]?\d{2}[-\s.]?\d{4})(?!\d)"), kind="context", lower=True),
)

_NO = r"(?:\s*(?:no\.?|nos\.?|num\.?|number|#|id))"
_ID_LABELS = (
    r"mrn|mr\s*#|mr" + _NO + r"|med(?:ical)?\.?\s*rec(?:ord)?s?\.?" + _NO + r"?|record" + _NO + r"|chart" + _NO
    + r"|hosp(?:ital)?\.?" + _NO + r"|unit" + _NO + r"|pat(?:ient)?\.?\s*id|patient" + _NO + r"|pt\.?" + _NO
    + r"|acct\.?" + _NO + r"?|account" + _NO + r"?|acc\s*#|acc\.?" + _NO + r"?|accn\.?" + _NO + r"?|accession" + _NO + r"?"
    + r"|encounter" + _NO + r"?|visit" + _NO + r"|fin\.?" + _NO + r"?|csn|har|episode" + _NO
    + r"|health\s*plan(?:\s*(?:beneficiary|member|id|no\.?|number|#))*|(?:member|subscriber|beneficiary)" + _NO
    + r"|(?:insurance|policy|group|plan)" + _NO + r"|medicaid" + _NO + r"?|medicare" + _NO + r"?"
    + r"|(?:driver'?s?\s*)?licen[cs]e" + _NO + r"?|dl" + _NO + r"|dea" + _NO + r"?|npi" + _NO + r"?|certificate" + _NO
    + r"|device(?:\s*serial)?" + _NO + r"?|serial" + _NO + r"?|s/n|sn|lot" + _NO + r"|udi|implant" + _NO + r"?"
    + r"|pacemaker" + _NO + r"|order" + _NO + r"|requisition" + _NO + r"?|req" + _NO + r"|specimen" + _NO
    + r"|case" + _NO + r"|study" + _NO + r"|exam" + _NO + r"|ref(?:erence)?" + _NO + r"|vin|vehicle" + _NO
    + r"|license\s*plate" + _NO + r"?|plate" + _NO + r"|id(?=\s*[:#])|identifier"
)


def _id_value(value: str) -> bool:
    return any(c.isdigit() for c in value) and len(value) >= 3


_ID_RULES = (
    Rule("id-labelled", "ID", compile_lower(
        r"(?i:\b(?:" + _ID_LABELS + r"))(?![a-z])[\s.:#=-]*(?:(?:is|was)\s+)?[\s:#]*"
        r"(?P<v>(?=[a-z0-9/.-]*\d)[a-z0-9](?:[a-z0-9]|[-/.](?=[a-z0-9])){2,30})"), kind="context", check=_id_value, lower=True),
    Rule("id-prefixed", "ID", re.compile(r"(?<![\w-])[A-Z]{1,4}-?\d{5,12}(?![\w-])")),
    Rule("id-digits", "ID", re.compile(r"(?<![\w.,/$-])(?<!(?i:pmid|isbn|issn)[:#])(?<!(?i:pmid|isbn|issn)[:#] )(?<!(?i:pmid|isbn|issn) )\d{7,}(?![\w]|[.,/]\d)")),
)

RULES: tuple[Rule, ...] = _AGE_RULES + _PHONE_RULES + _NET_RULES + _SSN_RULES + _ID_RULES


_HINTS: dict[str, re.Pattern[str]] = {
    "AGE": re.compile(r"(?<!\d)(?:9\d|1[0-2]\d)(?!\d)|(?i:ninety|hundred|genarian)"),
    "EMAIL": re.compile("@"),
    "URL": re.compile(r"(?i:://|www\.|\.(?:" + _TLDS[3:-1] + r")\b)"),
    "IP": re.compile(r"\d\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:"),
}


def find_pattern_phi(text: str, low: str | None = None) -> list[PHISpan]:
    """Return the spans of every rule in :data:`RULES` (overlaps are left for the merger)."""
    low = low if low is not None else lowered(text)
    hinted = {kind: bool(hint.search(text)) for kind, hint in _HINTS.items()}
    spans: list[PHISpan] = []
    for rule in RULES:
        if hinted.get(rule.type, True):
            spans.extend(rule.find(text, low))
    return spans
