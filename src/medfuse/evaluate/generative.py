"""Evaluation of a generative vision-language model: VQA accuracy, report quality, and visual reliance.

Questions are answered as :func:`medfuse.models.generative.answer` does: closed questions pick the
likeliest candidate answer (the options in the question, yes/no, and the answers the training data gave
to the same wording), open questions are answered by generation. Scores come from the metrics package:
``vqa_overall`` / ``vqa_closed`` / ``vqa_open`` (exact match after the VQA normalisation), and for reports
BLEU-1..4, ROUGE-L, CIDEr-D and clinical precision/recall/F1 of the findings named in both texts.

A model can score well without looking at the image (language priors: "is there ...?" -> "yes"). The
visual-reliance check asks the same questions again with a blank image (all zeros after normalisation:
a uniform image of the data set's mean intensity) and with images shuffled across samples (never giving
a sample an image of its own patient or image id where another can be found) and reports each score
and the drop, ``<metric>_drop_blank`` / ``<metric>_drop_shuffled``. A drop near zero means the answers
do not depend on the image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from medfuse.evaluate.metrics import clinical_efficacy, generation_metrics, normalize_answer, vqa_accuracy
from medfuse.models.generative import AnswerBank, answer, closed_candidates, is_yes_no

log = logging.getLogger(__name__)

AnswerFn = Callable[[Tensor, list[str], list[list[str] | None], list[str] | None], list[str]]
MODES = ("image", "blank", "shuffled")


@dataclass
class GenerativeEvalConfig:
    """Settings of the evaluation.

    generation: decoding settings (:class:`~medfuse.models.generative.GenerationConfig` fields).
    constrained_closed: closed questions choose among candidates (else they are generated too).
    reliance: run the blank-image and shuffled-image passes on at most ``reliance_max_samples`` rows
    (a seeded random subset when there are more). prompt: the instruction for report data (no question).
    question_key, target_key (default ``answer``, else ``text``), context_key: batch keys.
    """

    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 32})
    constrained_closed: bool = True
    reliance: bool = True
    reliance_max_samples: int = 1000
    batch_size: int = 32
    seed: int = 0
    prompt: str = "Describe the image."
    question_key: str = "question"
    target_key: str | None = None
    context_key: str | None = None
    uncertain_as: int = 1


@dataclass
class EvalRows:
    """The evaluated samples: images ``(N, C, H, W)`` on the CPU and their texts, in data order."""

    images: Tensor
    questions: list[str]
    targets: list[str]
    types: list[str]
    contexts: list[str] | None
    groups: list[str]
    has_questions: bool


@dataclass
class GenerativeEvaluation:
    """Metrics (name -> value), per-sample predictions for each image mode, and the row count."""

    metrics: dict[str, float]
    predictions: dict[str, list[str]]
    rows: EvalRows
    kind: str

    def examples(self, count: int = 12) -> list[dict[str, Any]]:
        """Return a few samples (wrong ones first) with the prediction under each image mode."""
        preds = self.predictions["image"]
        order = sorted(range(len(preds)), key=lambda i: normalize_answer(preds[i]) == normalize_answer(self.rows.targets[i]))
        return [{"question": self.rows.questions[i], "reference": self.rows.targets[i],
                 **{f"prediction_{m}": p[i] for m, p in self.predictions.items()}} for i in order[:count]]


def collect_rows(batches: Iterable[Mapping[str, Any]], config: GenerativeEvalConfig | None = None,
                 image_key: str = "image") -> EvalRows:
    """Return the samples of ``batches`` (a loader) gathered in order; failed-sample batches are skipped."""
    cfg = config or GenerativeEvalConfig()
    images: list[Tensor] = []
    questions: list[str] = []
    targets: list[str] = []
    types: list[str] = []
    contexts: list[str] = []
    groups: list[str] = []
    has_questions = False
    for batch in batches:
        if image_key not in batch or len(batch[image_key]) == 0:
            continue
        n = len(batch[image_key])
        key = cfg.target_key or ("answer" if "answer" in batch else "text")
        if key not in batch:
            from medfuse.core.errors import ConfigError

            raise ConfigError(f"target_key: batches have no '{key}' (keys: {sorted(batch)})")
        asked = batch.get(cfg.question_key)
        has_questions = has_questions or asked is not None
        images.append(batch[image_key].detach().cpu())
        questions += [str(q) if q is not None and str(q).strip() else cfg.prompt for q in (asked or [cfg.prompt] * n)]
        targets += [str(t) for t in batch[key]]
        types += [str(t) for t in batch.get("answer_type", [""] * n)]
        if cfg.context_key:
            contexts += [str(c) for c in batch[cfg.context_key]]
        ids = batch.get("patient_id") or [str(int(i)) for i in batch.get("index", range(len(groups), len(groups) + n))]
        groups += [str(g) if str(g) else f"row{len(groups) + j}" for j, g in enumerate(ids)]
    if not images:
        from medfuse.core.errors import DataError

        raise DataError("no sample to evaluate: every batch was empty or had no image")
    return EvalRows(torch.cat(images), questions, targets, types, contexts if cfg.context_key else None, groups, has_questions)


def shuffled_order(groups: Sequence[str], seed: int = 0) -> list[int]:
    """Return a permutation giving each row another row's image, of a different group where one exists."""
    n = len(groups)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen).tolist()
    for i in range(n):
        if groups[order[i]] != groups[i]:
            continue
        for j in torch.randperm(n, generator=gen).tolist():
            if groups[order[j]] != groups[i] and groups[order[i]] != groups[j]:
                order[i], order[j] = order[j], order[i]
                break
    return order


