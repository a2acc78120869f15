"""Why a zero-shot prediction: exact per-prompt contributions, summed by ontology concept and relation.

A class's embedding is the normalised mean of its ``P`` prompts' normalised embeddings ``t_p``:
``c = m / ||m||`` with ``m = (1/P) sum_p t_p``. Its logit for a normalised image ``x`` is therefore a sum
over the prompts::

    logit_c = s * <x, c> = sum_p  s * <x, t_p> / (P * ||m||)

(``s``: the model's logit scale). Each term is the prompt's *contribution*; they add up to the logit
exactly, so the margin between the predicted class and the runner-up (or between a label's positive and
negative prompts in ``pairs`` mode) splits into prompts, and from there into the ontology concepts and
relations (name, synonym, parent, child, anatomy) that produced them. The logits and probabilities are
those of ``zero_shot_probabilities`` for the same prompts (tested for parity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.inference import unwrap
from medfuse.ontology.prompts import Prompt, PromptBank

__all__ = ["ConceptContribution", "PromptContribution", "ZeroShotExplainer", "ZeroShotExplanation"]


@dataclass
class PromptContribution:
    """One prompt's part in a class logit: cosine ``similarity`` to the image, additive ``contribution``."""

    prompt: Prompt
    similarity: float
    contribution: float


@dataclass
class ConceptContribution:
    """The contributions of one (concept, relation) group of prompts to one side, summed."""

    concept: str
    relation: str
    side: str
    contribution: float
    prompts: int
    best_prompt: str


