"""Masked language modelling: BERT's 80/10/10 corruption and the loss over the corrupted positions.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
Sec. 3.1 (Task #1) and Appendix A.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_ndim, check_range, detached, empty_loss

IGNORE_INDEX = -100


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device).to(device)


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    vocab_size: int,
    mask_token_id: int,
    special_ids: Sequence[int] | Tensor = (),
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Return ``(masked_ids, labels)``: BERT-corrupted token ids and the targets to predict.

    Each real, non-special token is selected with probability ``prob``; a selected token becomes
    ``mask_token_id`` with probability 0.8, a random non-special token id with probability 0.1, and stays
    unchanged otherwise (Devlin et al. 2019, Sec. 3.1).

    input_ids: (B, L) long token ids. attention_mask: (B, L), nonzero for real tokens; None when all are real.
    vocab_size: number of token ids; random replacements are drawn uniformly from ``[0, vocab_size)``
        without ``special_ids`` (padding, [CLS], [SEP], [MASK], ... are never inserted).
    special_ids: ids that are never selected and never drawn as replacements.
    generator: the random source (a CPU generator works for tensors on any device).
    Returns masked_ids (B, L) long and labels (B, L) long: the original id at selected positions,
    ``-100`` (ignored by the loss) elsewhere.
    """
    where = "mlm masking"
    check_ndim("input_ids", input_ids, 2, where=where, shape="(B, L)")
    if input_ids.dtype not in (torch.int32, torch.int64):
        raise ConfigError(f"{where}: input_ids must be integer token ids, got dtype {input_ids.dtype}")
    check_range("prob", prob, 0.0, 1.0, where=where)
    if not 0 <= mask_token_id < vocab_size:
        raise ConfigError(
            f"{where}: mask_token_id={mask_token_id} is outside the vocabulary [0, {vocab_size})"
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ConfigError(
            f"{where}: attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
            f"{tuple(input_ids.shape)}; they must match"
        )
    device = input_ids.device
    special = torch.as_tensor(
        list(special_ids) if not isinstance(special_ids, Tensor) else special_ids,
        dtype=torch.long,
        device=device,
    ).reshape(-1)
    is_special = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    is_special[special[(special >= 0) & (special < vocab_size)]] = True
    is_special[mask_token_id] = True
    replacements = (~is_special).nonzero().squeeze(1)  # (V',) ids a random replacement may take
    if replacements.numel() == 0:
        raise ConfigError(
            f"{where}: every id in the vocabulary is special; nothing to draw replacements from"
        )
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ConfigError(f"{where}: input_ids hold ids outside the vocabulary [0, {vocab_size})")

    ids = input_ids.long()
    eligible = ~is_special[ids]
    if attention_mask is not None:
        eligible &= attention_mask.to(device) != 0
    selected = eligible & (_uniform(ids.shape, generator, device) < prob)
    action = _uniform(ids.shape, generator, device)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_pick = (_uniform(ids.shape, generator, device) * replacements.numel()).long()
    random_ids = replacements[random_pick.clamp(max=replacements.numel() - 1)]

    masked = torch.where(to_mask, torch.full_like(ids, mask_token_id), ids)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked.to(input_ids.dtype), labels


def mlm_loss(logits: Tensor, labels: Tensor, *, label_smoothing: float = 0.0) -> LossOutput:
    """Return the mean cross-entropy over the positions whose label is not ``-100`` (Devlin et al. 2019).

    logits: (B, L, V) token logits. labels: (B, L) long, ``-100`` where nothing is predicted.
    Only the selected positions go through the softmax. With no selected position the loss is a zero
    connected to ``logits``. Returns ``total`` and parts ``accuracy`` and ``masked`` (count), detached.
    """
    where = "mlm loss"
    check_ndim("logits", logits, 3, where=where, shape="(B, L, V)")
    if labels.shape != logits.shape[:2]:
        raise ConfigError(
            f"{where}: labels has shape {tuple(labels.shape)} but logits is {tuple(logits.shape)}; "
            "labels must be (B, L)"
        )
    selected = labels != IGNORE_INDEX
    count = selected.sum()
    if int(count) == 0:
        zero = empty_loss(logits)
        return LossOutput(zero, {"accuracy": detached(0.0, zero), "masked": detached(0.0, zero)})
    picked_logits = logits[selected]  # (M, V)
    targets = labels[selected]
    loss = F.cross_entropy(picked_logits, targets, label_smoothing=label_smoothing)
    accuracy = (picked_logits.argmax(dim=-1) == targets).float().mean()
    return LossOutput(loss, {"accuracy": accuracy.detach(), "masked": count.detach().float()})


@LOSSES.register("mlm")
class MLMLoss(nn.Module):
    """Masked language modelling cross-entropy over the masked positions (Devlin et al. 2019)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_range("label_smoothing", label_smoothing, 0.0, 1.0, where="mlm loss")
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Tensor) -> LossOutput:
        """Return the MLM loss of (B, L, V) logits against (B, L) labels (``-100`` = not predicted)."""
        return mlm_loss(logits, labels, label_smoothing=self.label_smoothing)
