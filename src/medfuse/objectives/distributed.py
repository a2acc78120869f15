"""Gathering features across processes for losses whose negatives span the global batch.

Gradient convention (the one ``open_clip`` and DDP rely on): with ``with_grad=True`` the backward of the
gather sums each rank's gradient into the features that rank contributed, so the gradient of a rank's
features is ``world_size`` times the gradient of the global loss; DDP then averages parameter gradients over
the ranks, which divides the factor back out and leaves the gradient of the global-batch loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def world() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of the default process group, ``(0, 1)`` when none is running."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient of the gathered rows and keeps this rank's slice."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: Tensor) -> Tensor:
        rank, size = world()
        ctx.rank, ctx.rows = rank, local.shape[0]  # type: ignore[attr-defined]
        chunks = [torch.empty_like(local) for _ in range(size)]
        torch.distributed.all_gather(chunks, local.contiguous())
        return torch.cat(chunks, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        # A sum-all-reduce then a slice equals a reduce-scatter, which not every backend (gloo) offers.
        summed = grad.contiguous().clone()
        torch.distributed.all_reduce(summed)
        start = ctx.rank * ctx.rows  # type: ignore[attr-defined]
        return summed[start : start + ctx.rows]  # type: ignore[attr-defined]


def gather(local: Tensor, *, with_grad: bool) -> Tensor:
    """Return the rows of every rank's ``local`` concatenated in rank order.

    local: (b, D) this rank's rows; every rank must pass the same shape.
    Returns (world_size * b, D). With ``with_grad`` the gather is differentiable (each rank's gradient of
    the gathered rows is summed into the rank that owns them); without, only this rank's own slice keeps its
    graph.
    """
    rank, size = world()
    if size == 1:
        return local
    if with_grad:
        return _GatherWithGrad.apply(local)
    chunks = [torch.empty_like(local) for _ in range(size)]
    torch.distributed.all_gather(chunks, local.detach().contiguous())
    chunks[rank] = local
    return torch.cat(chunks, dim=0)
