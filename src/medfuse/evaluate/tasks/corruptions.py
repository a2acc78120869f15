"""Input corruptions at five severities: image noise, blur, contrast and JPEG; text typos and dropped sentences.

Image corruptions follow ImageNet-C (Hendrycks & Dietterich 2019, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR) with its severity constants; blur widths are
given at 224 px and scaled to the image side. They act on images in [0, 1] ``(B, C, H, W)``; text
corruptions act on strings. Every draw comes from the generator passed in, so a corruption is a pure
function of its inputs and that generator.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medfuse.core.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)  # ImageNet-C gaussian_noise
BLUR_SIGMA_224 = (1.0, 2.0, 3.0, 4.0, 6.0)  # ImageNet-C gaussian_blur, in pixels at 224 px
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # ImageNet-C contrast
JPEG_QUALITY = (25, 18, 15, 10, 7)  # ImageNet-C jpeg_compression
TYPO_RATE = (0.02, 0.05, 0.1, 0.15, 0.2)  # share of letters hit by a typo
DROP_RATE = (0.1, 0.2, 0.35, 0.5, 0.7)  # share of sentences dropped

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _level(values: tuple, severity: int) -> float:
    if severity not in SEVERITIES:
        raise ConfigError(f"severity: expected one of {SEVERITIES}, got {severity!r}")
    return values[severity - 1]


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Return ``images + N(0, s^2)`` clipped to [0, 1]."""
    std = _level(NOISE_STD, severity)
    noise = torch.randn(images.shape, generator=generator, dtype=torch.float32).to(images.device)
    return (images + std * noise).clamp(0.0, 1.0)


def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Return the images blurred by a Gaussian of ImageNet-C's width scaled to the image side."""
    del generator
    sigma = _level(BLUR_SIGMA_224, severity) * images.shape[-1] / 224.0
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    pad = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    out = F.pad(images, (pad, pad, pad, pad), mode="reflect") if pad > 0 else images
    if pad < radius:  # a tiny image: pad the rest with edge values
        extra = radius - pad
        out = F.pad(out, (extra, extra, extra, extra), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return out.clamp(0.0, 1.0)


def contrast(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Return the images with contrast around each image's mean scaled by c."""
    del generator
    c = _level(CONTRAST, severity)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * c + mean).clamp(0.0, 1.0)


def jpeg(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Return the images after a JPEG round trip at ImageNet-C's quality."""
    from PIL import Image

    del generator
    quality = int(_level(JPEG_QUALITY, severity))
    out = []
    for image in images.detach().cpu():
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        grey = pixels.shape[2] == 1
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if grey else pixels, "L" if grey else "RGB").save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255.0
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


def typos(text: str, severity: int, rng: np.random.Generator) -> str:
    """Return ``text`` with a share of its letters swapped, dropped, replaced or doubled."""
    rate = _level(TYPO_RATE, severity)
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        ch = chars[i]
        if ch.isalpha() and rng.random() < rate:
            kind = int(rng.integers(4))
            if kind == 0 and i + 1 < len(chars):  # swap with the next character
                out += [chars[i + 1], ch]
                i += 2
                continue
            if kind == 1:  # drop
                i += 1
                continue
            if kind == 2:  # substitute
                letter = _LETTERS[int(rng.integers(len(_LETTERS)))]
                out.append(letter.upper() if ch.isupper() else letter)
            else:  # double
                out += [ch, ch]
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def dropped_sentences(text: str, severity: int, rng: np.random.Generator) -> str:
    """Return ``text`` without a share of its sentences (each dropped independently)."""
    rate = _level(DROP_RATE, severity)
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    kept = [s for s in sentences if rng.random() >= rate]
    return " ".join(kept)


IMAGE_CORRUPTIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "gaussian_noise": gaussian_noise, "blur": gaussian_blur, "contrast": contrast, "jpeg": jpeg,
}
TEXT_CORRUPTIONS: dict[str, Callable[[str, int, np.random.Generator], str]] = {
    "typos": typos, "dropped_sentences": dropped_sentences,
}
