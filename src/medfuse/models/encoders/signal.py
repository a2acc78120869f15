"""Encoders of tabular vitals/labs ``(B, F)`` and waveforms ``(B, C, T)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput
from medfuse.models.encoders.text import TransformerBlock, run_blocks


def _positive(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: expected an integer >= 1, got {value!r}")
    return value


@ENCODERS.register("vitals_mlp")
class VitalsMLPEncoder(Encoder):
    """MLP over tabular vitals/labs with missing values: ``(B, F)`` (NaN = missing) -> ``(B, D)``.

    Each feature is standardised with stored statistics (``mean``/``std`` buffers, set from training data
    by :meth:`fit_stats`), a missing value is imputed by 0 (the training mean) and a 0/1 missing indicator
    per feature is appended, so the network sees ``[z_1..z_F, m_1..m_F]`` (Lipton et al., "Directly Modeling
    Missing Data in Sequences with RNNs", MLHC 2016: indicators carry information imputation hides).

    Args:
        num_features: ``F``.
        hidden: sizes of the hidden layers.
        dim: output size ``D``.
        dropout: dropout after each hidden layer.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        num_features: int,
        *,
        hidden: Sequence[int] = (128,),
        dim: int = 128,
        dropout: float = 0.0,
        modality: str = "vitals",
    ) -> None:
        super().__init__()
        _positive("num_features", num_features)
        _positive("dim", dim)
        self.num_features = num_features
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        layers: list[nn.Module] = []
        width = 2 * num_features
        for i, size in enumerate(hidden):
            _positive(f"hidden[{i}]", size)
            layers += [nn.Linear(width, size), nn.GELU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)
        self.output_dim = dim
        self.token_dim = dim
        self.modality = modality
        self.preprocessing: dict[str, Any] = {"num_features": num_features, "missing": "NaN"}

    @torch.no_grad()
    def fit_stats(self, values: Tensor) -> None:
        """Set the per-feature mean/std buffers from training data ``(N, F)``, ignoring NaN.

        A feature never observed keeps mean 0 / std 1; a constant one gets std 1 (no division by zero).
        """
        if values.dim() != 2 or values.shape[1] != self.num_features:
            raise ValueError(f"values must be (N, {self.num_features}), got {tuple(values.shape)}")
        values = values.to(self.mean.device, torch.float32)
        seen = ~torch.isnan(values)
        count = seen.sum(0)
        filled = torch.where(seen, values, torch.zeros_like(values))
        mean = filled.sum(0) / count.clamp_min(1)
        var = (torch.where(seen, values - mean, torch.zeros_like(values)) ** 2).sum(0) / (count - 1).clamp_min(1)
        std = var.sqrt()
        self.mean.copy_(torch.where(count > 0, mean, torch.zeros_like(mean)))
        self.std.copy_(torch.where((count > 1) & (std > 1e-8), std, torch.ones_like(std)))

    def prepare(self, values: Tensor) -> Tensor:
        """Return ``(B, 2F)``: standardised values with missing set to 0, then the missing indicators."""
        if values.dim() != 2 or values.shape[1] != self.num_features:
            raise ValueError(f"vitals must be (B, {self.num_features}), got {tuple(values.shape)}")
        missing = torch.isnan(values)
        z = (values - self.mean) / self.std
        z = torch.where(missing, torch.zeros_like(z), z)
        return torch.cat([z, missing.to(z.dtype)], dim=1)

    def forward(self, values: Tensor) -> EncoderOutput:
        """Return pooled ``(B, D)`` features (no tokens)."""
        return EncoderOutput(pooled=self.mlp(self.prepare(values)))


