"""Helpers shared by the explanation methods: evaluation mode and the choice of the explained class."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

Target = int | Sequence[int] | Tensor | None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode (no dropout, batch-norm running statistics), then restore."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def pick_target(logits: Tensor, target: Target) -> Tensor:
    """Return (B,) class indices: the arg-max (0 for one logit) when ``target`` is None."""
    size, classes = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.argmax(-1) if classes > 1 else torch.zeros(size, dtype=torch.long, device=logits.device)
    chosen = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1).expand(size).clone()
    if bool(((chosen < 0) | (chosen >= classes)).any()):
        raise ValueError(f"target {target!r} is outside the model's {classes} outputs")
    return chosen


__all__ = ["Target", "eval_mode", "pick_target"]
