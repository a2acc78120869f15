"""Zero-shot classification with a dual encoder: class prompts, prompt ensembles, positive/negative pairs.

A class is represented by the mean of its prompts' normalised text embeddings, normalised again (the
prompt ensembling of Radford et al. 2021, CLIP, Sec. 3.1.4). Multi-class (and binary) tasks take a
softmax over the classes of ``scale * <image, class>``; multi-label findings take a softmax over each
label's positive and negative prompt pair (as CheXzero, Tiu et al. 2022, Nature BME). A
:class:`PromptSet` holds the templates, explicit phrases per class (synonyms, e.g. from an ontology)
and negative phrasings; :meth:`PromptSet.with_synonyms` plugs further phrases in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfuse.core.config import check_choice, from_dict
from medfuse.core.errors import ConfigError
from medfuse.evaluate.results import TaskResult
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.classification import Scored, score_probabilities
from medfuse.evaluate.tasks.embeddings import encode_texts, image_embeddings, logit_scale

DEFAULT_TEMPLATES = ["{label}", "a medical image showing {label}", "findings consistent with {label}"]
DEFAULT_NEGATIVE_TEMPLATES = ["no {label}", "no evidence of {label}"]
MODES = ("auto", "softmax", "pairs")


@dataclass
class PromptSet:
    """Prompts for zero-shot classification.

    templates: sentences with ``{label}``, filled with each phrase of a class (ensembled).
    negative_templates: the same for the negative side of a positive/negative pair.
    class_prompts: label -> phrases to fill in instead of the label name (synonyms, ontology terms).
    negative_prompts: label -> complete negative sentences (replacing the negative templates).
    mode: ``softmax`` over classes, ``pairs`` (per-label positive vs negative), or ``auto``: pairs for
      multi-label, softmax otherwise.
    """

    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    negative_templates: list[str] = field(default_factory=lambda: list(DEFAULT_NEGATIVE_TEMPLATES))
    class_prompts: dict[str, list[str]] = field(default_factory=dict)
    negative_prompts: dict[str, list[str]] = field(default_factory=dict)
    mode: str = "auto"

    def __post_init__(self) -> None:
        check_choice("prompts.mode", self.mode, MODES)
        for where, templates in (("templates", self.templates), ("negative_templates", self.negative_templates)):
            if not templates or any("{label}" not in t for t in templates):
                raise ConfigError(f"prompts.{where}: every template must contain '{{label}}', got {templates}")

    @classmethod
    def from_mapping(cls, data: PromptSet | Mapping[str, Any] | None) -> PromptSet:
        """Return a prompt set from a mapping (YAML) with the field names above; unknown keys fail."""
        if isinstance(data, PromptSet):
            return data
        return from_dict(cls, data or {}, where="prompts")

    def with_synonyms(self, synonyms: Mapping[str, Sequence[str]]) -> PromptSet:
        """Return a copy whose classes also use ``synonyms[label]`` (e.g. terms from an ontology)."""
        merged = {k: list(v) for k, v in self.class_prompts.items()}
        for label, words in synonyms.items():
            merged[label] = list(dict.fromkeys([*self.phrases(label), *words]))
        return dataclasses.replace(self, class_prompts=merged)

    def phrases(self, label: str) -> list[str]:
        """Return the phrases naming ``label`` (its explicit prompts, else the name with ``_`` as spaces)."""
        return list(self.class_prompts.get(label) or [str(label).replace("_", " ")])

    def positives(self, label: str) -> list[str]:
        """Return the positive prompts of ``label`` (every template with every phrase), without repeats."""
        return list(dict.fromkeys(t.format(label=p) for p in self.phrases(label) for t in self.templates))

    def negatives(self, label: str) -> list[str]:
        """Return the negative prompts of ``label``."""
        if label in self.negative_prompts:
            return list(self.negative_prompts[label])
        return list(dict.fromkeys(t.format(label=p) for p in self.phrases(label) for t in self.negative_templates))

    def resolve_mode(self, task: str) -> str:
        """Return ``pairs`` or ``softmax`` for a data task (``auto``: pairs for multi-label only)."""
        if self.mode != "auto":
            return self.mode
        return "pairs" if task == "multilabel" else "softmax"


def class_embeddings(model: torch.nn.Module, prompts: Sequence[Sequence[str]], batch_size: int = 64) -> torch.Tensor:
    """Return one ensembled, normalised embedding per class ``(C, E)`` from its prompts."""
    flat = [p for group in prompts for p in group]
    emb = encode_texts(model, flat, batch_size)
    out, start = [], 0
    for group in prompts:
        out.append(emb[start : start + len(group)].mean(dim=0))
        start += len(group)
    return F.normalize(torch.stack(out), dim=-1)


def zero_shot_probabilities(
    model: torch.nn.Module, images: torch.Tensor, labels: Sequence[str], task: str, prompts: PromptSet,
    batch_size: int = 64,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return probabilities shaped for ``task`` and the prompts used.

    images: (N, E) normalised image embeddings. Output: (N,) binary (the last label is positive),
    (N, C) multiclass, (N, K) multilabel.
    """
    scale = logit_scale(model)
    mode = prompts.resolve_mode(task)
    used: dict[str, Any] = {"mode": mode, "scale": scale}
    images = images.float().cpu()
    if mode == "softmax":
        if task == "multilabel":
            raise TaskSkipped("multi-label findings need prompt pairs (prompts.mode: pairs)")
        groups = [prompts.positives(label) for label in labels]
        classes = class_embeddings(model, groups, batch_size)
        probs = (scale * images @ classes.T).softmax(dim=-1).numpy()
        used["positives"] = dict(zip(labels, groups))
        return (probs[:, -1] if task == "binary" else probs), used
    if task == "multiclass":
        raise TaskSkipped("prompt pairs give independent label probabilities; use prompts.mode softmax for multi-class")
    targets = list(labels[-1:]) if task == "binary" else list(labels)
    pos = [prompts.positives(label) for label in targets]
    neg = [prompts.negatives(label) for label in targets]
    emb_pos, emb_neg = class_embeddings(model, pos, batch_size), class_embeddings(model, neg, batch_size)
    pair = torch.stack([images @ emb_pos.T, images @ emb_neg.T], dim=-1) * scale  # (N, K, 2)
    probs = pair.softmax(dim=-1)[..., 0].numpy()
    used["positives"], used["negatives"] = dict(zip(targets, pos)), dict(zip(targets, neg))
    return (probs[:, 0] if task == "binary" else probs), used


