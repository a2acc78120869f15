"""Pictures of saliency: a jet-like colour map, heat maps laid over images, PNG as base64 text."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def jet(values: np.ndarray) -> np.ndarray:
    """Return jet-like RGB colours ``(..., 3)`` in [0, 1] for ``values`` in [0, 1] (blue, cyan, yellow, red)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # red, green, blue peak positions
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay(image: np.ndarray | Tensor, cam: np.ndarray | Tensor, *, alpha: float = 0.45) -> np.ndarray:
    """Return the image with the heat map laid over it as uint8 RGB ``(H, W, 3)``.

    image: (H, W) or (H, W, 3) floats in [0, 1]; cam: (h, w), bilinearly resized to (H, W) and scaled to
    [0, 1] by its range; alpha: weight of the heat map.
    """
    picture = torch.as_tensor(np.asarray(image, dtype=np.float32) if not isinstance(image, Tensor) else image).float()
    if picture.dim() == 2:
        picture = picture[..., None].expand(-1, -1, 3)
    if picture.dim() != 3 or picture.shape[-1] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got {tuple(picture.shape)}")
    heat = torch.as_tensor(np.asarray(cam, dtype=np.float32) if not isinstance(cam, Tensor) else cam).float()
    if heat.dim() != 2:
        raise ValueError(f"cam must be (h, w), got {tuple(heat.shape)}")
    height, width = picture.shape[:2]
    heat = F.interpolate(heat[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    blended = (1 - alpha) * picture.clamp(0, 1).numpy() + alpha * jet(heat.numpy())
    return np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)


def png_base64(array: np.ndarray | Tensor) -> str:
    """Return base64 PNG text of an image: uint8 or [0, 1] floats, (H, W), (H, W, 3) or (H, W, 4)."""
    from PIL import Image

    data = np.asarray(array.detach().cpu() if isinstance(array, Tensor) else array)
    if data.dtype != np.uint8:
        data = np.round(np.clip(data.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise ValueError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got {data.shape}")
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["jet", "overlay", "png_base64"]
