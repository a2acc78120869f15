"""Batches for the batch contract (:mod:`medfuse.models.base`) and reproducible DataLoaders.

:class:`Collate` stacks samples of :class:`~medfuse.data.dataset.ManifestDataset` into::

    index       (B,) int64 positions in the dataset      line   (B,) int64 manifest lines
    patient_id  list[str]
    image       (B, C, S, S) float32, normalised (zeros where absent)
    image_key   (B,) int64: equal for samples of the same image file (-1 where absent)
    text        list[str]                                 vitals (B, F) float32, NaN = missing
    audio       (B, W, T) float32 windows, zero-padded;   audio_mask (B, W) bool, True for real windows
    signal      (B, C, T) float32 waveforms (zero-padded to the longest in the batch)
    video       (B, T, C, S, S) float32, normalised
    labels      (B,) int64 class index (-100 = missing) | (B, K) float32 multi-hot | (B,) float32 numbers
    question / answer / answer_type   list[str]
    subgroups   {column: list[str]}                       present {modality: (B,) bool}

With ``Collate(defer=True)`` (dataset ``batch_transforms="device"``) ``image`` stays uint8 until
:func:`finish_images` runs, typically on the GPU. Failed samples (markers with a ``failed`` key) are dropped; a batch whose samples all failed has only an
empty ``index`` (consumers skip batches with ``len(batch["index"]) == 0``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from medfuse.data.transforms import ImagePipeline

__all__ = ["Collate", "build_loader", "collate", "finish_images", "seed_worker"]

_STRING_KEYS = ("patient_id", "text", "question", "answer", "answer_type")


class Collate:
    """Callable that turns samples into a batch; with a ``pipeline``, uint8 images are augmented/normalised here.

    ``generator`` (optional) drives the batch augmentation's random draws (else torch's global generator).
    ``defer=True`` leaves uint8 images in the batch for :func:`finish_images` to transform later, e.g. on
    the GPU after the transfer (a quarter of the bytes to move, and the augmentation runs on the device).
    """

    def __init__(
        self, pipeline: ImagePipeline | None = None, generator: torch.Generator | None = None, *, defer: bool = False
    ) -> None:
        self.pipeline = pipeline
        self.generator = generator
        self.defer = defer

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Return the batch of the samples that loaded (see the module docstring for keys and shapes)."""
        kept = [s for s in samples if "failed" not in s]
        batch: dict[str, Any] = {"index": torch.tensor([int(s["index"]) for s in kept], dtype=torch.int64)}
        if not kept:
            return batch
        first = kept[0]
        batch["line"] = torch.tensor([int(s.get("line", -1)) for s in kept], dtype=torch.int64)
        present = {m: torch.tensor([bool(s["present"].get(m, False)) for s in kept], dtype=torch.bool)
                   for m in first.get("present", {})}
        if present:
            batch["present"] = present
        if "image" in first:
            # a batch sent as it is (uint8 for the device, or float) goes straight into shared memory
            sent_as_is = self.defer or first["image"].dtype != torch.uint8
            batch["image"] = _stack([s["image"] for s in kept], shared=sent_as_is)
            if not self.defer:
                finish_images(batch, self.pipeline, self.generator)
            if "image_key" in first:
                batch["image_key"] = torch.tensor([int(s["image_key"]) for s in kept], dtype=torch.int64)
        for key in _STRING_KEYS:
            if key in first:
                batch[key] = [str(s[key]) for s in kept]
        if "vitals" in first:
            batch["vitals"] = torch.stack([s["vitals"] for s in kept]).float()
        if "audio" in first:
            batch["audio"], batch["audio_mask"] = _pad_windows([s["audio"] for s in kept])
        if "signal" in first:
            batch["signal"] = _pad_windows([s["signal"] for s in kept])[0]
        if "video" in first:
            batch["video"] = torch.stack([s["video"] for s in kept]).float()
        if "labels" in first:
            batch["labels"] = _stack_labels([s["labels"] for s in kept])
        if "subgroups" in first:
            batch["subgroups"] = {c: [s["subgroups"][c] for s in kept] for c in first["subgroups"]}
        return batch


def finish_images(
    batch: dict[str, Any], pipeline: ImagePipeline | None = None, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Return ``batch`` with uint8 ``image`` ``(B, C, S, S)`` augmented/normalised by ``pipeline`` (in place).

    Runs on the images' device. Absent images (``present["image"]`` False) become zeros. Float images
    are left as they are; without a pipeline, ImageNet statistics normalise.
    """
    images = batch.get("image")
    if images is None or images.dtype != torch.uint8:
        return batch
    pipeline = pipeline or _default_pipeline(images.shape[1])
    images = pipeline.batch(images, generator)
    present = batch.get("present", {}).get("image")
    if present is not None and present.device.type != "cpu":
        images.mul_(present.to(images.dtype).view(-1, *([1] * (images.ndim - 1))))  # no host read on a GPU
    elif present is not None and not bool(present.all()):
        images[~present.to(images.device)] = 0.0
    batch["image"] = images
    return batch


def _stack(tensors: list[Tensor], shared: bool) -> Tensor:
    """Return ``torch.stack(tensors)``; with ``shared`` inside a DataLoader worker, stacked into shared memory,
    as ``default_collate`` does, so sending the batch to the main process copies nothing."""
    out = None
    if shared and torch.utils.data.get_worker_info() is not None:
        first = tensors[0]
        storage = first._typed_storage()._new_shared(first.numel() * len(tensors), device=first.device)
        out = first.new(storage).resize_(len(tensors), *first.shape)
    return torch.stack(tensors, 0, out=out)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the batch of ``samples`` with the default settings (see :class:`Collate`)."""
    return Collate()(samples)


def _default_pipeline(channels: int) -> ImagePipeline:
    mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if channels == 3 else ([0.449], [0.226])
    return ImagePipeline(mean, std)


def _stack_labels(values: list[Any]) -> Tensor:
    if isinstance(values[0], Tensor):
        return torch.stack(values).float()
    if isinstance(values[0], (int, np.integer)) and not isinstance(values[0], bool):
        return torch.tensor([int(v) for v in values], dtype=torch.int64)
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def _pad_windows(clips: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Return ``(B, W, T)`` zero-padded ``(W, T)`` arrays (windows, or leads) and the ``(B, W)`` mask of real rows."""
    clips = [c if c.ndim == 2 else c.reshape(1, -1) for c in clips]
    n_windows = max(c.shape[0] for c in clips) or 1
    length = max(c.shape[1] for c in clips) or 1
    out = torch.zeros(len(clips), n_windows, length, dtype=torch.float32)
    mask = torch.zeros(len(clips), n_windows, dtype=torch.bool)
    for i, c in enumerate(clips):
        out[i, : c.shape[0], : c.shape[1]] = c
        mask[i, : c.shape[0]] = True
    return out, mask


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` in a worker from its torch seed.

    Torch seeds each worker from the loader's generator (``base_seed + worker_id``); numpy and ``random``
    are seeded from that, so augmentation in workers is reproducible for a given loader seed.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    *,
    sampler: Sampler | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """Return a DataLoader whose order and worker augmentation depend only on ``seed``.

    Shuffling uses a ``torch.Generator`` seeded with ``seed``; workers are seeded by :func:`seed_worker`.
    With ``num_workers=0``, per-sample augmentation draws from torch's global generator in this process:
    seed it at the entry point (``medfuse.core.seed.seed_everything``) for identical runs. The dataset's
    ``collate_fn`` is used when it has one (:class:`ManifestDataset` does), else :func:`collate`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=getattr(dataset, "collate_fn", None) or collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        **kwargs,
    )
