"""Candidate answers for closed questions, so a generative model can answer them by choosing.

A closed question (yes/no, or "A or B?") is answered by scoring each candidate's log-likelihood and
picking the best (see :func:`medfuse.models.generative.generate.answer`), which removes spelling and
phrasing errors from closed-question accuracy while open questions are answered by free generation.
Candidates come from three places: the options written in the question (``"..., liver or heart?"``),
yes/no for questions that start with an auxiliary verb, and an :class:`AnswerBank` of the answers that
closed questions with the same wording had in the training data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

YES_NO = ("yes", "no")
_AUXILIARY = re.compile(
    r"^\s*(is|are|was|were|does|do|did|can|could|has|have|had|will|would|should|shall|may|might|must)\b", re.I
)
_WORDS = re.compile(r"[^\w\s-]+")
_ARTICLES = {"the", "a", "an"}


def question_key(question: str) -> str:
    """Return ``question`` lowercased with punctuation dropped and spaces collapsed (the bank's key)."""
    return " ".join(_WORDS.sub(" ", question.lower()).split())


def _answer_key(answer: str) -> str:
    return " ".join(answer.lower().split())


def is_yes_no(question: str) -> bool:
    """Whether ``question`` reads as a yes/no question (starts with an auxiliary verb, names no options)."""
    return bool(_AUXILIARY.match(question)) and not parse_options(question)


def parse_options(question: str) -> list[str]:
    """Return the options a question lists (``"Which is bigger, liver or heart?"`` -> ``["liver", "heart"]``).

    With a comma the options are the comma/``or`` separated list after the first comma; without one, the
    words either side of ``or`` (as many words on the left as the right-hand option has, found by a shared
    last word: ``"T1 weighted or T2 weighted MRI"`` -> ``["T1 weighted", "T2 weighted"]``).
    """
    text = question.strip().rstrip("?").strip()
    low = text.lower()
    if " or " not in f" {low} ":
        return []
    comma = text.find(",")
    if comma != -1 and comma < low.rfind(" or "):
        tail = text[comma + 1:]
        parts = re.split(r",|\s+or\s+", tail, flags=re.I)
        return _unique(p.strip() for p in parts if p.strip())
    pieces = re.split(r"\s+or\s+", text, maxsplit=1, flags=re.I)
    if len(pieces) != 2:
        return []
    lw = pieces[0].split()
    rw = pieces[1].split()
    while rw and rw[0].lower() in _ARTICLES:
        rw = rw[1:]
    if not lw or not rw:
        return []
    k = next((n for n in range(min(3, len(rw), len(lw)), 0, -1) if lw[-1].lower() == rw[n - 1].lower()), 1)
    return _unique([" ".join(lw[-k:]), " ".join(rw[:k])])


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = _answer_key(item)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


@dataclass
class AnswerBank:
    """Answers that closed questions had in training, by normalised question wording."""

    answers: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, questions: Sequence[str], answers: Sequence[str], answer_types: Sequence[str] | None = None) -> AnswerBank:
        """Return the bank of closed rows (``answer_type`` CLOSED, or yes/no answers when types are absent)."""
        bank: dict[str, list[str]] = {}
        types = list(answer_types) if answer_types is not None else [""] * len(questions)
        for question, answer, kind in zip(questions, answers, types):
            kind = str(kind).strip().lower()
            closed = kind == "closed" or (kind not in ("open", "closed") and _answer_key(answer) in YES_NO)
            if closed and str(answer).strip():
                found = bank.setdefault(question_key(question), [])
                if _answer_key(answer) not in {_answer_key(a) for a in found}:
                    found.append(str(answer).strip())
        return cls(bank)

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]] | None) -> AnswerBank:
        """Return a bank from :meth:`to_dict` output (as stored in a checkpoint's ``extra``)."""
        return cls({str(k): [str(a) for a in v] for k, v in (data or {}).items()})

    def to_dict(self) -> dict[str, list[str]]:
        """Return the bank as plain JSON-ready data."""
        return {k: list(v) for k, v in self.answers.items()}

    def get(self, question: str) -> list[str]:
        """Return the closed answers seen for ``question``'s wording (empty when unseen)."""
        return list(self.answers.get(question_key(question), []))


def closed_candidates(question: str, bank: AnswerBank | None = None) -> list[str] | None:
    """Return the candidate answers of a closed question, or None when none can be named (answer freely)."""
    options = parse_options(question)
    found = options + (bank.get(question) if bank is not None else [])
    if not options and _AUXILIARY.match(question):
        found += list(YES_NO)
    found = _unique(found)
    return found or None


__all__ = ["YES_NO", "AnswerBank", "closed_candidates", "is_yes_no", "parse_options", "question_key"]
