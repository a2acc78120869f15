"""Rule-based finding labels for report text (NegEx-style) and the clinical efficacy of generated reports.

``label_report`` finds mentions of the findings in :mod:`clinical_vocab`, then decides per mention,
within its sentence: a negation or uncertainty trigger before the mention applies up to a scope
terminator ("but", "however", ...) or the sentence end, the nearest such trigger deciding; a trigger
after the mention ("is absent", "cannot be excluded") applies within six words. A finding mentioned
several times is positive if any mention is, else uncertain if any is, else negative (the CheXpert
labeller's aggregation, Irvin et al. 2019). "no finding" is positive when no finding is positive or
uncertain and the report states a normal study or negates at least one finding.

``clinical_efficacy`` compares labels of generated and reference reports (the "clinical efficacy"
metrics of report generation, e.g. Chen et al. 2020, R2Gen).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import clinical_vocab as vocab
from medfuse.evaluate.metrics._registry import METRICS

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
_POST_WINDOW = 6  # words between a mention and a following trigger
_ABBREVIATIONS = re.compile(r"\b(vs|e\.g|i\.e|approx|dr)\.(?=\s*[a-z0-9])")
_SENTENCE_END = re.compile(r"(?<!\d)[.!?;:](?!\d)|\n")


@dataclass(frozen=True)
class _Span:
    """A matched phrase: a finding mention (``finding`` set) or a trigger (``roles`` set)."""

    start: int
    end: int
    finding: str | None = None
    value: int | None = None  # fixed label of a normal statement; None: decided by the triggers
    roles: frozenset[str] = frozenset()


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    """Return one pattern matching any of ``patterns`` as whole words, longest alternatives first."""
    alternation = "|".join(sorted(patterns, key=len, reverse=True))
    return re.compile(rf"(?<![\w/])(?:{alternation})(?![\w/])")


@lru_cache(maxsize=1)
def _matchers() -> tuple[list[tuple[re.Pattern[str], str, int | None]], dict[str, re.Pattern[str]]]:
    """Return the compiled mention patterns (pattern, finding, fixed value) and trigger patterns by role."""
    mentions: list[tuple[re.Pattern[str], str, int | None]] = [
        (_compile(syn), finding, None) for finding, syn in vocab.FINDINGS.items()
    ]
    mentions += [(_compile(syn), finding, NEGATIVE) for finding, syn in vocab.NORMAL_STATEMENTS.items()]
    mentions.append((_compile(vocab.NO_FINDING_STATEMENTS), vocab.NO_FINDING, POSITIVE))
    roles = {
        "pre_neg": vocab.PRE_NEGATION,
        "post_neg": vocab.POST_NEGATION,
        "pre_unc": vocab.PRE_UNCERTAINTY,
        "post_unc": vocab.POST_UNCERTAINTY,
        "pseudo": vocab.PSEUDO,
        "stop": vocab.TERMINATORS,
    }
    return mentions, {role: _compile(patterns) for role, patterns in roles.items()}


def _spans(sentence: str) -> list[_Span]:
    """Return the non-overlapping mentions and triggers of one sentence, in order (longest match wins)."""
    mentions, triggers = _matchers()
    found: list[_Span] = []
    for pattern, finding, value in mentions:
        found += [_Span(m.start(), m.end(), finding, value) for m in pattern.finditer(sentence)]
    by_span: dict[tuple[int, int], set[str]] = {}
    for role, pattern in triggers.items():
        for m in pattern.finditer(sentence):
            by_span.setdefault((m.start(), m.end()), set()).add(role)
    found += [_Span(s, e, roles=frozenset(r)) for (s, e), r in by_span.items()]
    # longer phrases first ("cannot be ruled out" over "ruled out"); a mention beats an equal-length trigger
    found.sort(key=lambda s: (-(s.end - s.start), s.finding is None, s.start))
    kept: list[_Span] = []
    for span in found:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _words_between(sentence: str, start: int, end: int) -> int:
    """Return the number of words in ``sentence[start:end]``."""
    return len(sentence[start:end].split())


def _mention_label(sentence: str, spans: list[_Span], i: int) -> int:
    """Return the label of mention ``spans[i]`` from the triggers around it in its sentence."""
    mention = spans[i]
    found: set[str] = set()
    for j in range(i + 1, len(spans)):  # a trigger after the mention, within a few words
        span = spans[j]
        if "stop" in span.roles or _words_between(sentence, mention.end, span.start) > _POST_WINDOW:
            break
        post = span.roles & {"post_neg", "post_unc"}
        if post:
            found |= post
            break
    for j in range(i - 1, -1, -1):  # the nearest trigger before the mention, back to a terminator
        span = spans[j]
        if "stop" in span.roles:
            break
        pre = span.roles & {"pre_neg", "pre_unc"}
        if pre and not _used_as_post(sentence, spans, j):
            found |= pre
            break
    if found & {"pre_unc", "post_unc"}:
        return UNCERTAIN
    if found & {"pre_neg", "post_neg"}:
        return NEGATIVE
    return POSITIVE


def _used_as_post(sentence: str, spans: list[_Span], j: int) -> bool:
    """Whether negation ``spans[j]`` (e.g. "resolved") closes a mention right before it instead.

    Uncertainty triggers of both kinds ("versus") apply both ways: "nodule versus atelectasis".
    """
    if "post_neg" not in spans[j].roles or "pre_unc" in spans[j].roles or j == 0:
        return False
    before = spans[j - 1]
    return before.finding is not None and _words_between(sentence, before.end, spans[j].start) <= _POST_WINDOW


def _sentences(text: str) -> list[str]:
    """Return the lowercase sentences (or clauses ended by ';' or ':') of a report."""
    lowered = _ABBREVIATIONS.sub(r"\1", re.sub(r"[ \t]+", " ", text.lower()))
    return [s.strip() for s in _SENTENCE_END.split(lowered) if s and s.strip()]


def label_report(text: str) -> dict[str, int]:
    """Return the findings a report mentions: 1 positive, 0 negated, -1 uncertain.

    Findings the report does not mention are absent from the dict. Example:
    ``label_report("No effusion. Possible consolidation.")`` gives
    ``{"pleural effusion": 0, "consolidation": -1, ...}``.
    """
    if not isinstance(text, str):
        raise DataError(f"a report must be a string, got {type(text).__name__}")
    labels: dict[str, list[int]] = {}
    for sentence in _sentences(text):
        spans = _spans(sentence)
        for i, span in enumerate(spans):
            if span.finding is None:
                continue
            value = span.value if span.value is not None else _mention_label(sentence, spans, i)
            labels.setdefault(span.finding, []).append(value)
    out = {}
    for finding, values in labels.items():
        out[finding] = POSITIVE if POSITIVE in values else UNCERTAIN if UNCERTAIN in values else NEGATIVE
    stated_normal = out.pop(vocab.NO_FINDING, None) is not None
    abnormal = any(v != NEGATIVE for v in out.values())
    if abnormal and stated_normal:
        out[vocab.NO_FINDING] = NEGATIVE
    elif not abnormal and (stated_normal or out):
        out[vocab.NO_FINDING] = POSITIVE
    return out


def finding_names() -> list[str]:
    """Return the findings the labeller knows, ``no finding`` last."""
    return [*vocab.FINDINGS, vocab.NO_FINDING]


def _positive_set(labels: dict[str, int], uncertain_as: int) -> set[str]:
    """Return the findings counted as positive."""
    return {f for f, v in labels.items() if v == POSITIVE or (v == UNCERTAIN and uncertain_as == POSITIVE)}


@METRICS.register("clinical_efficacy")
def clinical_efficacy(
    generated: Sequence[str], references: Sequence[str], uncertain_as: int = 1
) -> dict[str, float]:
    """Return precision, recall and F1 of the positive findings of generated reports against references.

    generated, references: one report each per sample. ``uncertain_as``: 1 counts uncertain findings as
    positive, 0 as negative. Keys: ``clinical_precision``, ``clinical_recall``, ``clinical_f1`` (micro:
    counts pooled over reports and findings), their ``_macro`` forms (mean over findings positive in a
    reference or a generated report) and ``clinical_f1/<finding>``.
    """
    if uncertain_as not in (0, 1):
        raise DataError(f"uncertain_as must be 1 (positive) or 0 (negative), got {uncertain_as}")
    if isinstance(generated, str) or len(generated) != len(references):
        raise DataError("generated and references must be lists of reports of the same length")
    if not generated:
        raise DataError("no reports to compare")
    names = finding_names()
    tp = dict.fromkeys(names, 0)
    fp = dict.fromkeys(names, 0)
    fn = dict.fromkeys(names, 0)
    for gen, ref in zip(generated, references):
        g = _positive_set(label_report(gen), uncertain_as)
        r = _positive_set(label_report(ref), uncertain_as)
        for finding in g & r:
            tp[finding] += 1
        for finding in g - r:
            fp[finding] += 1
        for finding in r - g:
            fn[finding] += 1
    out = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    seen = [f for f in names if tp[f] + fp[f] + fn[f] > 0]
    per_finding = {f: _prf(tp[f], fp[f], fn[f]) for f in seen}
    for key in ("precision", "recall", "f1"):
        values = [per_finding[f][f"clinical_{key}"] for f in seen]
        out[f"clinical_{key}_macro"] = sum(values) / len(values) if values else 0.0
    for f in seen:
        out[f"clinical_f1/{f}"] = per_finding[f]["clinical_f1"]
    return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Return ``clinical_precision``, ``clinical_recall`` and ``clinical_f1`` (0 where undefined)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"clinical_precision": precision, "clinical_recall": recall, "clinical_f1": f1}
