"""Image-text matching (ITM) with hard negatives mined from the contrastive similarity matrix.

Li et al. 2021, "Align before Fuse: Vision and Language Representation Learning with Momentum
Distillation" (ALBEF), Sec. 3.2: for every image a negative text is drawn with probability proportional to
``softmax`` of its similarities (hard negatives are likelier), likewise a negative image for every text; a
fusion encoder scores the ``B`` positive and ``2B`` negative pairs and is trained with a binary objective.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_ndim, detached

Features = Tensor | Mapping[str, Tensor]
Scorer = Callable[[Features, Features], Tensor]
MINING = ("sample", "argmax")


def positive_mask(batch_size: int, groups: Tensor | None, device: torch.device) -> Tensor:
    """Return the (B, B) bool matrix of pairs that match: the diagonal, plus pairs sharing a group id.

    groups: (B,) integer ids; samples with the same id (e.g. the same caption) are positives of each other.
    """
    eye = torch.eye(batch_size, dtype=torch.bool, device=device)
    if groups is None:
        return eye
    if groups.shape != (batch_size,):
        raise ConfigError(f"itm: groups must have shape ({batch_size},), got {tuple(groups.shape)}")
    return eye | (groups.view(-1, 1) == groups.view(1, -1)).to(device)


def mine_hard_negatives(
    sim: Tensor,
    *,
    groups: Tensor | None = None,
    strategy: Literal["sample", "argmax"] = "sample",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return (B,) long indices of one hard negative column per row of ``sim``, ``-1`` where a row has none.

    sim: (B, B) similarity logits, rows are queries (e.g. images) and columns candidates (texts); row ``i``
        matches column ``i``. Pass ``sim.T`` to mine negative images for texts.
    groups: (B,) ids; columns in the row's group are positives and never mined.
    strategy: ``"sample"`` draws column ``j`` with probability ``softmax_j(sim_ij)`` over the non-positive
        columns (ALBEF); ``"argmax"`` takes the most similar non-positive column.
    generator: the random source for ``"sample"`` (on ``sim``'s device, or a CPU generator).
    """
    check_choice("itm mining strategy", strategy, MINING)
    check_ndim("sim", sim, 2, where="itm negative mining", shape="(B, B)")
    if sim.shape[0] != sim.shape[1]:
        raise ConfigError(f"itm negative mining: sim must be square (B, B), got {tuple(sim.shape)}")
    sim = sim.detach().float()
    positives = positive_mask(sim.shape[0], groups, sim.device)
    has_negative = ~positives.all(dim=1)
    masked = sim.masked_fill(positives, float("-inf"))
    if strategy == "argmax":
        picked = masked.argmax(dim=1)
    else:
        # Rows without any negative get a uniform dummy distribution; their pick is discarded below.
        masked = torch.where(has_negative.unsqueeze(1), masked, torch.zeros_like(masked))
        probs = torch.softmax(masked, dim=1)
        if generator is not None and generator.device != probs.device:
            picked = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(sim.device)
        else:
            picked = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return torch.where(has_negative, picked, torch.full_like(picked, -1))


def take(features: Features, index: Tensor) -> Features:
    """Return the rows ``index`` of a (B, ...) tensor, or of every tensor in a mapping of them."""
    if isinstance(features, Mapping):
        return {name: value.index_select(0, index) for name, value in features.items()}
    return features.index_select(0, index)


def _batch_size(features: Features, name: str) -> int:
    if isinstance(features, Mapping):
        sizes = {value.shape[0] for value in features.values()}
        if len(sizes) != 1:
            raise ConfigError(f"itm: the tensors in {name} have different batch sizes {sorted(sizes)}")
        return sizes.pop()
    return features.shape[0]


@LOSSES.register("itm")
class ITMLoss(nn.Module):
    """Image-text matching loss over positives and mined hard negatives (Li et al. 2021, ALBEF).

    The scorer (a fusion encoder with a head, owned by the model) maps paired features to ``(N,)`` match
    logits (binary cross-entropy) or ``(N, 2)`` logits over {no match, match} (cross-entropy, as ALBEF).
    """

    def __init__(self, strategy: Literal["sample", "argmax"] = "sample") -> None:
        super().__init__()
        check_choice("itm mining strategy", strategy, MINING)
        self.strategy = strategy

    def forward(
        self,
        scorer: Scorer,
        image_feats: Features,
        text_feats: Features,
        *,
        sim: Tensor | None = None,
        groups: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Return the ITM loss of ``B`` positive pairs and up to ``2B`` mined negatives.

        image_feats / text_feats: (B, ...) tensors, or mappings of them (e.g. tokens and their mask);
            row ``i`` of each is a matching pair.
        sim: (B, B) image-to-text similarity logits used for mining; when omitted, image_feats and text_feats
            must be (B, D) tensors and their cosine similarity is used.
        groups: (B,) ids marking duplicate pairs (same caption): positives never mined as negatives.
        Returns ``total`` (mean over all scored pairs) and parts ``positive``, ``negative`` (mean loss of
        each kind) and ``accuracy`` (detached).
        """
        batch = _batch_size(image_feats, "image_feats")
        if _batch_size(text_feats, "text_feats") != batch:
            raise ConfigError("itm: image_feats and text_feats must hold the same number of pairs")
        if sim is None:
            if (
                not (isinstance(image_feats, Tensor) and isinstance(text_feats, Tensor))
                or image_feats.ndim != 2
            ):
                raise ConfigError("itm: pass sim=(B, B) similarities unless the features are (B, D) tensors")
            sim = F.normalize(image_feats.detach(), dim=-1) @ F.normalize(text_feats.detach(), dim=-1).T
        neg_text = mine_hard_negatives(sim, groups=groups, strategy=self.strategy, generator=generator)
        neg_image = mine_hard_negatives(sim.T, groups=groups, strategy=self.strategy, generator=generator)
        rows = torch.arange(batch, device=neg_text.device)
        keep_t, keep_i = neg_text >= 0, neg_image >= 0
        # Pairs: B positives, (image i, hard text) and (hard image, text j) negatives.
        image_index = torch.cat([rows, rows[keep_t], neg_image[keep_i]])
        text_index = torch.cat([rows, neg_text[keep_t], rows[keep_i]])
        device = _device(image_feats)
        logits = scorer(take(image_feats, image_index.to(device)), take(text_feats, text_index.to(device)))
        targets = torch.zeros(image_index.shape[0], device=logits.device)
        targets[:batch] = 1.0
        if logits.ndim == 1 and logits.shape[0] == targets.shape[0]:
            per_pair = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            predicted = logits > 0
        elif logits.ndim == 2 and logits.shape == (targets.shape[0], 2):
            per_pair = F.cross_entropy(logits, targets.long(), reduction="none")
            predicted = logits.argmax(dim=1) == 1
        else:
            raise ConfigError(
                f"itm: the scorer must return ({targets.shape[0]},) or ({targets.shape[0]}, 2) logits for "
                f"{targets.shape[0]} pairs, got {tuple(logits.shape)}"
            )
        positive = per_pair[:batch].mean()
        negative = per_pair[batch:].mean() if per_pair.shape[0] > batch else per_pair[:0].sum()
        accuracy = (predicted == targets.bool()).float().mean()
        return LossOutput(
            total=per_pair.mean(),
            parts={"positive": positive, "negative": negative, "accuracy": detached(accuracy, accuracy)},
        )


def _device(features: Features) -> torch.device:
    if isinstance(features, Mapping):
        return next(iter(features.values())).device
    return features.device
