"""A tiny task and data set for trainer tests that need no encoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from medfuse.objectives.base import LossOutput


class ToyData(Dataset):
    def __init__(self, n: int = 64, dim: int = 8, seed: int = 0) -> None:
        w = torch.randn(dim, generator=torch.Generator().manual_seed(1234))  # one rule for every split
        self.x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
        self.y = (self.x @ w > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "labels": self.y[i]}


class ToyModel(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(0.1))
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ToyTask:
    name = "toy"

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        logits = module(batch["x"])
        loss = nn.functional.cross_entropy(logits, batch["labels"])
        return LossOutput(loss, {"ce": loss.detach()})

    def validate(self, module: nn.Module, loader: Any) -> dict[str, float]:
        correct = total = 0
        for b in loader:
            correct += int((module(b["x"]).argmax(-1) == b["labels"]).sum())
            total += len(b["labels"])
        return {"accuracy": correct / total}