def _candidates(rows: EvalRows, bank: AnswerBank | None, constrained: bool) -> list[list[str] | None]:
    if not constrained or not rows.has_questions:
        return [None] * len(rows.questions)
    out: list[list[str] | None] = []
    for question, kind in zip(rows.questions, rows.types):
        low = kind.strip().lower()
        closed = low == "closed" or (low not in ("open", "closed") and is_yes_no(question))
        out.append(closed_candidates(question, bank) if closed else None)
    return out


def _answers(answer_fn: AnswerFn, rows: EvalRows, images: Tensor, cands: list[list[str] | None], batch_size: int) -> list[str]:
    preds: list[str] = []
    for start in range(0, len(rows.questions), batch_size):
        sl = slice(start, start + batch_size)
        ctx = rows.contexts[sl] if rows.contexts is not None else None
        preds += answer_fn(images[sl], rows.questions[sl], cands[sl], ctx)
    return preds


def model_answer_fn(model: Any, config: GenerativeEvalConfig | None = None) -> AnswerFn:
    """Return the answer function of a :class:`VisionLanguageModel` (images moved to its device)."""
    cfg = config or GenerativeEvalConfig()

    def run(images: Tensor, questions: list[str], cands: list[list[str] | None], contexts: list[str] | None) -> list[str]:
        return answer(model, images.to(model.device), questions, cands, contexts, cfg.generation)

    return run


def answer_kinds(rows: EvalRows) -> list[str]:
    out = []
    for kind, target in zip(rows.types, rows.targets):
        low = kind.strip().lower()
        out.append(low if low in ("closed", "open") else ("closed" if normalize_answer(target) in ("yes", "no") else "open"))
    return out


def _score(kind: str, preds: list[str], rows: EvalRows, idx: list[int], cfg: GenerativeEvalConfig) -> dict[str, float]:
    refs = [rows.targets[i] for i in idx]
    if kind == "vqa":
        kinds = answer_kinds(rows)
        return vqa_accuracy(preds, refs, [kinds[i] for i in idx])
    scores = generation_metrics(preds, refs)
    clinical = clinical_efficacy(preds, refs, uncertain_as=cfg.uncertain_as)
    scores.update({k: v for k, v in clinical.items() if "/" not in k})
    return scores


