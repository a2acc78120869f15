"""Text generation metrics as the COCO caption evaluation computes them: BLEU-1..4, ROUGE-L, CIDEr-D.

Each function takes hypotheses (one string per sample) and references (one string or a list of
strings per sample). Text is tokenised by :func:`tokenize` (lowercase, punctuation dropped, as the
output of pycocoevalcap's PTBTokenizer for plain text) unless ``tokenize=False``, in which case the
strings are split on whitespace as given. Scores are fractions (BLEU, ROUGE-L in [0, 1]); CIDEr-D is
on its usual 0-10 scale.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics._registry import METRICS

NGram = tuple[str, ...]

_CONTRACTION = re.compile(r"(?<=[^\W_])(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"[^\W_]+(?:[-./'][^\W_]+)*|'[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Return the lowercase word tokens of ``text``; punctuation marks are dropped.

    Contractions split as the Penn Treebank does (``don't`` -> ``do n't``); hyphens, periods, slashes
    and apostrophes inside a word keep it whole (``x-ray``, ``1.5``, ``and/or``). Close to pycocoevalcap's
    PTBTokenizer followed by its punctuation filter, without needing Java.
    """
    return _TOKEN.findall(_CONTRACTION.sub(r" \1", text.lower()))


def _prepare(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], tokenize_text: bool
) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Return tokenised hypotheses and reference lists, after checking one entry per sample."""
    if isinstance(hypotheses, str):
        raise DataError("hypotheses must be a list of strings (one per sample), not a single string")
    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference entries; pass one each"
        )
    if len(hypotheses) == 0:
        raise DataError("no hypotheses to score")
    split = tokenize if tokenize_text else str.split
    hyps = [split(h) for h in hypotheses]
    refs = []
    for i, entry in enumerate(references):
        group = [entry] if isinstance(entry, str) else list(entry)
        if not group:
            raise DataError(f"sample {i} has no reference text; every sample needs at least one")
        refs.append([split(r) for r in group])
    return hyps, refs


def ngram_counts(tokens: Sequence[str], max_n: int = 4) -> Counter[NGram]:
    """Return the counts of all n-grams of ``tokens`` with 1 <= n <= ``max_n``."""
    counts: Counter[NGram] = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


def bleu(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    max_n: int = 4,
    tokenize: bool = True,
) -> list[float]:
    """Return corpus BLEU-1..``max_n`` (Papineni et al. 2002) as pycocoevalcap's ``Bleu`` computes it.

    Clipped n-gram matches and candidate n-grams are summed over the corpus; the brevity penalty uses,
    per sample, the reference length closest to the hypothesis (the shorter on a tie). BLEU-n is the
    geometric mean of the precisions 1..n, each (matches + 1e-15) / (total + 1e-9) as in the COCO code.
    """
    hyps, refs = _prepare(hypotheses, references, tokenize)
    tiny, small = 1e-15, 1e-9
    correct = [0] * max_n
    guess = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, group in zip(hyps, refs):
        max_ref: Counter[NGram] = Counter()
        for ref in group:
            max_ref |= ngram_counts(ref, max_n)  # element-wise maximum over references
        for ngram, count in ngram_counts(hyp, max_n).items():
            correct[len(ngram) - 1] += min(count, max_ref[ngram])
        for n in range(max_n):
            guess[n] += max(0, len(hyp) - n)
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in group)[1]
    scores = []
    product = 1.0
    for n in range(max_n):
        product *= (correct[n] + tiny) / (guess[n] + small)
        scores.append(product ** (1.0 / (n + 1)))
    ratio = (hyp_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Return the length of the longest common subsequence of two token lists.

    Bit-parallel (Allison & Dix 1986; Hyyro 2004): one big-integer update per token of ``b``.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        matched = row & masks.get(token, 0)
        row = ((row + matched) | (row - matched)) & full
    return len(a) - row.bit_count()


def rouge_l_scores(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    beta: float = 1.2,
    multi_reference: str = "coco",
    tokenize: bool = True,
) -> list[float]:
    """Return ROUGE-L F-scores per sample (Lin 2004), F = (1 + b^2) P R / (R + b^2 P) from the LCS.

    ``multi_reference="coco"`` takes the best precision and the best recall over references
    separately (pycocoevalcap's ``Rouge``, beta 1.2); ``"best"`` takes the best F over references
    (``rouge_score``'s ``score_multi``; use beta 1 for its F1).
    """
    if multi_reference not in ("coco", "best"):
        raise DataError(f"multi_reference '{multi_reference}' is not known; choose 'coco' or 'best'")
    hyps, refs = _prepare(hypotheses, references, tokenize)

    def f_score(p: float, r: float) -> float:
        return (1 + beta**2) * p * r / (r + beta**2 * p) if p > 0 and r > 0 else 0.0

    scores = []
    for hyp, group in zip(hyps, refs):
        lcs = [lcs_length(ref, hyp) for ref in group]
        precision = [x / len(hyp) if hyp else 0.0 for x in lcs]
        recall = [x / len(ref) if ref else 0.0 for x, ref in zip(lcs, group)]
        if multi_reference == "coco":
            scores.append(f_score(max(precision), max(recall)))
        else:
            scores.append(max(f_score(p, r) for p, r in zip(precision, recall)))
    return scores


@METRICS.register("rouge_l")
def rouge_l(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    beta: float = 1.2,
    multi_reference: str = "coco",
    tokenize: bool = True,
) -> float:
    """Return the mean ROUGE-L over samples (see :func:`rouge_l_scores`)."""
    scores = rouge_l_scores(
        hypotheses, references, beta=beta, multi_reference=multi_reference, tokenize=tokenize
    )
    return sum(scores) / len(scores)


def cider_d_scores(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    max_n: int = 4,
    sigma: float = 6.0,
    tokenize: bool = True,
) -> list[float]:
    """Return CIDEr-D per sample (Vedantam et al. 2015) as pycocoevalcap's ``Cider`` computes it.

    Each n-gram is weighted tf x (log |samples| - log df), df counting the samples whose references
    hold it (document frequency from the evaluated set's references). Per reference and n, the
    hypothesis weight is clipped at the reference's, the dot product divided by both norms and
    multiplied by exp(-delta^2 / (2 sigma^2)); the mean over n and over references is scaled by 10.
    As in pycocoevalcap, delta is the difference in bigram counts (the word-length difference for any
    non-empty pair). A corpus with one sample scores 0 (every idf weight is log 1 - log 1).
    """
    hyps, refs = _prepare(hypotheses, references, tokenize)
    hyp_counts = [ngram_counts(h, max_n) for h in hyps]
    ref_counts = [[ngram_counts(r, max_n) for r in group] for group in refs]
    doc_freq: Counter[NGram] = Counter()
    for group in ref_counts:
        doc_freq.update({ngram for counts in group for ngram in counts})
    log_samples = math.log(len(hyps))

    def vectorise(counts: Counter[NGram]) -> tuple[list[dict[NGram, float]], list[float], int]:
        vec: list[dict[NGram, float]] = [{} for _ in range(max_n)]
        norm = [0.0] * max_n
        for ngram, tf in counts.items():
            n = len(ngram) - 1
            weight = tf * (log_samples - math.log(max(1.0, doc_freq[ngram])))
            vec[n][ngram] = weight
            norm[n] += weight * weight
        return vec, [math.sqrt(x) for x in norm], sum(c for g, c in counts.items() if len(g) == 2)

    scores = []
    for counts, group in zip(hyp_counts, ref_counts):
        vec, norm, length = vectorise(counts)
        total = [0.0] * max_n
        for ref in group:
            vec_r, norm_r, length_r = vectorise(ref)
            penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                dot = sum(min(w, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, w in vec[n].items())
                if norm[n] != 0 and norm_r[n] != 0:
                    dot /= norm[n] * norm_r[n]
                total[n] += dot * penalty
        scores.append(sum(total) / max_n / len(group) * 10.0)
    return scores


@METRICS.register("cider")
def cider_d(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    max_n: int = 4,
    sigma: float = 6.0,
    tokenize: bool = True,
) -> float:
    """Return the corpus CIDEr-D: the mean of :func:`cider_d_scores`."""
    scores = cider_d_scores(hypotheses, references, max_n=max_n, sigma=sigma, tokenize=tokenize)
    return sum(scores) / len(scores)


@METRICS.register("bleu4")
def bleu4(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], *, tokenize: bool = True
) -> float:
    """Return corpus BLEU-4 (see :func:`bleu`)."""
    return bleu(hypotheses, references, max_n=4, tokenize=tokenize)[3]


@METRICS.register("generation")
def generation_metrics(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], *, tokenize: bool = True
) -> dict[str, float]:
    """Return ``bleu1``..``bleu4``, ``rouge_l`` and ``cider`` (CIDEr-D) for generated texts."""
    scores = {
        f"bleu{n + 1}": value for n, value in enumerate(bleu(hypotheses, references, tokenize=tokenize))
    }
    scores["rouge_l"] = rouge_l(hypotheses, references, tokenize=tokenize)
    scores["cider"] = cider_d(hypotheses, references, tokenize=tokenize)
    return scores
