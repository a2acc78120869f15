"""Attributions beyond pixels: gradient x input per text token, and per-modality contributions
(occlusion deltas and exact Shapley values over the present modalities) for fusion models."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medfuse.evaluate.explain._common import Target, eval_mode, pick_target
from medfuse.models.diagnosis import DiagnosisModel, batch_size
from medfuse.models.encoders.text import ByteTokenizer

MAX_SHAPLEY_MODALITIES = 4


@dataclass
class TokenAttribution:
    """Gradient x input per token of one text: the tokenizer's ``tokens`` and ``scores`` (L,) for class ``target``."""

    tokens: list[str]
    scores: np.ndarray
    target: int
    score: float


@dataclass
class ModalityAttribution:
    """Per-modality contributions to the target logit of a fusion model.

    modalities: encoder names (M); full, empty: (B,) logit with every present modality and with none;
    occlusion: (B, M) ``f(all) - f(all without m)``; shapley: (B, M) or None; target: (B,) class index.
    """

    modalities: list[str]
    full: Tensor
    empty: Tensor
    occlusion: Tensor
    shapley: Tensor | None
    target: Tensor


def _embedding_module(tower: Any) -> nn.Module:
    inner = getattr(tower, "model", None)
    if inner is not None and hasattr(inner, "get_input_embeddings"):
        return inner.get_input_embeddings()
    if isinstance(getattr(tower, "token_embedding", None), nn.Module):
        return tower.token_embedding
    if hasattr(tower, "get_input_embeddings"):
        return tower.get_input_embeddings()
    raise ValueError(f"cannot find the input embeddings of {type(tower).__name__}")


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Return the tokenizer's token strings for ``ids`` (bytes as characters for the byte tokenizer)."""
    if isinstance(tokenizer, ByteTokenizer):
        special = {tokenizer.pad_id: "<pad>", tokenizer.bos_id: "<bos>", tokenizer.eos_id: "<eos>"}
        return [special.get(i) or bytes([i - tokenizer.offset]).decode("utf-8", errors="replace") for i in ids]
    return list(tokenizer.convert_ids_to_tokens(list(ids)))


def token_attributions(model: DiagnosisModel, batch: Mapping[str, Any], *, encoder: str = "text",
                       target: Target = None) -> list[TokenAttribution]:
    """Return gradient x input per real token of each text in ``batch`` for the ``target`` class logit.

    The embedding output is detached and made a leaf, so frozen towers are explained too; the
    attribution of token i is ``sum_d x_id * d y / d x_id`` over the hidden dimension d.
    """
    tower: Any = model.encoders[encoder]
    key = model.inputs[encoder]
    encoded = batch[key] if isinstance(batch[key], Mapping) else tower.tokenize(batch[key])
    embedded: list[Tensor] = []

    def as_leaf(_module: nn.Module, _inputs: Any, out: Tensor) -> Tensor:
        leaf = out.detach().requires_grad_(True)
        embedded.append(leaf)
        return leaf

    handle = _embedding_module(tower).register_forward_hook(as_leaf)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model({**batch, key: encoded}).logits
            chosen = pick_target(logits.detach(), target)
            score = logits.gather(1, chosen[:, None]).squeeze(1)
            if not embedded:
                raise RuntimeError(f"the input embeddings of encoder '{encoder}' were not used in the forward pass")
            grads = torch.autograd.grad(score.sum(), embedded[0])[0]
    finally:
        handle.remove()
    scores = (grads * embedded[0]).sum(-1).detach().float().cpu().numpy()  # (B, L)
    ids = encoded["input_ids"].cpu()
    mask = encoded.get("attention_mask")
    keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.cpu().bool()
    out = []
    for i in range(ids.shape[0]):
        row = keep[i].numpy()
        out.append(TokenAttribution(token_strings(tower.tokenizer, ids[i][keep[i]].tolist()), scores[i][row],
                                    int(chosen[i]), float(score[i].detach())))
    return out


def modality_contributions(model: DiagnosisModel, batch: Mapping[str, Any], *,
                           target: Target = None, shapley: bool = True) -> ModalityAttribution:
    """Return each modality's contribution to the target logit: occlusion deltas and exact Shapley values.

    ``f(S)`` is the target logit with only the modalities in S marked present (a modality a sample lacks
    stays absent, so its values are 0). Costs one forward pass per subset: ``2^M`` with ``shapley``.
    """
    names = list(model.inputs)
    m = len(names)
    if shapley and m > MAX_SHAPLEY_MODALITIES:
        raise ValueError(f"exact Shapley values need 2^M passes; {m} modalities exceed {MAX_SHAPLEY_MODALITIES}")
    size = batch_size(batch)
    device = next(model.parameters()).device
    given = dict(batch.get("present") or {})
    base = model.presence(batch, size, device)

    def logits_with(subset: frozenset[str]) -> Tensor:
        present = dict(given)
        for name in names:
            present[model.inputs[name]] = base[name] & (name in subset)
        return model({**batch, "present": present}).logits.float()

    with eval_mode(model), torch.no_grad():
        full_logits = logits_with(frozenset(names))
        chosen = pick_target(full_logits, target)

        def value(subset: frozenset[str]) -> Tensor:
            return logits_with(subset).gather(1, chosen[:, None]).squeeze(1)

        cache: dict[frozenset[str], Tensor] = {frozenset(names): full_logits.gather(1, chosen[:, None]).squeeze(1)}
        subsets = [frozenset(c) for r in range(m + 1) for c in itertools.combinations(names, r)] if shapley else \
            [frozenset(), *(frozenset(names) - {n} for n in names)]
        for subset in subsets:
            if subset not in cache:
                cache[subset] = value(subset)
    full, empty = cache[frozenset(names)], cache[frozenset()]
    occlusion = torch.stack([full - cache[frozenset(names) - {n}] for n in names], dim=1)
    values = None
    if shapley:
        values = torch.zeros(size, m, device=full.device)
        for j, name in enumerate(names):
            others = [n for n in names if n != name]
            for r in range(m):
                weight = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                for combo in itertools.combinations(others, r):
                    values[:, j] += weight * (cache[frozenset(combo) | {name}] - cache[frozenset(combo)])
    return ModalityAttribution(names, full, empty, occlusion, values, chosen)


__all__ = ["MAX_SHAPLEY_MODALITIES", "ModalityAttribution", "TokenAttribution", "modality_contributions",
           "token_attributions", "token_strings"]
