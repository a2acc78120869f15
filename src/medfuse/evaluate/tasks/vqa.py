"""Visual question answering as answer classification: accuracy overall, on closed and on open questions.

The model is a diagnosis model whose text encoder reads the ``question`` and whose classes are the
answer vocabulary (the checkpoint's ``label_names``). Its answer is the highest-scoring vocabulary
entry; answers are compared after the VQA normalisation of the metrics package. A reference answer
outside the vocabulary cannot be predicted: it counts as wrong and is counted in ``oov_rate``.
Questions without an answer type are closed when the answer is yes/no, else open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfuse.core.errors import ConfigError
from medfuse.evaluate.metrics import normalize_answer, vqa_score
from medfuse.evaluate.results import TaskResult
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped, multi_interval
from medfuse.models.inference import Predictions

log = logging.getLogger(__name__)

CLOSED_ANSWERS = frozenset({"yes", "no"})


@dataclass
class AnswerRows:
    """Per-question outcomes: prediction, reference, CLOSED/OPEN, score in [0, 1], out-of-vocabulary flag."""

    questions: list[str]
    preds: list[str]
    answers: list[str]
    types: list[str]
    scores: list[float]
    oov: list[bool]
    index: list[int]


def answer_type(kind: str, answer: str) -> str:
    """Return ``closed`` or ``open``: the given type when valid, else yes/no answers are closed."""
    low = str(kind).strip().lower()
    if low in ("closed", "open"):
        return low
    return "closed" if normalize_answer(answer) in CLOSED_ANSWERS else "open"


def answer_rows(ctx: EvalContext) -> AnswerRows:
    """Return (and cache) the model's answers to every question of the evaluated split."""
    if "vqa_rows" not in ctx.cache:
        ctx.cache["vqa_rows"] = score_answers(ctx, None)
    return ctx.cache["vqa_rows"]


def score_answers(ctx: EvalContext, pred: Predictions | None) -> AnswerRows:
    """Return the answers of predictions ``pred`` (default: the split's) scored against the references."""
    if ctx.kind != "vqa":
        raise TaskSkipped(f"vqa evaluates answer classifiers that read a question; this is a {ctx.kind} model")
    if not (ctx.dataset.config.question and ctx.dataset.config.answer):
        raise TaskSkipped("the data config names no question and answer columns")
    vocab = [str(v) for v in (ctx.label_names or [])]
    pred = pred if pred is not None else ctx.predictions()
    if len(vocab) != pred.logits.shape[1]:
        raise ConfigError(f"label_names: the answer vocabulary has {len(vocab)} entries but the head has "
                          f"{pred.logits.shape[1]} outputs; the checkpoint must store the answers as label_names")
    known = {normalize_answer(v) for v in vocab}
    answers = [str(a) for a in pred.meta.get("answer", [])]
    questions = [str(q) for q in pred.meta.get("question", [""] * len(answers))]
    types_given = pred.meta.get("answer_type", [""] * len(answers))
    keep = [i for i, a in enumerate(answers) if a.strip()]
    if len(keep) < len(answers):
        log.warning("%d question(s) without a reference answer are left out", len(answers) - len(keep))
    if not keep:
        raise TaskSkipped("no question of the split has a reference answer")
    choice = pred.logits.argmax(axis=1)
    rows = AnswerRows([], [], [], [], [], [], [])
    for i in keep:
        guess, truth = vocab[int(choice[i])], answers[i]
        rows.questions.append(questions[i])
        rows.preds.append(guess)
        rows.answers.append(truth)
        rows.types.append(answer_type(types_given[i], truth))
        rows.scores.append(vqa_score(guess, truth))
        rows.oov.append(normalize_answer(truth) not in known)
        rows.index.append(pred.index[i])
    return rows


def _examples(rows: AnswerRows, count: int) -> list[dict[str, Any]]:
    """Return a few wrong answers first, then right ones (question, reference, prediction, correct)."""
    order = [i for i, s in enumerate(rows.scores) if s < 1] + [i for i, s in enumerate(rows.scores) if s >= 1]
    return [{"row": rows.index[i], "question": rows.questions[i], "answer": rows.answers[i],
             "prediction": rows.preds[i], "type": rows.types[i], "correct": rows.scores[i] >= 1,
             "out_of_vocabulary": rows.oov[i]} for i in order[:count]]


@EVAL_TASKS.register("vqa")
def vqa(ctx: EvalContext, *, examples: int = 12, n_resamples: int | None = None) -> TaskResult:
    """VQA accuracy (overall, closed, open) with bootstrap intervals and the out-of-vocabulary rate."""
    rows = answer_rows(ctx)
    scores = np.asarray(rows.scores, dtype=np.float64)
    closed = np.asarray([t == "closed" for t in rows.types])
    oov = np.asarray(rows.oov, dtype=np.float64)

    def measure(sel: np.ndarray) -> dict[str, float]:
        s, c = scores[sel], closed[sel]
        return {
            "vqa_overall": float(s.mean()),
            "vqa_closed": float(s[c].mean()) if c.any() else float("nan"),
            "vqa_open": float(s[~c].mean()) if (~c).any() else float("nan"),
            "oov_rate": float(oov[sel].mean()),
        }

    resamples = ctx.config.n_resamples if n_resamples is None else n_resamples
    metrics = multi_interval(measure, len(scores), groups=ctx.patient_groups(rows.index),
                             n_resamples=resamples, seed=ctx.seed)
    artifacts = {
        "n_closed": int(closed.sum()), "n_open": int((~closed).sum()), "n_out_of_vocabulary": int(oov.sum()),
        "vocabulary_size": len(ctx.label_names or []), "examples": _examples(rows, examples),
    }
    return TaskResult(metrics=metrics, artifacts=artifacts, n=len(scores))
