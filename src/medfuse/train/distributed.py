"""DDP through ``torchrun``: process group set-up, rank helpers, distributed samplers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if info.is_main:
        log.info("distributed training: %d processes", info.world_size)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``value`` over processes (identity on one process)."""
    if not info.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, sharded across ranks, able to skip the batches already consumed.

    The order of epoch ``e`` is a permutation drawn from ``seed + e``, so a resumed run sees exactly the same
    samples in the same order as an uninterrupted one. With ``world_size > 1`` the order is padded to a
    multiple of the world size and rank ``r`` takes every ``world_size``-th index from ``r`` (as
    ``DistributedSampler``).

    ``groups`` (one key per sample, e.g. the image a question is about) keeps each group's samples next to
    each other: the groups are shuffled, then the samples inside each group, so consecutive batches hold
    whole groups and a model can encode a shared input once per batch (see ``DiagnosisModel``). With
    several ranks, each rank takes contiguous runs of that order instead of every ``world_size``-th sample.
    """

    def __init__(
        self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = False,
        groups: Sequence[int] | None = None,
    ) -> None:
        if groups is not None and len(groups) != n:
            raise ValueError(f"groups: expected one key per sample ({n}), got {len(groups)}")
        self.n = n
        self.groups = torch.as_tensor(list(groups), dtype=torch.int64) if groups is not None else None
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select epoch ``epoch``'s order and skip its first ``skip`` samples (of this rank)."""
        self.epoch = epoch
        self.skip = skip

    def _indices(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        if self.groups is not None:
            order = _grouped_order(self.groups, g if self.shuffle else None)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            if self.drop_last:
                order = order[: self.n - self.n % self.world_size]
            else:
                pad = (-len(order)) % self.world_size
                order = order + order[:pad]
            if self.groups is not None:  # contiguous shards keep groups together
                size = len(order) // self.world_size
                return order[self.rank * size : (self.rank + 1) * size]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.skip)


def _grouped_order(groups: torch.Tensor, generator: torch.Generator | None) -> list[int]:
    """Return sample indices with each group's samples contiguous; groups (and members) shuffled by ``generator``."""
    keys, inverse = torch.unique(groups, return_inverse=True)
    if generator is None:
        group_rank, members = torch.arange(len(keys)), torch.arange(len(groups))
    else:
        group_rank, members = torch.randperm(len(keys), generator=generator), torch.randperm(len(groups), generator=generator)
    # members in a random order, then a stable sort by their group's shuffled rank
    order = members[torch.argsort(group_rank[inverse][members], stable=True)]
    return order.tolist()
