"""VQA answer normalisation and accuracy."""

from __future__ import annotations

import math

import pytest

from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import normalize_answer, vqa_accuracy, vqa_score


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes.", "yes"),
        ("  The Left Lung ", "left lung"),
        ("an MRI", "mri"),
        ("Two", "2"),
        ("none", "0"),
        ("x-ray", "x ray"),
        ("chest - abdomen", "chest abdomen"),
        ("1,000", "1000"),
        ("3.5 cm", "3.5 cm"),
        ("dont know", "don't know"),
        ("well", "well"),
        ("left\tlung\n", "left lung"),
        ("(CT)", "ct"),
    ],
)
def test_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_and_consensus_scores():
    assert vqa_score("Yes.", "yes") == 1.0
    assert vqa_score("lung", ["left lung", "lung"]) == 1.0
    assert vqa_score("heart", "lung") == 0.0
    # VQA v2 consensus: an answer given by 2 of 10 annotators scores mean_j min(1, matches_without_j / 3)
    answers = ["cat"] * 2 + ["dog"] * 8
    assert vqa_score("cat", answers, consensus=True) == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert vqa_score("dog", answers, consensus=True) == 1.0


def test_vqa_accuracy_by_answer_type():
    preds = ["Yes", "no", "left lung", "heart", "Two"]
    answers = ["yes", "yes", "Left lung.", "liver", "2"]
    types = ["CLOSED", "closed", "OPEN", "Open", "open"]
    out = vqa_accuracy(preds, answers, types)
    assert out == {"vqa_overall": pytest.approx(3 / 5), "vqa_closed": 0.5, "vqa_open": pytest.approx(2 / 3)}
    only_open = vqa_accuracy(["a"], ["a"], ["OPEN"])
    assert math.isnan(only_open["vqa_closed"]) and only_open["vqa_open"] == 1.0


def test_errors():
    with pytest.raises(DataError, match="neither CLOSED nor OPEN"):
        vqa_accuracy(["yes"], ["yes"], ["yesno"])
    with pytest.raises(DataError, match="one entry per question"):
        vqa_accuracy(["yes", "no"], ["yes"], ["closed"])
