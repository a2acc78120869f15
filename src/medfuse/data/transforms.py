"""Image preparation and medical-sensible augmentation on tensors.

Preparation (once per image, cacheable): decoded float image -> square uint8 ``(C, S, S)`` by resizing the
shorter side to ``S`` and centre-cropping (``resize="crop"``) or resizing the whole image (``"squash"``).

Augmentation (training only) is one affine resampling per image with per-sample random parameters:
a random resized crop with a mild scale (0.85-1 of the area, aspect 0.9-1.1), a small rotation (+-7 deg)
and brightness/contrast jitter. There is NO horizontal flip by default: laterality carries diagnosis
(situs, the side of a lesion, the heart's position); ``hflip=True`` enables it where it does not matter.
The same code runs per sample (``pipeline(image)``) or on a whole uint8 batch (``pipeline.batch(images)``),
which is faster and lets workers ship uint8 instead of float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data
from torch import Tensor

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError

__all__ = ["Augment", "ImagePipeline", "prepare_image"]


@dataclass
class Augment:
    """Training augmentation settings (defaults are mild, for medical images).

    scale: range of the crop's area fraction; ratio: range of its aspect ratio; degrees: rotation range
    (+-); brightness/contrast: jitter strengths (factor drawn from ``1 +- value``); hflip: random
    horizontal flips (off by default: laterality matters).
    """

    scale: tuple[float, float] = (0.85, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)
    degrees: float = 7.0
    brightness: float = 0.1
    contrast: float = 0.1
    hflip: bool = False

    def __post_init__(self) -> None:
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        self.ratio = (float(self.ratio[0]), float(self.ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"augment.scale: need 0 < low <= high <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"augment.ratio: need 0 < low <= high, got {self.ratio}")
        for name in ("degrees", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name}: must be >= 0, got {getattr(self, name)}")
        if self.brightness >= 1 or self.contrast >= 1:
            raise ConfigError("augment.brightness/contrast: must be < 1 (factors are drawn from 1 +- value)")


def prepare_image(image: np.ndarray, size: int, *, channels: int, resize: str = "crop") -> np.ndarray:
    """Return a decoded float image ``(H, W)`` or ``(H, W, 3)`` in [0, 1] as uint8 ``(channels, size, size)``.

    ``resize="crop"`` scales the shorter side to ``size`` and centre-crops the longer one; ``"squash"``
    scales both sides to ``size``. A three-channel image whose channels are equal (greyscale stored as
    RGB) is resized once and repeated.
    """
    from medfuse.data.images import resize as resize_image
    from medfuse.data.images import to_channels, to_uint8

    check_choice("resize", resize, ("crop", "squash"))
    if image.ndim == 3 and (channels == 1 or _equal_planes(image)):
        image = image[..., 0] if channels == 3 else to_channels(image, 1)
    height, width = image.shape[:2]
    if resize == "squash":
        target = (size, size)
    else:
        short = min(height, width)
        target = (max(size, round(height * size / short)), max(size, round(width * size / short)))
    resized = resize_image(image, target)
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    pixels = to_uint8(resized[top : top + size, left : left + size])
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.broadcast_to(pixels, (channels, size, size)))
    return np.ascontiguousarray(np.moveaxis(pixels, -1, 0))


def _equal_planes(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]))


class ImagePipeline:
    """uint8 prepared images -> normalised float tensors, with training augmentation when ``augment`` is set.

    ``pipeline(image)``: ``(C, S, S)`` uint8 -> ``(C, S, S)`` float32. ``pipeline.batch(images)``:
    ``(B, C, S, S)`` uint8 -> ``(B, C, S, S)`` float32, each sample with its own random parameters.
    Random draws use ``generator`` when given, else torch's global generator (which DataLoader workers
    seed per worker from the loader's seed).
    """

    def __init__(self, mean: list[float], std: list[float], augment: Augment | None = None) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return one image ``(C, S, S)`` as a normalised float tensor."""
        return self.batch(image.unsqueeze(0), generator)[0]

    def batch(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a batch ``(B, C, S, S)`` (uint8, or float in [0, 1]) augmented (if set) and normalised.

        Works on any device (random parameters are drawn on the CPU); the input is never modified.
        Greyscale images stored as three equal planes (checked per image, on the CPU) are augmented as one
        plane and expanded by the normalisation: the same values for a third of the work. In a DataLoader
        worker the result is written straight into shared memory, so sending it to the main process copies
        nothing.
        """
        n = images.shape[0]
        draw = _draw_augment(n, self.augment, generator) if self.augment is not None and n > 0 else None
        scale = self.std.to(images.device).reciprocal()  # (x - mean) / std as one multiply-add
        shift = -self.mean.to(images.device) * scale
        shape = tuple(images.shape)
        grey = _grey_rows(images)
        if grey is None or not bool(grey.any()) or bool(grey.all()):
            planes = images[:, :1] if grey is not None and n and bool(grey.all()) else images
            x = self._augmented(planes, draw)
            return torch.addcmul(shift, x.expand(shape), scale, out=_output_buffer(x, shape))
        out = _output_buffer(images.new_empty(0, dtype=torch.float32), shape)
        for rows, planes in ((grey, images[:, :1]), (~grey, images)):
            index = rows.nonzero().flatten()
            x = self._augmented(planes[index], draw.rows(index) if draw is not None else None)
            out.index_copy_(0, index, torch.addcmul(shift, x.expand(len(index), *shape[1:]), scale))
        return out

    @staticmethod
    def _augmented(planes: Tensor, draw: _Draw | None) -> Tensor:
        """Return ``planes`` as a new float32 tensor in [0, 1], augmented with ``draw`` when given."""
        if planes.dtype == torch.uint8:
            x = planes.to(torch.float32).div_(255.0)
        else:
            x = planes.to(torch.float32, copy=True)
        return _apply_augment(x, draw) if draw is not None and x.shape[0] > 0 else x

    def denormalize(self, images: Tensor) -> Tensor:
        """Return normalised images ``(B, C, H, W)`` back in [0, 1] (for display)."""
        return (images * self.std.to(images.device) + self.mean.to(images.device)).clamp_(0.0, 1.0)


def _grey_rows(images: Tensor) -> Tensor | None:
    """Return ``(B,)`` True where a CPU batch ``(B, 3, H, W)`` holds greyscale as three equal planes (else None)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.device.type != "cpu":
        return None
    same = (images[:, 0] == images[:, 1]) & (images[:, 0] == images[:, 2])
    return same.flatten(1).all(dim=1)


def _output_buffer(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Return where the normalised batch goes: ``x`` itself (a float32 buffer of ours) when it has ``shape``,
    else a new float32 tensor; inside a DataLoader worker always new, in shared memory (as ``default_collate``)."""
    if x.device.type == "cpu" and torch.utils.data.get_worker_info() is not None:
        storage = torch.empty(0)._typed_storage()._new_shared(math.prod(shape), device=x.device)
        return torch.empty(0).new(storage).view(shape)
    if tuple(x.shape) == shape:
        return x
    return torch.empty(shape, dtype=torch.float32, device=x.device)


@dataclass
class _Draw:
    """The per-sample random parameters of one batch: affine ``theta`` ``(B, 2, 3)``, jitter ``(B,)`` or None."""

    theta: Tensor
    gain: Tensor | None = None
    contrast: Tensor | None = None

    def rows(self, index: Tensor) -> _Draw:
        """Return the parameters of the samples at ``index``."""
        return _Draw(self.theta[index], None if self.gain is None else self.gain[index],
                     None if self.contrast is None else self.contrast[index])


def _draw_augment(n: int, augment: Augment, generator: torch.Generator | None) -> _Draw:
    """Return the random parameters of ``n`` samples (always drawn in this order: affine, gain, contrast)."""
    theta = random_affine(n, augment, generator)
    if augment.brightness == 0 and augment.contrast == 0:
        return _Draw(theta)
    gain = 1.0 + (2 * _rand(n, generator) - 1) * augment.brightness
    contrast = 1.0 + (2 * _rand(n, generator) - 1) * augment.contrast
    return _Draw(theta, gain, contrast)


def augment_batch(images: Tensor, augment: Augment, generator: torch.Generator | None = None) -> Tensor:
    """Return ``images`` ``(B, C, H, W)`` float in [0, 1] augmented per sample; same shape, in [0, 1].

    The geometric part resamples into a new tensor; brightness/contrast then work in place on it (or on
    ``images`` itself when the geometry is the identity).
    """
    return _apply_augment(images, _draw_augment(images.shape[0], augment, generator))


def _apply_augment(images: Tensor, draw: _Draw) -> Tensor:
    """Return ``images`` ``(B, C, H, W)`` float in [0, 1] resampled and jittered with ``draw``'s parameters."""
    b = images.shape[0]
    if not torch.equal(draw.theta, _identity(b)):
        grid = affine_grid(draw.theta.to(images.device), images.shape[-2], images.shape[-1])
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if draw.gain is None or draw.contrast is None:
        return images.clamp_(0.0, 1.0)
    # brightness b then contrast c around the image mean m: y = c * (b x - b m) + b m = (c b) x + (1 - c) b m
    mean = images.mean(dim=(1, 2, 3))  # stays on the images' device: no wait for it on a GPU
    scale = (draw.contrast * draw.gain).to(images.device).view(b, 1, 1, 1)
    shift = (((1.0 - draw.contrast) * draw.gain).to(images.device) * mean).view(b, 1, 1, 1)
    return images.mul_(scale).add_(shift).clamp_(0.0, 1.0)


def random_affine(n: int, augment: Augment, generator: torch.Generator | None = None) -> Tensor:
    """Return ``(n, 2, 3)`` affine matrices (output -> input normalised coordinates) for ``F.affine_grid``.

    Each combines a crop of area ``s`` (``augment.scale``) and aspect ``r`` (``augment.ratio``, sampled
    log-uniformly) at a random position fully inside the image, a rotation within ``+-degrees``, and
    (with ``hflip``) a flip with probability 1/2.
    """
    lo, hi = augment.scale
    area = lo + (hi - lo) * _rand(n, generator)
    log_r = math.log(augment.ratio[0]) + (math.log(augment.ratio[1]) - math.log(augment.ratio[0])) * _rand(n, generator)
    aspect = torch.exp(log_r)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * _rand(n, generator) - 1) * (1 - width)
    cy = (2 * _rand(n, generator) - 1) * (1 - height)
    angle = (2 * _rand(n, generator) - 1) * math.radians(augment.degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * cos
    theta[:, 0, 1] = -width * sin
    theta[:, 0, 2] = cx
    theta[:, 1, 0] = height * sin
    theta[:, 1, 1] = height * cos
    theta[:, 1, 2] = cy
    if augment.hflip:
        flip = _rand(n, generator) < 0.5
        theta[flip, :, 0] *= -1
    return theta


def affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """Return the sampling grid ``(B, H, W, 2)`` of ``theta`` ``(B, 2, 3)``, as ``F.affine_grid(align_corners=False)``.

    Each coordinate is a column term ``(B, 1, W)`` plus a row term ``(B, H, 1)``, added once into the grid
    (on ``theta``'s device): on a CPU an order of magnitude faster than ``F.affine_grid``'s batched product.
    """
    xs = (torch.arange(width, dtype=theta.dtype, device=theta.device) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=theta.dtype, device=theta.device) * 2 + 1) / height - 1
    grid = torch.empty(theta.shape[0], height, width, 2, dtype=theta.dtype, device=theta.device)
    for axis in range(2):
        columns = theta[:, axis, 0, None, None] * xs.view(1, 1, width)
        rows = theta[:, axis, 1, None, None] * ys.view(1, height, 1) + theta[:, axis, 2, None, None]
        torch.add(columns, rows, out=grid[..., axis])
    return grid


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator)


def _identity(n: int) -> Tensor:
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