@dataclass
class ZeroShotExplanation:
    """A prediction and its attribution.

    mode: softmax (classes compete) or pairs (one label's positive vs negative prompts). label: the
    explained class (pairs: the label). against: the runner-up class (pairs: ``not <label>``).
    probabilities / logits: per class (pairs: ``{label, not <label>}``). margin: ``logit(label) -
    logit(against)`` = sum of ``for_label`` contributions - sum of ``for_against`` contributions.
    concepts: per (concept, relation) sums on both sides, largest first.
    """

    mode: str
    label: str
    against: str | None
    probabilities: dict[str, float]
    logits: dict[str, float]
    margin: float
    for_label: list[PromptContribution]
    for_against: list[PromptContribution] = field(default_factory=list)
    concepts: list[ConceptContribution] = field(default_factory=list)

    def top_prompts(self, k: int = 5) -> list[PromptContribution]:
        """Return the ``k`` prompts of the explained class most similar to the image."""
        return sorted(self.for_label, key=lambda c: -c.similarity)[:k]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary of the explanation."""
        return asdict(self)

    def summary(self, k: int = 3) -> str:
        """Return one line: the prediction, its margin, and the concepts that pushed it most."""
        mine = [c for c in self.concepts if c.side == "label"][:k]
        parts = ", ".join(f"{c.concept}/{c.relation} {c.contribution:+.3f}" for c in mine)
        vs = f" over {self.against}" if self.against else ""
        return f"{self.label}{vs} (p={self.probabilities[self.label]:.3f}, margin {self.margin:+.3f}): {parts}"


class ZeroShotExplainer:
    """Encodes a :class:`PromptBank` once with a dual encoder, then explains predictions for images.

    model: a dual encoder (``encode_text``, ``encode_image``, optional ``scale()``). bank: the prompts.
    task: ``binary`` | ``multiclass`` | ``multilabel`` decides the mode like ``PromptSet.resolve_mode``.
    """

    def __init__(self, model: nn.Module, bank: PromptBank, task: str = "multiclass", batch_size: int = 64) -> None:
        from medfuse.evaluate.tasks.embeddings import encode_texts, logit_scale

        check_choice("task", task, ("binary", "multiclass", "multilabel"))
        self.model = model
        self.bank = bank
        self.task = task
        self.mode = bank.mode if bank.mode != "auto" else ("pairs" if task == "multilabel" else "softmax")
        if self.mode == "pairs" and task == "multiclass":
            raise ConfigError("prompt pairs give independent label probabilities; use mode softmax for multi-class")
        if self.mode == "softmax" and task == "multilabel":
            raise ConfigError("multi-label findings need prompt pairs (mode: pairs)")
        self.scale = logit_scale(model)
        self.groups: dict[tuple[str, str], tuple[list[Prompt], Tensor]] = {}
        sides = [("positive", lab) for lab in bank.labels]
        if self.mode == "pairs":
            targets = bank.labels[-1:] if task == "binary" else bank.labels
            sides = [(pol, lab) for lab in targets for pol in ("positive", "negative")]
        for polarity, label in sides:
            prompts = (bank.positives if polarity == "positive" else bank.negatives)[label]
            if not prompts:
                raise ConfigError(f"prompts: class {label!r} has no {polarity} prompts")
            self.groups[(polarity, label)] = (prompts, encode_texts(model, [p.text for p in prompts], batch_size))

    @torch.no_grad()
    def image_embeddings(self, images: Tensor) -> Tensor:
        """Return normalised ``(N, E)`` embeddings of images ``(N, C, H, W)``; ``(N, E)``/``(E,)`` pass through."""
        if images.dim() == 4:
            encode = cast(Callable[[Tensor], Tensor], unwrap(self.model).encode_image)
            images = encode(images)
        images = images.reshape(1, -1) if images.dim() == 1 else images
        return F.normalize(images.float().cpu(), dim=-1)

    def _side(self, image: Tensor, key: tuple[str, str]) -> tuple[float, list[PromptContribution]]:
        prompts, text = self.groups[key]
        mean = text.mean(dim=0)
        sims = text @ image  # (P,)
        parts = self.scale * sims / (len(prompts) * mean.norm().clamp_min(1e-12))
        rows = [PromptContribution(p, float(s), float(c)) for p, s, c in zip(prompts, sims, parts)]
        return float(parts.sum()), rows

    def explain(self, images: Tensor, label: str | None = None) -> list[ZeroShotExplanation]:
        """Return one explanation per image: of ``label`` when given, else of the prediction.

        softmax: the explained class against the best other class. pairs: ``label`` (default: the label
        with the highest probability; binary: the positive class) against its negative prompts.
        """
        embeds = self.image_embeddings(images)
        return [self._explain_one(x, label) for x in embeds]

    def _explain_one(self, x: Tensor, label: str | None) -> ZeroShotExplanation:
        if self.mode == "softmax":
            sides = {lab: self._side(x, ("positive", lab)) for lab in self.bank.labels}
            logits = {lab: s[0] for lab, s in sides.items()}
            probs = torch.tensor(list(logits.values())).softmax(0).tolist()
            probabilities = dict(zip(logits, probs))
            chosen = label if label is not None else max(logits, key=logits.__getitem__)
            self._check_label(chosen, list(logits))
            others = [lab for lab in logits if lab != chosen]
            against = max(others, key=logits.__getitem__) if others else None
            for_label = sides[chosen][1]
            for_against = sides[against][1] if against else []
            margin = logits[chosen] - (logits[against] if against else 0.0)
            return ZeroShotExplanation("softmax", chosen, against, probabilities, logits, margin, for_label,
                                       for_against, _concepts(for_label, for_against))
        targets = sorted({lab for _, lab in self.groups}, key=self.bank.labels.index)
        pairs = {lab: (self._side(x, ("positive", lab)), self._side(x, ("negative", lab))) for lab in targets}
        prob_pos = {lab: float(torch.tensor([p[0], n[0]]).softmax(0)[0]) for lab, (p, n) in pairs.items()}
        chosen = label if label is not None else max(prob_pos, key=prob_pos.__getitem__)
        self._check_label(chosen, targets)
        (pos_logit, for_label), (neg_logit, for_against) = pairs[chosen]
        neg_name = f"not {chosen}"
        return ZeroShotExplanation(
            "pairs", chosen, neg_name, {chosen: prob_pos[chosen], neg_name: 1.0 - prob_pos[chosen]},
            {chosen: pos_logit, neg_name: neg_logit}, pos_logit - neg_logit, for_label, for_against,
            _concepts(for_label, for_against),
        )

    @staticmethod
    def _check_label(label: str, known: Sequence[str]) -> None:
        if label not in known:
            raise ConfigError(f"label: {label!r} is not one of the explained classes {list(known)}")


def _concepts(for_label: list[PromptContribution], for_against: list[PromptContribution]) -> list[ConceptContribution]:
    """Sum contributions by (side, concept, relation); largest first within each side."""
    out: list[ConceptContribution] = []
    for side, rows in (("label", for_label), ("against", for_against)):
        groups: dict[tuple[str, str], list[PromptContribution]] = {}
        for row in rows:
            groups.setdefault((row.prompt.concept or row.prompt.label, row.prompt.relation), []).append(row)
        sums = [ConceptContribution(concept, relation, side, sum(r.contribution for r in group), len(group),
                                    max(group, key=lambda r: r.similarity).prompt.text)
                for (concept, relation), group in groups.items()]
        out += sorted(sums, key=lambda c: -c.contribution)
    return out
