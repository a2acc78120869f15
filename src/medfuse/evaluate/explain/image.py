"""Saliency for image towers: Grad-CAM for timm CNNs, attention rollout for timm ViTs, report galleries."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medfuse.evaluate.explain._common import Target, eval_mode, pick_target
from medfuse.evaluate.explain.visual import overlay, png_base64
from medfuse.models.diagnosis import DiagnosisModel
from medfuse.models.encoders.image import TimmImageEncoder


@dataclass
class SaliencyMap:
    """Saliency of a batch of images.

    maps: (B, h, w) in [0, 1] on the feature grid (Grad-CAM: each map divided by its maximum).
    target: (B,) class index explained; score: (B,) that class's logit (NaN where not computed).
    """

    maps: Tensor
    target: Tensor
    score: Tensor


@dataclass
class Rollout:
    """Attention rollout of a ViT. joint: (B, N, N) row-stochastic; maps: (B, h, w) the class token's
    (or, without prefix tokens, the mean query's) share of attention on each patch; prefix_tokens: count."""

    joint: Tensor
    maps: Tensor
    prefix_tokens: int



def _image_scorer(model: nn.Module, inputs: Any, encoder: str) -> tuple[Tensor, Callable[[Tensor], Tensor], Any]:
    """Return the images, a function images -> logits (B, K) and the timm backbone holding the feature map."""
    if isinstance(model, DiagnosisModel):
        if not isinstance(inputs, Mapping):
            raise TypeError("a DiagnosisModel is explained on a batch mapping, e.g. {'image': images}")
        tower = model.named_encoders().get(encoder)
        if not isinstance(tower, TimmImageEncoder):
            raise ValueError(f"encoder '{encoder}' is not a timm image encoder; encoders: {sorted(model.encoders)}")
        key = model.inputs[encoder]
        # every sample keeps its own feature map: no encoding shared between rows of the same file
        return inputs[key], lambda images: model({**inputs, key: images, f"{key}_key": None}).logits, tower.model
    if isinstance(model, TimmImageEncoder):
        return inputs, model.logits, model.model
    if hasattr(model, "forward_features"):
        return inputs, model, model
    raise TypeError(f"cannot explain a {type(model).__name__}: give a DiagnosisModel, TimmImageEncoder or timm model")


@contextmanager
def _capture(backbone: Any, target_layer: str | nn.Module | None) -> Iterator[dict[str, Tensor]]:
    """Record the feature map: ``forward_features``' output, or the output of ``target_layer``."""
    store: dict[str, Tensor] = {}
    if target_layer is not None:
        module = backbone.get_submodule(target_layer) if isinstance(target_layer, str) else target_layer
        handle = module.register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out))
        try:
            yield store
        finally:
            handle.remove()
        return
    original = backbone.forward_features

    def recorded(images: Tensor) -> Tensor:
        store["act"] = original(images)
        return store["act"]

    # shadow the bound method on this instance only; deleting the attribute restores the class's method
    backbone.forward_features = recorded
    try:
        yield store
    finally:
        del backbone.forward_features


def grad_cam(model: nn.Module, inputs: Any, *, target: Target = None,
             encoder: str = "image", target_layer: str | nn.Module | None = None) -> SaliencyMap:
    """Return Grad-CAM maps ``(B, h, w)`` of a timm CNN for the ``target`` class logit.

    model: a :class:`DiagnosisModel` (``inputs`` is its batch; ``encoder`` names the image tower), a
    :class:`TimmImageEncoder` with a classifier, or a timm model (``inputs`` are images ``(B, C, H, W)``).
    target: class index (one, or one per sample); None explains each sample's top class.
    target_layer: module (or its name inside the timm model) whose output is the feature map; default the
    output of ``forward_features``, the last convolutional map before pooling.
    """
    images, score_fn, backbone = _image_scorer(model, inputs, encoder)
    images = images.detach().clone().requires_grad_(True)  # gradients flow even through frozen weights
    with eval_mode(model), torch.enable_grad(), _capture(backbone, target_layer) as store:
        logits = score_fn(images)
        act = store.get("act")
        if act is None:
            raise RuntimeError("the feature map was not recorded: the forward pass never reached it")
        if act.dim() != 4:
            raise ValueError(f"feature map of shape {tuple(act.shape)} is not spatial (B, C, H, W); "
                             "for vision transformers use attention_rollout")
        chosen = pick_target(logits.detach(), target)
        score = logits.gather(1, chosen[:, None]).squeeze(1)
        grads = torch.autograd.grad(score.sum(), act)[0]
    if str(getattr(getattr(backbone, "output_fmt", "NCHW"), "value", "NCHW")).upper() == "NHWC" and target_layer is None:
        act, grads = act.permute(0, 3, 1, 2), grads.permute(0, 3, 1, 2)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(1)).detach().float()
    cam = cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return SaliencyMap(maps=cam, target=chosen, score=score.detach().float())