@EVAL_TASKS.register("zero_shot")
def zero_shot(ctx: EvalContext, *, prompts: Mapping[str, Any] | PromptSet | None = None) -> TaskResult:
    """Zero-shot classification of the split's labels from class prompts, with classification metrics."""
    ds = ctx.dataset
    if ds.targets is None or ds.task not in ("binary", "multiclass", "multilabel"):
        raise TaskSkipped("zero-shot classification needs class labels in the data (label or labels columns)")
    labels = [str(n) for n in (ds.label_names or ds.classes or [])]
    if not labels:
        raise TaskSkipped("the data has no class names to build prompts from")
    prompt_set = PromptSet.from_mapping(prompts)
    images, index = image_embeddings(ctx)
    y = ds.targets[index]
    keep = (y >= 0) if ds.task != "multilabel" else np.isfinite(y).all(axis=1)
    if not keep.any():
        raise TaskSkipped("no labelled rows in the split")
    probs, used = zero_shot_probabilities(ctx.model, images, labels, ds.task, prompt_set, ctx.config.batch_size)
    y, probs = y[keep], probs[keep]
    rows = [i for i, k in zip(index, keep) if k]
    if ds.task != "multilabel":
        y = y.astype(np.int64)
    log_probs = np.log(np.clip(probs, 1e-12, 1.0))
    scored = Scored(y, probs, log_probs, rows, ds.task, keep)
    names = labels[-1:] if ds.task == "binary" else labels
    result = score_probabilities(ctx, scored, names=names, class_names=labels, threshold=0.5,
                                 groups=ctx.patient_groups(rows))
    result.artifacts["prompts"] = used
    return result
