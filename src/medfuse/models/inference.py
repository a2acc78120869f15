"""Running a model over batches: probabilities, embeddings, device moves. Shared by training, evaluation, serving."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values are left alone."""
    if torch.is_tensor(batch):
        nb = device.type == "cuda"
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=nb, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=nb)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_device(v, device, channels_last) for v in batch)
    return batch


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile / training wrappers (anything with a ``.model`` of a TaskModule)."""
    m = getattr(module, "_orig_mod", module)
    m = getattr(m, "module", m)
    inner = getattr(m, "model", None)
    return inner if isinstance(inner, nn.Module) and hasattr(m, "criterion") else m


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def probabilities(logits: Tensor, task: str, temperature: float = 1.0) -> Tensor:
    """Class/label probabilities from logits (divided by a fitted ``temperature`` first).

    multiclass: softmax (B, C); binary: (B,) positive-class sigmoid of a (B, 1) or (B,) logit;
    multilabel: sigmoid (B, K); regression: the raw outputs.
    """
    z = logits.float()
    if task == "regression":
        return z
    z = z / temperature
    if task == "multiclass":
        return z.softmax(-1)
    if task == "binary":
        return torch.sigmoid(z.reshape(z.shape[0], -1)[:, -1])
    return torch.sigmoid(z)


@dataclass
class Predictions:
    """Outputs of a classifier over a data set, in loader order.

    logits: (N, K) raw outputs; probs: (N, K) or (N,) for binary; labels: targets as the batches gave them;
    index: dataset positions; fused: (N, D) fused features (for probes and retrieval); batches hold string keys
    (patient ids, subgroups) gathered as lists.
    """

    logits: np.ndarray
    probs: np.ndarray
    labels: np.ndarray | None
    index: list[int]
    fused: np.ndarray | None
    meta: dict[str, list[Any]]


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[Mapping[str, Any]], task: str, *, temperature: float = 1.0,
            keep_fused: bool = False) -> Predictions:
    """Run a classifier (anything returning ``.logits``) over ``batches``; empty batches are skipped."""
    model = unwrap(model)
    device = model_device(model)
    was_training = model.training
    model.eval()
    logits, labels, fused, index = [], [], [], []
    meta: dict[str, list[Any]] = {}
    try:
        for batch in batches:
            if len(batch["index"]) == 0:
                continue
            batch = to_device(batch, device)
            out = model(batch)
            logits.append(out.logits.float().cpu())
            if "labels" in batch:
                labels.append(batch["labels"].cpu())
            if keep_fused and getattr(out, "fused", None) is not None:
                fused.append(out.fused.float().cpu())
            index.extend(int(i) for i in batch["index"])
            for key in ("patient_id", "text", "question", "answer", "answer_type"):
                if key in batch:
                    meta.setdefault(key, []).extend(batch[key])
            for col, values in batch.get("subgroups", {}).items():
                meta.setdefault(f"subgroup/{col}", []).extend(values)
    finally:
        model.train(was_training)
    z = torch.cat(logits) if logits else torch.zeros(0, 1)
    return Predictions(
        logits=z.numpy(),
        probs=probabilities(z, task, temperature).numpy(),
        labels=torch.cat(labels).numpy() if labels else None,
        index=index,
        fused=torch.cat(fused).numpy() if fused else None,
        meta=meta,
    )


@dataclass
class PairEmbeddings:
    """Normalised image and text embeddings of paired rows, with the texts and dataset positions."""

    image: Tensor
    text: Tensor
    texts: list[str]
    index: list[int]


@torch.no_grad()
def embed_pairs(model: nn.Module, batches: Iterable[Mapping[str, Any]]) -> PairEmbeddings:
    """Run a dual encoder (``.encode_image`` / ``.encode_text``) over paired batches."""
    model = unwrap(model)
    device = model_device(model)
    was_training = model.training
    model.eval()
    imgs, txts, texts, index = [], [], [], []
    try:
        for batch in batches:
            if len(batch["index"]) == 0:
                continue
            batch = to_device(batch, device)
            out = model(batch)
            imgs.append(F.normalize(out.image_embeds.float(), dim=-1).cpu())
            txts.append(F.normalize(out.text_embeds.float(), dim=-1).cpu())
            texts.extend(batch["text"])
            index.extend(int(i) for i in batch["index"])
    finally:
        model.train(was_training)
    return PairEmbeddings(torch.cat(imgs), torch.cat(txts), texts, index)


def text_groups(texts: list[str]) -> np.ndarray:
    """Group ids so that identical texts (after whitespace/case folding) count as one item in retrieval."""
    ids: dict[str, int] = {}
    return np.asarray([ids.setdefault(" ".join(t.lower().split()), len(ids)) for t in texts], dtype=np.int64)