def attention_rollout(model: nn.Module, images: Any, *, encoder: str = "image", head_fusion: str = "mean") -> Rollout:
    """Return the attention rollout of a timm ViT tower (``images`` ``(B, C, H, W)``, or a batch for a DiagnosisModel).

    Attention probabilities are recomputed from each block's ``attn.qkv`` output (timm runs fused
    attention, which never materialises them): ``softmax(q_norm(q) k_norm(k)^T * scale)`` per head.
    head_fusion: ``mean`` (Abnar & Zuidema), ``max`` or ``min`` over heads.
    """
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
    if isinstance(model, DiagnosisModel):
        pixels, tower = images[model.inputs[encoder]], model.encoders[encoder]
    else:
        pixels, tower = images, model
    backbone: Any = tower.model if isinstance(tower, TimmImageEncoder) else tower
    blocks = getattr(backbone, "blocks", None)
    if blocks is None or not all(hasattr(getattr(b, "attn", None), "qkv") for b in blocks):
        raise ValueError(f"{type(backbone).__name__} has no transformer blocks with attn.qkv; use grad_cam for CNNs")
    qkv_out: list[Tensor] = []
    handles = [b.attn.qkv.register_forward_hook(lambda _m, _i, out: qkv_out.append(out)) for b in blocks]
    try:
        with eval_mode(model), torch.no_grad():
            backbone.forward_features(pixels)
    finally:
        for handle in handles:
            handle.remove()
    joint: Tensor | None = None
    for block, out in zip(blocks, qkv_out):
        attn = block.attn
        size, length, _ = out.shape
        q, k, _v = out.reshape(size, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).float().softmax(-1)  # (B, H, N, N)
        fused = {"mean": probs.mean(1), "max": probs.amax(1), "min": probs.amin(1)}[head_fusion]
        step = 0.5 * fused + 0.5 * torch.eye(length, device=fused.device)
        step = step / step.sum(-1, keepdim=True)
        joint = step if joint is None else step @ joint
    assert joint is not None
    prefix = int(getattr(backbone, "num_prefix_tokens", 1 if getattr(backbone, "cls_token", None) is not None else 0))
    patches = joint.shape[-1] - prefix
    grid = tuple(getattr(getattr(backbone, "patch_embed", None), "grid_size", ()) or ())
    if len(grid) != 2 or grid[0] * grid[1] != patches:
        side = math.isqrt(patches)
        grid = (side, patches // side) if side * (patches // side) == patches else (1, patches)
    share = joint[:, 0, prefix:] if prefix else joint.mean(1)
    return Rollout(joint=joint, maps=share.reshape(-1, int(grid[0]), int(grid[1])), prefix_tokens=prefix)


def _take(value: Any, count: int) -> Any:
    """Return the first ``count`` samples of a (nested) batch value; other values unchanged."""
    if isinstance(value, Tensor):
        return value[:count] if value.dim() > 0 else value
    if isinstance(value, (list, tuple)):
        return value[:count]
    if isinstance(value, Mapping):
        return {k: _take(v, count) for k, v in value.items()}
    return value


def _display(image: Tensor, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Return a normalised ``(C, H, W)`` image as ``(H, W)`` or ``(H, W, 3)`` in [0, 1] for viewing."""
    channels = image.shape[0]
    mean = torch.as_tensor(preprocessing.get("mean", [0.0] * channels), dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(preprocessing.get("std", [1.0] * channels), dtype=torch.float32).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    return pixels[0].numpy() if channels == 1 else pixels[:3].permute(1, 2, 0).numpy()


def saliency_gallery(model: DiagnosisModel, batch: Mapping[str, Any], *, encoder: str = "image",
                     class_names: Sequence[str] | None = None, titles: Sequence[str] | None = None,
                     target: Target = None, limit: int = 8) -> list[dict[str, Any]]:
    """Return report gallery entries (``title``, ``image_png``, ``overlay_png``, ``label``, ``prob``, ``method``).

    CNN towers are explained with :func:`grad_cam`, ViT towers with :func:`attention_rollout`; at most
    ``limit`` samples from the front of the batch. ``prob`` is the head's probability of the explained class.
    """
    batch = _take(batch, limit)
    tower = model.encoders[encoder]
    if not isinstance(tower, TimmImageEncoder):
        raise ValueError(f"encoder '{encoder}' is not a timm image encoder")
    with eval_mode(model), torch.no_grad():
        logits = model(batch).logits.float()
    chosen = pick_target(logits, target)
    if hasattr(tower.model, "blocks") and hasattr(tower.model, "patch_embed"):
        maps, method = attention_rollout(model, batch, encoder=encoder).maps, "attention rollout"
    else:
        maps, method = grad_cam(model, batch, target=chosen, encoder=encoder).maps, "grad-cam"
    activation = getattr(model.head, "activation", "identity")
    if activation == "softmax":
        probs = logits.softmax(-1)
    elif activation == "sigmoid":
        probs = torch.sigmoid(logits)
    else:
        probs = torch.full_like(logits, float("nan"))
    images = batch[model.inputs[encoder]]
    entries = []
    for i in range(images.shape[0]):
        picture = _display(images[i], tower.preprocessing)
        k = int(chosen[i])
        entries.append({
            "title": titles[i] if titles is not None and i < len(titles) else f"sample {i}",
            "image_png": png_base64(picture),
            "overlay_png": png_base64(overlay(picture, maps[i].cpu())),
            "label": class_names[k] if class_names is not None and k < len(class_names) else str(k),
            "prob": float(probs[i, k]),
            "method": method,
        })
    return entries


__all__ = ["Rollout", "SaliencyMap", "attention_rollout", "grad_cam", "saliency_gallery"]
