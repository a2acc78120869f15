"""Dual-encoder embeddings of a split's images and texts, cached on the evaluation context."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from medfuse.core import progress
from medfuse.data import ManifestDataset
from medfuse.evaluate.tasks.base import EvalContext, TaskSkipped
from medfuse.models.inference import PairEmbeddings, embed_pairs, unwrap


def _require_dual(ctx: EvalContext, what: str) -> None:
    if ctx.kind != "dual_encoder":
        raise TaskSkipped(f"{what} needs a dual encoder (image and text towers); this is a {ctx.kind} model")


@torch.no_grad()
def image_embeddings(ctx: EvalContext, dataset: ManifestDataset | None = None) -> tuple[Tensor, list[int]]:
    """Return L2-normalised image embeddings ``(N, E)`` (CPU, float32) and their dataset positions."""
    _require_dual(ctx, "image embeddings")
    ds = dataset if dataset is not None else ctx.dataset
    key = f"image_embeddings/{ds.split}/{id(ds)}"
    if key in ctx.cache:
        return ctx.cache[key]
    if not ds.config.image:
        raise TaskSkipped("the data config names no image column")
    model = unwrap(ctx.model)
    image_key = getattr(model, "image_key", "image")
    encode = cast(Callable[..., Tensor], model.encode_image)
    chunks: list[Tensor] = []
    index: list[int] = []
    with progress.task(f"embedding images ({ds.split or 'all'})", total=None) as bar:
        for batch in ctx.batches(ds):
            images = batch[image_key].to(ctx.device)
            chunks.append(F.normalize(encode(images).float(), dim=-1).cpu())
            index.extend(int(i) for i in batch["index"])
            bar.update(len(batch["index"]))
    emb = torch.cat(chunks) if chunks else torch.zeros(0, getattr(model, "embed_dim", 1))
    ctx.cache[key] = (emb, index)
    return emb, index


@torch.no_grad()
def encode_texts(model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> Tensor:
    """Return L2-normalised text embeddings ``(T, E)`` (CPU, float32) of ``texts`` from a dual encoder."""
    inner = unwrap(model)
    encode = cast(Callable[..., Tensor], inner.encode_text)
    chunks = [F.normalize(encode(list(texts[i : i + batch_size])).float(), dim=-1).cpu()
              for i in range(0, len(texts), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, getattr(inner, "embed_dim", 1))


def text_embeddings(ctx: EvalContext, texts: Sequence[str], batch_size: int | None = None) -> Tensor:
    """Return L2-normalised text embeddings ``(T, E)`` (CPU, float32) of ``texts``, in order."""
    _require_dual(ctx, "text embeddings")
    return encode_texts(ctx.model, texts, batch_size or ctx.config.batch_size)


def pair_embeddings(ctx: EvalContext) -> PairEmbeddings:
    """Return (and cache) the paired image and text embeddings of the evaluated split."""
    _require_dual(ctx, "retrieval")
    if "pairs" not in ctx.cache:
        if not ctx.dataset.config.text_columns or not ctx.dataset.config.image:
            raise TaskSkipped("retrieval needs image and text columns in the data config")
        ctx.cache["pairs"] = embed_pairs(ctx.model, ctx.batches())
    return ctx.cache["pairs"]


def logit_scale(model: torch.nn.Module) -> float:
    """Return a dual encoder's multiplicative logit scale (1 when it has none)."""
    scale = getattr(unwrap(model), "scale", None)
    if not callable(scale):
        return 1.0
    with torch.no_grad():
        return float(scale())
