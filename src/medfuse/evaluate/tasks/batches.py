"""Batch surgery for evaluation: rows picked or repeated, modalities marked absent, fixed row subsets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medfuse.data import ManifestDataset


def batch_length(batch: Mapping[str, Any]) -> int:
    """Return the number of samples in a batch (its ``index``)."""
    return len(batch["index"])


def take_rows(batch: Mapping[str, Any], rows: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Return the batch restricted to (or repeating) ``rows``; tensors, lists and nested mappings alike."""
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    size = batch_length(batch)

    def pick(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
            return value[idx.to(value.device)]
        if isinstance(value, (list, tuple)) and len(value) == size:
            return [value[int(i)] for i in idx]
        if isinstance(value, Mapping):
            return {k: pick(v) for k, v in value.items()}
        return value

    return {k: pick(v) for k, v in batch.items()}


def blank_modality(batch: dict[str, Any], key: str, absent: torch.Tensor) -> dict[str, Any]:
    """Return a copy of ``batch`` where modality ``key`` is marked absent and blanked for rows ``absent`` (B,).

    Images and waveforms become zeros, texts empty strings, vitals NaN (missing); ``present[key]`` is False.
    """
    out = dict(batch)
    absent = absent.bool().cpu()
    present = dict(out.get("present") or {})
    size = batch_length(batch)
    current = present.get(key, torch.ones(size, dtype=torch.bool))
    present[key] = current.bool().cpu() & ~absent
    out["present"] = present
    value = out.get(key)
    if isinstance(value, torch.Tensor):
        blanked = value.clone()
        fill = float("nan") if key == "vitals" else 0.0
        blanked[absent.to(blanked.device)] = fill
        out[key] = blanked
    elif isinstance(value, list):
        out[key] = ["" if bool(a) else v for v, a in zip(value, absent.tolist())]
    return out


def fixed_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """Return a bool mask ``(n,)`` with ``round(fraction * n)`` True rows drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(fraction * n))]] = True
    return mask


class RowSubset(Dataset):
    """The rows ``positions`` of a dataset (samples keep their original ``index``), with its collate."""

    def __init__(self, dataset: ManifestDataset, positions: Sequence[int]) -> None:
        self.dataset = dataset
        self.positions = [int(p) for p in positions]
        self.split = dataset.split
        self.config = dataset.config

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.positions[i]]

    def collate_fn(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return self.dataset.collate_fn(samples)


def spread_rows(n: int, limit: int | None) -> list[int]:
    """Return ``limit`` evenly spaced positions of ``n`` rows (all rows when ``limit`` is None or larger)."""
    if limit is None or limit >= n:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int)).tolist()
