"""Generation metrics against pycocoevalcap (BLEU, CIDEr-D, ROUGE-L) and rouge_score, on pre-tokenised text."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import (
    bleu,
    cider_d,
    cider_d_scores,
    generation_metrics,
    lcs_length,
    rouge_l,
    rouge_l_scores,
    tokenize,
)

pytest.importorskip("pycocoevalcap", reason="pycocoevalcap is the reference implementation")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402

VOCABULARY = (
    "the heart size is normal no pleural effusion or pneumothorax lungs are clear mild cardiomegaly "
    "left lower lobe consolidation small right effusion stable there is"
)
WORDS = VOCABULARY.split()


def _corpus(seed: int, n: int = 40) -> tuple[list[str], list[list[str]]]:
    """Random sentences over a small vocabulary: many shared n-grams, varied lengths, 1-4 references."""
    rng = np.random.default_rng(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 14))))

    hyps = [sentence() for _ in range(n)]
    refs = [[sentence() for _ in range(int(rng.integers(1, 5)))] for _ in range(n)]
    refs[0] = [hyps[0]]  # one exact match
    return hyps, refs


def _coco(hyps: list[str], refs: list[list[str]]) -> tuple[dict, dict]:
    return {i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}


@pytest.mark.parametrize("seed", [0, 1])
def test_bleu_matches_pycocoevalcap(seed):
    hyps, refs = _corpus(seed)
    gts, res = _coco(hyps, refs)
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert bleu(hyps, refs, tokenize=False) == pytest.approx(expected, abs=1e-12)
    assert bleu(hyps, refs) == pytest.approx(expected, abs=1e-12)  # the tokenizer keeps clean text as is


@pytest.mark.parametrize("seed", [0, 1])
def test_cider_d_matches_pycocoevalcap(seed):
    hyps, refs = _corpus(seed)
    gts, res = _coco(hyps, refs)
    expected, per_sample = Cider().compute_score(gts, res)
    assert cider_d(hyps, refs) == pytest.approx(expected, abs=1e-10)
    np.testing.assert_allclose(cider_d_scores(hyps, refs), per_sample, atol=1e-10)


def test_cider_d_clips_and_penalises_length():
    refs = [["a small left effusion"], ["no pneumothorax is seen"], ["heart size is normal"]]
    exact = cider_d(["a small left effusion", "no pneumothorax is seen", "heart size is normal"], refs)
    repeated = cider_d(
        [
            "a small left effusion effusion effusion effusion",
            "no pneumothorax is seen",
            "heart size is normal",
        ],
        refs,
    )
    assert exact == pytest.approx(10.0)  # identical texts, all n-grams rare: cosine 1 on every order
    assert repeated < exact
    gts, res = _coco(
        [
            "a small left effusion effusion effusion effusion",
            "no pneumothorax is seen",
            "heart size is normal",
        ],
        refs,
    )
    assert repeated == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_rouge_l_matches_pycocoevalcap_and_rouge_score(seed):
    hyps, refs = _corpus(seed)
    gts, res = _coco(hyps, refs)
    expected, per_sample = Rouge().compute_score(gts, res)
    assert rouge_l(hyps, refs) == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(rouge_l_scores(hyps, refs), per_sample, atol=1e-12)
    rouge_score = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_score.RougeScorer(["rougeL"])
    expected_best = [scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    got = rouge_l_scores(hyps, refs, beta=1.0, multi_reference="best")
    np.testing.assert_allclose(got, expected_best, atol=1e-12)


def test_lcs_matches_dynamic_programming():
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = list(rng.choice(list("abcde"), size=int(rng.integers(0, 30))))
        b = list(rng.choice(list("abcde"), size=int(rng.integers(0, 30))))
        table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                same = a[i - 1] == b[j - 1]
                table[i, j] = table[i - 1, j - 1] + 1 if same else max(table[i - 1, j], table[i, j - 1])
        assert lcs_length(a, b) == table[-1, -1]


def test_tokenizer_lowercases_and_drops_punctuation():
    assert tokenize("No pleural effusion, or pneumothorax.") == [
        "no",
        "pleural",
        "effusion",
        "or",
        "pneumothorax",
    ]
    assert tokenize("Heart size: 1.5 cm (stable); X-ray doesn't show it!") == [
        "heart",
        "size",
        "1.5",
        "cm",
        "stable",
        "x-ray",
        "does",
        "n't",
        "show",
        "it",
    ]
    assert tokenize("The patient's lungs -- clear ...") == ["the", "patient", "'s", "lungs", "clear"]


def test_generation_metrics_oracle_and_inputs():
    hyps, refs = _corpus(4)
    perfect = generation_metrics([r[0] for r in refs], [[r[0]] for r in refs])
    assert perfect["bleu4"] == pytest.approx(1.0, abs=1e-6) and perfect["rouge_l"] == pytest.approx(1.0)
    assert set(perfect) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    scores = generation_metrics(hyps, refs)
    assert 0 < scores["bleu4"] < scores["bleu1"] < 1
    # a plain string reference is one reference
    assert bleu(["no effusion"], ["no effusion"]) == bleu(["no effusion"], [["no effusion"]])
    with pytest.raises(DataError, match="one each"):
        bleu(["a"], [["a"], ["b"]])
    with pytest.raises(DataError, match="at least one"):
        rouge_l(["a"], [[]])
    with pytest.raises(DataError, match="list of strings"):
        cider_d("a b", ["a b"])
