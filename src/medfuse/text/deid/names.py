"""Names of patients, relatives and clinicians.

Three kinds of evidence, strongest first:

- context: a title (``Dr.``, ``Mrs.``), a label (``Patient:``, ``Electronically signed by``,
  ``discussed with``, ``his wife``) before the name, or a credential after it (``Jane Roe, MD``);
- document: a word of a name found by context, seen again elsewhere in the same text (``Mr. Smith``
  ... later ``Smith``);
- dictionary: a common first name before a capitalised word (``John Kowalczyk``), or a first name or
  surname on its own when it is not also an everyday word.

Eponyms and clinical words survive: word lists and repeated names skip words used as eponyms
("Graves disease", "positive Murphy sign", "pouch of Douglas") and words of :data:`COMMON_WORDS`.
A title or label still makes any word a name ("Dr. Parkinson").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from medfuse.text.deid.fastre import compile_lower, lowered
from medfuse.text.deid.medical_terms import (
    COMMON_WORDS,
    EPONYM_HEADS,
    EPONYM_MODIFIERS,
    EPONYMS,
    PROTECTED_PHRASE,
)
from medfuse.text.deid.names_data import (
    AMBIGUOUS_FIRST,
    AMBIGUOUS_LAST,
    FIRST_NAMES,
    LAST_NAMES,
    NAME_PARTICLES,
)
from medfuse.text.deid.places_data import CITIES, COUNTRIES, STATE_NAMES
from medfuse.text.deid.spans import PHISpan

__all__ = ["find_names"]

_U = "A-ZÀ-ÖØ-Þ"
_L = "a-zß-öø-ÿ"
_TC = rf"(?:[{_U}]['’])?[{_U}][{_L}]+(?:[{_U}][{_L}]+)?(?:-(?:[{_U}]['’])?[{_U}][{_L}]+(?:[{_U}][{_L}]+)?)*"
_UC = rf"(?:[{_U}]['’])?[{_U}]{{2,}}(?:-[{_U}]{{2,}})*"
_TOKEN = re.compile(
    rf"[ \t]*(?:(?P<ini>[{_U}]\.(?:[ \t]?[{_U}]\.)*)|(?P<word>{_TC}|{_UC})(?!\w|['’](?![sS]\b))|(?P<bare>[{_U}])(?=[ \t]+[{_U}]|[ \t]*(?:$|\n|[,;|]))"
    rf"|(?P<lower>[{_L}][{_L}'’-]+)(?![\w]))"
)
_COMMA = re.compile(r",[ \t]*")
_BLANKS = re.compile(r"[ \t]*")
_WORD_RE = re.compile(rf"(?<![\w'’-])(?:{_TC}|{_UC})(?!\w|['’](?![sS]\b))")

_NAME_WORDS = FIRST_NAMES | LAST_NAMES
_CREDENTIALS = frozenset({"md", "do", "rn", "np", "pa", "phd", "mbbs", "mbchb", "frcr", "frcpc", "facr", "facp", "dnp",
                          "crna", "rt", "rdms", "rvt", "arnp", "aprn", "lpn", "pharmd", "dds", "dmd", "mph", "msc",
                          "ms", "bsn", "jr", "sr", "ii", "iii", "iv", "esq"})
_PLACES = CITIES | STATE_NAMES | COUNTRIES
# What may follow "Smith, John" for the comma to be a name inversion: a credential or the line's end.
_CLOSING = re.compile(r"[ \t]*(?:$|\n|[|;(]|,?[ \t]*(?:M\.?D\.?|D\.?O\.?|R\.?N\.?|N\.?P\.?|PA-C|Ph\.?D\.?)\b|[ \t]+(?:[A-Z]\.?[ \t]*)?(?:$|\n))")

# ---------------------------------------------------------------- contexts
_TITLE = re.compile(r"(?<![\w.])(?:(?:Dr|Drs|Mr|Mrs|Ms|Mx|Prof|Rev|Sr|Sra|Srta|Mme|Mlle)\.?|(?:DR|DRS|MR|MRS|MS|PROF)\.|"
                    r"(?:Doctor|Professor|Miss|Madam|Nurse|Herr|Frau)\b|(?P<caps>DR|MR|MRS|MS)(?=[ \t]+[A-Z][A-Z'’]))(?=[ \t]+\S)")
# Endings of clinical words ("MR ANGIOGRAPHY", "DR SCREENING") that are not name endings.
_CLINICAL_ENDINGS = ("graphy", "gram", "grams", "scopy", "metry", "tion", "tions", "sion", "osis", "itis", "emia", "ectomy",
                     "plasty", "otomy", "ostomy", "logy", "ular", "ical", "ity", "ism", "pathy", "ated", "ness", "ment",
                     "ments", "ence", "ance", "able", "ible")
_STRONG_LABELS = (
    r"patient(?:'s)?[ \t]+name|pt\.?[ \t]+name|(?<![a-z][ \t])name|full[ \t]+name|attending(?:[ \t]+(?:physician|radiologist|surgeon|md|of[ \t]+record))?"
    r"|referring(?:[ \t]+(?:physician|provider|doctor|md|clinician|dr))?|ordering(?:[ \t]+(?:physician|provider|md|clinician))?"
    r"|requesting(?:[ \t]+(?:physician|provider|clinician))?|primary[ \t]+care(?:[ \t]+(?:physician|provider|doctor))?|pcp"
    r"|(?:reading|interpreting|staff|consulting)[ \t]+(?:radiologist|physician)|radiologist"
    r"|(?:interpreted|read|dictated|transcribed|signed|e-?signed|co-?signed|countersigned|verified|reviewed|approved|"
    r"authenticated|edited|seen|examined|evaluated|assessed|performed|supervised|consulted|accompanied|referred|staffed|"
    r"reported|documented|attested|finali[sz]ed|prepared|entered|ordered|requested|brought)(?:[ \t]+and[ \t]+\w+)?[ \t]+by"
    r"|(?:discussed|reviewed|spoke|spoken|talked|conferred|consulted|met|staffed|seen|signed[ \t]+out)[ \t]+(?:with|w/|to)|d/w"
    r"|(?:called|communicated|relayed|conveyed|reported|given|faxed|sent|paged|forwarded)[ \t]+to|cc|copy[ \t]+to"
    r"|emergency[ \t]+contact|next[ \t]+of[ \t]+kin|nok|contact[ \t]+person|informant|historian|guarantor|insured"
    r"|surgeon|technologist|sonographer|consultant|proceduralist|anesthesiologist|dictator|transcriptionist|scribe|attn"
    r"|dear|mother|father|wife|husband|son|daughter|sister|brother|spouse|partner|fianc[eé]e?|girlfriend|boyfriend"
    r"|aunt|uncle|niece|nephew|grandson|granddaughter|grandmother|grandfather|guardian|caregiver|friend|neighbou?r"
    r"|roommate|mom|dad"
)
_WEAK_LABELS = r"patient|pt|physician|provider|nurse|resident|fellow|tech|paged|notified|called"
# Labels that introduce a name only as a form field ("Signed: ...", "Author - ...").
_FIELD_LABELS = (
    r"signed|e-?signed|dictated|transcribed|reviewed|approved|verified|author|reader|interpreter|reporter"
    r"|reporting[ \t]+(?:physician|radiologist)|performing[ \t]+(?:physician|technologist)|clinician|doctor|surgeon"
    r"|requesting|referral|ref\.?[ \t]+(?:physician|dr|md)|contact"
)
_LABEL = compile_lower(  # runs on lowered text
    r"\b(?:(?P<strong>" + _STRONG_LABELS + r")|(?P<field>" + _FIELD_LABELS + r")(?=[ \t]*[:#]|[ \t]+[-–—][ \t])"
    r"|(?P<weak>" + _WEAK_LABELS + r"))\b"
    r"(?P<sep>[ \t]*[:#][ \t]*|[ \t]+[-–—][ \t]+|[ \t]*,[ \t]*|[ \t]+(?:(?:is|was|named|called)[ \t]+)?|[ \t]*\([ \t]*)(?=\S)"
)
_CREDENTIAL = re.compile(
    r"(?P<comma>,)?[ \t]*(?<![\w.])(?:M\.D\.|MD|D\.O\.|Ph\.?D\.?|MBBS|MBChB|FRCR|FRCPC|FACR|FACP|DNP|CRNA|ARNP|APRN|PharmD|DDS|DMD"
    r"|(?P<weak>DO|RN|NP|PA-C|PA|RT\(R\)|RT|RDMS|RVT|LPN|MPH|MSc|MS|BSN|R\.N\.|N\.P\.|P\.A\.))(?![\w(])"
)
_SIGNATURE_END = re.compile(
    r"[ \t]*(?:$|\n|[|,;]|(?i:on)\b|\d|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|date|mon|tue|wed|thu|fri|sat|sun))")
_TRAILING_NAME = re.compile(
    rf"(?:(?:{_TC}|{_UC}|[{_U}]\.|[{_U}](?=[ \t]))(?:,[ \t]*|[ \t]+)){{0,3}}(?:{_TC}|{_UC}|[{_U}]\.?)[ \t]*$"
)


_NEXT_WORDS = re.compile(r"(?:['’][sS]|[sS]['’])?[ \t-]*(?:(?:and|&)[ \t-]+)?([A-Za-z]+)(?:[ \t-]+([A-Za-z]+))?(?:[ \t-]+([A-Za-z]+))?")
_PREVIOUS_WORD = re.compile(r"([A-Za-z]+)[ \t-]*$")


def _is_eponym_use(text: str, start: int, end: int) -> bool:
    """Whether the word at ``text[start:end]`` names a disease, sign or device rather than a person."""
    following = _NEXT_WORDS.match(text, end)
    if following is not None:
        # The next words, skipping other eponyms: "Graves disease", "Swan Ganz catheter", "Bell's palsy".
        for word in (w.lower() for w in following.groups() if w):
            if word in EPONYM_HEADS:
                return True
            if word not in EPONYMS:
                break
    before = _PREVIOUS_WORD.search(text, max(0, start - 30), start)
    return bool(before and (before.group(1).lower() in EPONYM_MODIFIERS or before.group(1).lower() in EPONYMS))


def _take_name(text: str, pos: int, *, field: bool, weak: bool, caps: bool = False) -> tuple[int, int] | None:
    """Return the span of the name that starts at ``pos`` (after a title or label), or None.

    ``field``: a form field or title, where upper-case and listed lower-case words count;
    ``weak``: a weak cue ("patient", "his wife"), which needs a listed name word or two words;
    ``caps``: the cue itself is in capitals, so unlisted capitalised words may be names.
    """
    blank = _BLANKS.match(text, pos)
    title = _TITLE.match(text, blank.end() if blank else pos)
    caps_title = title is not None and title.group("caps") is not None
    if title is not None:
        pos, field, weak = title.end(), True, False
    words: list[tuple[int, int, str]] = []
    start = end = -1
    i = pos
    inverted = False
    while len(words) < 4:
        m = _TOKEN.match(text, i)
        if m is None:
            break
        kind = m.lastgroup or ""
        token = m.group(kind)
        low = token.lower()
        if kind == "lower":
            nxt = _TOKEN.match(text, m.end())
            if low in NAME_PARTICLES and words and nxt is not None and nxt.lastgroup == "word":
                i = m.end()
                continue
            if not (field and low in _NAME_WORDS and low not in COMMON_WORDS):
                break
        elif kind == "word":
            if low in _CREDENTIALS and token.isupper():
                break
            if caps_title and low not in _NAME_WORDS and low.endswith(_CLINICAL_ENDINGS + ("ing", "ings", "oma", "ive")):
                break  # "MR ANGIOGRAPHY": magnetic resonance, not Mister
            if low in COMMON_WORDS and not (low in _NAME_WORDS and not words and title is not None):
                break
            if token.isupper() and not field and low not in _NAME_WORDS and (weak or not caps or low.endswith(_CLINICAL_ENDINGS)):
                break  # "seen with ACL tear": capitals in mixed-case text are abbreviations
            if low in _PLACES and low not in _NAME_WORDS:
                break
        elif kind in ("ini", "bare") and not words and _TOKEN.match(text, m.end()) is None:
            break
        if start < 0:
            start = m.start(kind)
        if kind in ("word", "lower"):
            words.append((m.start(kind), m.end(kind), low))
        end = m.end(kind)
        i = m.end()
        comma = _COMMA.match(text, i)
        if comma and len(words) == 1 and not inverted:  # "Smith, John A."
            nxt = _TOKEN.match(text, comma.end())
            if nxt is not None and nxt.lastgroup == "word":
                nlow = nxt.group("word").lower()
                closes = _CLOSING.match(text, nxt.end()) is not None
                if nlow not in COMMON_WORDS and nlow not in _CREDENTIALS and (field or nlow in FIRST_NAMES or (closes and not weak)):
                    inverted = True
                    i = comma.end()
    if not words:
        return None
    # A trailing initial belongs to the name only after a comma form ("Smith, John A.").
    if end > words[-1][1] and not inverted:
        end = words[-1][1]
    if weak and len(words) < 2 and not any(w[2] in _NAME_WORDS for w in words):
        return None
    return start, end


def _context_names(text: str) -> Iterator[PHISpan]:
    """Yield names after titles and labels, and before credentials."""
    for m in _TITLE.finditer(text):
        if m.group().lower().startswith("dr") and re.search(r"\d+[ \t]+(?:[NSEW]\.?[ \t]+)?(?:[A-Z][A-Za-z]+[ \t]+){1,3}$", text[max(0, m.start() - 40):m.start()]):
            continue  # "12 Oak Dr Springfield": a street suffix, not a title
        got = _take_name(text, m.start(), field=True, weak=False)
        if got:
            yield PHISpan(got[0], got[1], "NAME", text[got[0]:got[1]], "context:title")
    for m in _LABEL.finditer(lowered(text)):
        colon = any(c in m.group("sep") for c in ":#-–—")
        weak = m.group("weak") is not None and not colon
        got = _take_name(text, m.end(), field=colon, weak=weak, caps=text[m.start():m.end()].strip(" \t:#(,-").isupper())
        if got:
            yield PHISpan(got[0], got[1], "NAME", text[got[0]:got[1]], "context:label")
    for m in _CREDENTIAL.finditer(text):
        bare_weak = m.group("weak") is not None and not m.group("comma")
        if bare_weak and not _SIGNATURE_END.match(text, m.end()):
            continue  # "Smith DO" only closing a signature line, never "I DO"
        before = text[max(0, m.start() - 80):m.start()]
        trail = _TRAILING_NAME.search(before)
        if trail is None:
            continue
        offset = m.start() - len(before)
        tokens = list(re.finditer(r"\S+", trail.group()))
        # The name is what follows the last report word: "FINDINGS DISCUSSED WITH DANIEL ROE, RN".
        cut = max((i + 1 for i, t in enumerate(tokens)
                   if len(t.group().strip(".,")) > 1
                   and (t.group().lower().strip(".,") in COMMON_WORDS or t.group().lower() in _PLACES)), default=0)
        tokens = tokens[cut:]
        while tokens and tokens[-1].group().lower().strip(".,") in _CREDENTIALS:  # "Jane Roe, MD, PhD"
            tokens.pop()
        if not tokens or all(len(t.group().rstrip(".,")) == 1 for t in tokens) or (bare_weak and len(tokens) < 2):
            continue
        last = tokens[-1].group()
        s = offset + trail.start() + tokens[0].start()
        e = offset + trail.start() + tokens[-1].end() - (len(last) - len(last.rstrip(",")))
        yield PHISpan(s, e, "NAME", text[s:e], "context:credential")


def _dictionary_names(text: str) -> Iterator[PHISpan]:
    """Yield names made of listed first names and surnames."""
    words = list(_WORD_RE.finditer(text))
    for k, m in enumerate(words):
        token, low = m.group(), m.group().lower()
        if low not in _NAME_WORDS or low in COMMON_WORDS or low in _PLACES or _is_eponym_use(text, m.start(), m.end()):
            continue
        nxt = words[k + 1] if k + 1 < len(words) else None
        gap = text[m.end():nxt.start()] if nxt is not None else ""
        # First name + capitalised word (an initial may sit between): "John Kowalczyk", "Mary A. Lee".
        if low in FIRST_NAMES and nxt is not None and re.fullmatch(rf"[ \t]+(?:[{_U}]\.?[ \t]+)?", gap):
            nlow = nxt.group().lower()
            same_case = token.isupper() == nxt.group().isupper()
            if (same_case and nlow not in COMMON_WORDS and nlow not in _PLACES and not _is_eponym_use(text, nxt.start(), nxt.end())
                    and (low not in AMBIGUOUS_FIRST or nlow in LAST_NAMES) and (not token.isupper() or nlow in LAST_NAMES)):
                yield PHISpan(m.start(), nxt.end(), "NAME", text[m.start():nxt.end()], "dictionary:first-last")
                continue
        # "SMITH, JOHN" / "Smith, John": surname, comma, first name.
        nfirst = nxt.group().lower() if nxt is not None else ""
        if (low in LAST_NAMES and nxt is not None and re.fullmatch(r",[ \t]*", gap) and nfirst in FIRST_NAMES
                and nfirst not in AMBIGUOUS_FIRST and token.isupper() == nxt.group().isupper()):
            yield PHISpan(m.start(), nxt.end(), "NAME", text[m.start():nxt.end()], "dictionary:last-first")
            continue
        if token.isupper() or low in EPONYMS:
            continue
        if (low in FIRST_NAMES and low not in AMBIGUOUS_FIRST) or (low in LAST_NAMES and low not in AMBIGUOUS_LAST):
            yield PHISpan(m.start(), m.end(), "NAME", token, "dictionary:single")


def _repeated_names(text: str, found: list[PHISpan]) -> Iterator[PHISpan]:
    """Yield other mentions of the words of ``found`` names ("Mr. Smith" ... "Smith")."""
    seen: set[str] = set()
    for span in found:
        for w in _WORD_RE.finditer(span.text):
            low = w.group().lower()
            if len(low) > 1 and low not in COMMON_WORDS and low not in _CREDENTIALS and low not in NAME_PARTICLES:
                seen.add(low)
    if not seen:
        return
    for m in _WORD_RE.finditer(text):
        if m.group().lower() in seen and not m.group().islower() and not _is_eponym_use(text, m.start(), m.end()):
            yield PHISpan(m.start(), m.end(), "NAME", m.group(), "document:repeated-name")


def find_names(text: str) -> list[PHISpan]:
    """Return NAME spans found by titles, labels, credentials, name lists and repetition."""
    protected = [m.span() for m in PROTECTED_PHRASE.finditer(text)]

    def free(span: PHISpan) -> bool:
        return not any(s < span.end and span.start < e for s, e in protected)

    context = list(_context_names(text))
    dictionary = [s for s in _dictionary_names(text) if free(s)]
    repeated = [s for s in _repeated_names(text, context) if free(s)]
    return context + dictionary + repeated
