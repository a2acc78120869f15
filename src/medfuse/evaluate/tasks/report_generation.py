"""Report generation: generated reports against the references, by text overlap and by clinical findings.

Texts come from ``generate(batch) -> list[str]`` when given, else from the retrieval drafting baseline
of a dual encoder: each image gets the training report whose text embedding is nearest to its image
embedding (``mode="text"``, as CXR-RePaiR, Endo et al. 2021), or the report of the nearest training
image (``mode="image"``). Scores: BLEU-1..4, ROUGE-L, CIDEr-D and clinical precision/recall/F1 of the
findings labelled in both texts, with bootstrap intervals over reports (whole patients when known).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medfuse.core.config import check_choice
from medfuse.core.errors import DataError
from medfuse.evaluate.metrics import generation_metrics, label_report
from medfuse.evaluate.metrics.clinical import POSITIVE, UNCERTAIN
from medfuse.evaluate.results import TaskResult
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped, multi_interval
from medfuse.evaluate.tasks.embeddings import image_embeddings, text_embeddings

log = logging.getLogger(__name__)

Generate = Callable[[dict[str, Any]], Sequence[str]]


def positive_findings(text: str, uncertain_as: int = 1) -> frozenset[str]:
    """Return the findings labelled positive in ``text`` (uncertain ones too when ``uncertain_as`` is 1)."""
    return frozenset(f for f, v in label_report(text).items() if v == POSITIVE or (v == UNCERTAIN and uncertain_as))


def finding_counts(generated: Sequence[str], references: Sequence[str], uncertain_as: int = 1) -> np.ndarray:
    """Return per-report ``(tp, fp, fn)`` counts of positive findings ``(N, 3)``."""
    out = np.zeros((len(generated), 3), dtype=np.float64)
    for i, (gen, ref) in enumerate(zip(generated, references)):
        g, r = positive_findings(gen, uncertain_as), positive_findings(ref, uncertain_as)
        out[i] = (len(g & r), len(g - r), len(r - g))
    return out


def clinical_scores(counts: np.ndarray) -> dict[str, float]:
    """Return micro ``clinical_precision``, ``clinical_recall`` and ``clinical_f1`` of pooled counts (0 where undefined)."""
    tp, fp, fn = counts.sum(axis=0)
    return {
        "clinical_precision": tp / (tp + fp) if tp + fp else 0.0,
        "clinical_recall": tp / (tp + fn) if tp + fn else 0.0,
        "clinical_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def _references(ctx: EvalContext) -> list[str]:
    if ctx.dataset.texts is None:
        raise TaskSkipped("report generation needs reference texts (a text column in the data config)")
    return list(ctx.dataset.texts)


def generated_texts(ctx: EvalContext, generate: Generate) -> tuple[list[str], list[int]]:
    """Return the texts ``generate`` writes for every batch of the split, and their dataset positions."""
    texts: list[str] = []
    index: list[int] = []
    for batch in ctx.batches():
        out = list(generate(batch))
        if len(out) != len(batch["index"]):
            raise DataError(f"generate returned {len(out)} texts for a batch of {len(batch['index'])}")
        texts.extend(str(t) for t in out)
        index.extend(int(i) for i in batch["index"])
    return texts, index


def retrieved_texts(ctx: EvalContext, mode: str, gallery_split: str | None) -> tuple[list[str], list[int], dict]:
    """Return the nearest training report per image (see the module docstring), positions and a description."""
    check_choice("report_generation.mode", mode, ("text", "image"))
    if ctx.kind != "dual_encoder":
        raise TaskSkipped("report generation needs generate=... or a dual encoder for retrieval drafting")
    split = gallery_split or ctx.config.train_split
    if ctx.dataset.split == split:
        raise TaskSkipped(f"the gallery split '{split}' is the evaluated split; draft from other rows")
    gallery = ctx.split_dataset(split)
    if gallery.texts is None:
        raise TaskSkipped("the gallery split has no texts")
    images, index = image_embeddings(ctx)
    if mode == "text":
        reports = list(dict.fromkeys(t for t in gallery.texts if t.strip()))
        if not reports:
            raise TaskSkipped("the gallery split has no non-empty report")
        best = (images @ text_embeddings(ctx, reports).T).argmax(dim=1).tolist()
        return [reports[b] for b in best], index, {"source": "retrieval", "mode": mode, "gallery": split,
                                                    "gallery_size": len(reports)}
    gallery_images, gallery_index = image_embeddings(ctx, gallery)
    best = (images @ gallery_images.T).argmax(dim=1).tolist()
    texts = [gallery.texts[gallery_index[b]] for b in best]
    return texts, index, {"source": "retrieval", "mode": mode, "gallery": split, "gallery_size": len(gallery_index)}


@EVAL_TASKS.register("report_generation")
def report_generation(
    ctx: EvalContext, *, generate: Generate | None = None, mode: str = "text", gallery_split: str | None = None,
    uncertain_as: int = 1, n_resamples: int | None = 200, examples: int = 5,
) -> TaskResult:
    """BLEU-1..4, ROUGE-L, CIDEr-D and clinical F1 of generated (or retrieved) reports, with intervals."""
    references_all = _references(ctx)
    if generate is not None:
        hyps, index = generated_texts(ctx, generate)
        info: dict[str, Any] = {"source": "generate"}
    else:
        hyps, index, info = retrieved_texts(ctx, mode, gallery_split)
    pairs = [(h, references_all[i], i) for h, i in zip(hyps, index) if references_all[i].strip()]
    if not pairs:
        raise TaskSkipped("no evaluated row has a reference report")
    hyps = [p[0] for p in pairs]
    refs = [p[1] for p in pairs]
    rows = [p[2] for p in pairs]
    counts = finding_counts(hyps, refs, uncertain_as)

    def measure(sel: np.ndarray) -> dict[str, float]:
        values = generation_metrics([hyps[i] for i in sel], [refs[i] for i in sel])
        values.update(clinical_scores(counts[sel]))
        return values

    resamples = ctx.config.n_resamples if n_resamples is None else min(n_resamples, ctx.config.n_resamples)
    metrics = multi_interval(measure, len(hyps), groups=ctx.patient_groups(rows), n_resamples=resamples,
                             seed=ctx.seed)
    picks = np.unique(np.linspace(0, len(hyps) - 1, min(examples, len(hyps))).round().astype(int))
    info["examples"] = [{"row": rows[i], "reference": refs[i], "generated": hyps[i]} for i in picks]
    info["n_resamples"] = resamples
    return TaskResult(metrics=metrics, artifacts=info, n=len(hyps))
