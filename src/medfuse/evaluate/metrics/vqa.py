"""Visual question answering accuracy with the answer normalisation of the VQA evaluation.

Normalisation follows the official VQA evaluation (Antol et al. 2015; Goyal et al. 2017): punctuation
removed (or replaced by a space inside a word), periods dropped unless a digit follows, lowercase,
number words to digits, articles removed, contractions written without their apostrophe restored,
whitespace collapsed. Medical VQA sets (VQA-RAD, SLAKE, PathVQA) have one answer per question:
accuracy is exact match after normalisation, reported over all, closed (yes/no, choice) and open
questions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics._registry import METRICS

log = logging.getLogger(__name__)

_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# written with the apostrophe; the form without it is mapped back. Forms whose apostrophe-less
# spelling is an ordinary word (we'll -> well, it's -> its, ...) are left out on purpose.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hasn't haven't he'd "
    "he's how'd how'll how's i'd've i'm i've isn't it'd it'll let's ma'am mightn't might've mustn't "
    "must've needn't o'clock oughtn't shan't she's should've shouldn't shouldn't've somebody's "
    "someone's something's that's there'd there're there's they'd they'll they're they've wasn't we've "
    "weren't what'll what're what's what've when's where'd where's where've who'd who'll who's who've "
    "why'll why're why's won't would've wouldn't wouldn't've y'all you'd you'll you're you've"
)
_CONTRACTIONS = {word.replace("'", ""): word for word in _CONTRACTED.split()}


def normalize_answer(answer: str) -> str:
    """Return ``answer`` normalised as the VQA evaluation does (``"Yes."`` -> ``"yes"``, ``"Two"`` -> ``"2"``)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    keep_joined = _COMMA_IN_NUMBER.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        # a mark next to a space (or any mark when a number has a thousands comma) is dropped;
        # one inside a word becomes a space ("x-ray" -> "x ray")
        joined = keep_joined or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if joined else " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_score(prediction: str, answers: str | Sequence[str], *, consensus: bool = False) -> float:
    """Return the score of one prediction in [0, 1].

    answers: one answer, or several. Without ``consensus`` any matching answer scores 1 (exact match).
    With ``consensus`` (VQA v2's ten human answers) the score is the mean over answers j of
    min(1, #{other answers equal to the prediction} / 3).
    """
    truth = [answers] if isinstance(answers, str) else list(answers)
    if not truth:
        raise DataError("a question has no reference answer")
    pred = normalize_answer(prediction)
    normalised = [normalize_answer(a) for a in truth]
    if not consensus:
        return float(pred in normalised)
    matches = [a == pred for a in normalised]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3.0) for m in matches) / len(matches)


@METRICS.register("vqa")
def vqa_accuracy(
    preds: Sequence[str],
    answers: Sequence[str | Sequence[str]],
    answer_types: Sequence[str],
    *,
    consensus: bool = False,
) -> dict[str, float]:
    """Return ``{"vqa_overall", "vqa_closed", "vqa_open"}``: mean :func:`vqa_score` over each set.

    preds: predicted answer per question; answers: reference answer(s) per question; answer_types:
    ``"CLOSED"`` or ``"OPEN"`` per question (any case). A set without questions is NaN.
    """
    if isinstance(preds, str) or not len(preds) == len(answers) == len(answer_types):
        raise DataError(
            f"preds ({len(preds)}), answers ({len(answers)}) and answer_types ({len(answer_types)}) "
            "must be lists with one entry per question"
        )
    if not preds:
        raise DataError("no questions to score")
    kinds = []
    for i, kind in enumerate(answer_types):
        k = str(kind).strip().lower()
        if k not in ("closed", "open"):
            raise DataError(f"answer type '{kind}' of question {i} is neither CLOSED nor OPEN", row=i)
        kinds.append(k)
    scores = [vqa_score(p, a, consensus=consensus) for p, a in zip(preds, answers)]

    def mean(kind: str | None) -> float:
        chosen = [s for s, k in zip(scores, kinds) if kind is None or k == kind]
        if not chosen:
            log.warning("no %s questions: vqa_%s is NaN", kind, kind)
            return float("nan")
        return sum(chosen) / len(chosen)

    return {"vqa_overall": mean(None), "vqa_closed": mean("closed"), "vqa_open": mean("open")}