class _ResBlock1d(nn.Module):
    """Two ``k``-wide convolutions with batch norm and an identity (or 1x1 strided) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        """Return ``(B, C_out, T / stride)``."""
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


@ENCODERS.register("signal_cnn1d")
class SignalCNN1dEncoder(Encoder):
    """1-D ResNet over waveforms: ``(B, C, T)`` -> pooled ``(B, D)`` + tokens ``(B, T', D)``.

    A strided stem then stages of residual blocks (He et al., "Deep Residual Learning", CVPR 2016, in 1-D
    as in Hannun et al., Nature Medicine 2019 for ECG); each stage after the first halves the time axis.
    ``D = widths[-1]``; pooled is the mean over time.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        widths: Sequence[int] = (32, 64, 128),
        blocks_per_stage: int = 1,
        kernel_size: int = 7,
        stem_stride: int = 2,
        modality: str = "signal",
    ) -> None:
        super().__init__()
        _positive("in_channels", in_channels)
        if not widths:
            raise ConfigError("widths: needs at least one stage width")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size: expected an odd size, got {kernel_size}")
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, widths[0], kernel_size, stride=stem_stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        c_in = widths[0]
        for i, width in enumerate(widths):
            _positive(f"widths[{i}]", width)
            for j in range(blocks_per_stage):
                stages.append(_ResBlock1d(c_in, width, 2 if (i > 0 and j == 0) else 1, kernel_size))
                c_in = width
        self.stages = nn.Sequential(*stages)
        self.in_channels = in_channels
        self.output_dim = int(widths[-1])
        self.token_dim = self.output_dim
        self.modality = modality
        self.preprocessing: dict[str, Any] = {"channels": in_channels}

    def forward(self, signal: Tensor) -> EncoderOutput:
        """Return pooled ``(B, D)`` and tokens ``(B, T', D)``."""
        if signal.dim() != 3 or signal.shape[1] != self.in_channels:
            raise ValueError(f"signal must be (B, {self.in_channels}, T), got {tuple(signal.shape)}")
        feats = self.stages(self.stem(signal))  # (B, D, T')
        tokens = feats.transpose(1, 2)
        return EncoderOutput(pooled=tokens.mean(1), tokens=tokens)


@ENCODERS.register("signal_transformer")
class SignalTransformerEncoder(Encoder):
    """Patch transformer over waveforms: ``(B, C, T)`` -> pooled ``(B, D)`` + tokens ``(B, ceil(T/p), D)``.

    The time axis is cut into patches of ``patch_size`` samples (right-padded with zeros), each patch
    embedded linearly, as ViT does for images (Dosovitskiy et al., ICLR 2021) and PatchTST for series
    (Nie et al., ICLR 2023); learned positions, pre-norm blocks; pooled is ``cls`` or the token ``mean``.
    ``grad_checkpointing`` recomputes each block in the backward pass instead of storing activations.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        patch_size: int = 16,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        max_patches: int = 512,
        pooling: str = "cls",
        grad_checkpointing: bool = False,
        modality: str = "signal",
    ) -> None:
        super().__init__()
        _positive("in_channels", in_channels)
        _positive("patch_size", patch_size)
        _positive("max_patches", max_patches)
        check_choice("pooling", pooling, ["cls", "mean"])
        self.patch_embed = nn.Conv1d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_embedding = nn.Parameter(torch.randn(1, max_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.max_patches = max_patches
        self.pooling = pooling
        self.grad_checkpointing = grad_checkpointing
        self.output_dim = dim
        self.token_dim = dim
        self.modality = modality
        self.preprocessing: dict[str, Any] = {"channels": in_channels, "patch_size": patch_size}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    def forward(self, signal: Tensor) -> EncoderOutput:
        """Return pooled ``(B, D)`` and patch tokens ``(B, N, D)`` (the class token excluded)."""
        if signal.dim() != 3 or signal.shape[1] != self.in_channels:
            raise ValueError(f"signal must be (B, {self.in_channels}, T), got {tuple(signal.shape)}")
        rest = signal.shape[-1] % self.patch_size
        if rest:
            signal = nn.functional.pad(signal, (0, self.patch_size - rest))
        patches = self.patch_embed(signal).transpose(1, 2)  # (B, N, D)
        if patches.shape[1] > self.max_patches:
            raise ValueError(
                f"{patches.shape[1]} patches exceed max_patches={self.max_patches}; raise it or patch_size"
            )
        x = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        x = x + self.position_embedding[:, : x.shape[1]]
        x = self.norm(run_blocks(self.blocks, x, None, False, self.grad_checkpointing and self.training))
        tokens = x[:, 1:]
        pooled = x[:, 0] if self.pooling == "cls" else tokens.mean(1)
        return EncoderOutput(pooled=pooled, tokens=tokens)