def evaluate_generative(model: Any, data: Iterable[Mapping[str, Any]] | EvalRows, *, bank: AnswerBank | None = None,
                        config: GenerativeEvalConfig | None = None, answer_fn: AnswerFn | None = None) -> GenerativeEvaluation:
    """Evaluate ``model`` (or ``answer_fn``) on ``data`` (batches or :class:`EvalRows`).

    Question data gives ``vqa_*``; data without questions is report generation (``bleu*``, ``rouge_l``,
    ``cider``, ``clinical_*``). With ``config.reliance`` each headline metric also gets ``_blank`` and
    ``_shuffled`` forms and ``_drop_blank`` / ``_drop_shuffled`` (the score with real images minus the other).
    """
    cfg = config or GenerativeEvalConfig()
    rows = data if isinstance(data, EvalRows) else collect_rows(data, cfg)
    fn = answer_fn or model_answer_fn(model, cfg)
    kind = "vqa" if rows.has_questions and any(t.strip() for t in rows.targets) else "report"
    cands = _candidates(rows, bank, cfg.constrained_closed and kind == "vqa")
    preds = {"image": _answers(fn, rows, rows.images, cands, cfg.batch_size)}
    everyone = list(range(len(rows.questions)))
    metrics = _score(kind, preds["image"], rows, everyone, cfg)
    metrics["n"] = float(len(everyone))
    if kind == "vqa":
        kinds = answer_kinds(rows)
        chance = [1.0 / len(c) if c and normalize_answer(rows.targets[i]) in {normalize_answer(x) for x in c} else 0.0
                  for i, c in enumerate(cands) if kinds[i] == "closed" and c]
        metrics["n_closed"] = float(kinds.count("closed"))
        metrics["n_constrained"] = float(sum(1 for c in cands if c))
        if chance:
            metrics["vqa_closed_chance"] = sum(chance) / len(chance)
    if cfg.reliance and len(everyone) > 1:
        metrics.update(_reliance(kind, fn, rows, cands, preds, cfg))
    return GenerativeEvaluation({k: float(v) for k, v in metrics.items()}, preds, rows, kind)


def _reliance(kind: str, fn: AnswerFn, rows: EvalRows, cands: list[list[str] | None], preds: dict[str, list[str]],
              cfg: GenerativeEvalConfig) -> dict[str, float]:
    n = len(rows.questions)
    idx = list(range(n))
    if n > cfg.reliance_max_samples:
        gen = torch.Generator().manual_seed(cfg.seed)
        idx = sorted(torch.randperm(n, generator=gen)[: cfg.reliance_max_samples].tolist())
    sub = EvalRows(rows.images[idx], [rows.questions[i] for i in idx], [rows.targets[i] for i in idx],
                   [rows.types[i] for i in idx], [rows.contexts[i] for i in idx] if rows.contexts is not None else None,
                   [rows.groups[i] for i in idx], rows.has_questions)
    sub_cands = [cands[i] for i in idx]
    base = _score(kind, [preds["image"][i] for i in idx], rows, idx, cfg)
    order = shuffled_order(sub.groups, cfg.seed)
    images = {"blank": torch.zeros_like(sub.images), "shuffled": sub.images[order]}
    out: dict[str, float] = {"reliance_n": float(len(idx)),
                             "shuffle_same_group": sum(sub.groups[o] == g for o, g in zip(order, sub.groups)) / len(idx)}
    headline = ["vqa_overall", "vqa_closed", "vqa_open"] if kind == "vqa" else ["bleu4", "rouge_l", "cider", "clinical_f1"]
    for mode, imgs in images.items():
        answered = _answers(fn, sub, imgs, sub_cands, cfg.batch_size)
        preds[mode] = [""] * n  # aligned with the rows; rows outside the subset stay empty
        for i, text in zip(idx, answered):
            preds[mode][i] = text
        scores = _score(kind, answered, rows, idx, cfg)
        for name in headline:
            if name in scores and not math.isnan(scores[name]):
                out[f"{name}_{mode}"] = scores[name]
                out[f"{name}_drop_{mode}"] = base[name] - scores[name]
    return out


__all__ = ["MODES", "AnswerFn", "EvalRows", "answer_kinds", "GenerativeEvalConfig", "GenerativeEvaluation", "collect_rows",
           "evaluate_generative", "model_answer_fn", "shuffled_order"]
