"""Audio encoders: a log-mel frontend into a small 2-D CNN (``audio_cnn``) or any timm backbone (``audio_timm``).

Input is the batch's ``audio``: a clip ``(B, T)`` or windows ``(B, W, T)`` cut by
``medfuse.data.audio.window_signal``, alone or in a mapping with ``audio_mask`` ``(B, W)`` (True for
real windows) when clips with different numbers of windows share a batch. Without a mask, windows
that are entirely zero are taken as padding (a silent clip then gives a zero vector). Each window
becomes a log-mel image, is encoded, and the window vectors are pooled (mean or attention) into one
vector per clip, so a recording of any length gives one ``(B, D)`` embedding. Time tokens of all
windows are returned too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput
from medfuse.models.features import LogMelSpectrogram, SpecAugment

__all__ = [
    "AttentionPool",
    "AudioCNNEncoder",
    "AudioTimmEncoder",
    "LogMelFrontend",
    "conv_stack",
    "masked_mean",
    "split_inputs",
]


def split_inputs(inputs: object, key: str) -> tuple[Tensor, Tensor | None]:
    """Return ``(tensor, mask)`` from a tensor or a mapping holding ``key`` and optionally ``{key}_mask``."""
    if isinstance(inputs, Tensor):
        return inputs, None
    if isinstance(inputs, Mapping) and isinstance(inputs.get(key), Tensor):
        mask = inputs.get(f"{key}_mask")
        return inputs[key], mask if isinstance(mask, Tensor) else None
    raise ConfigError(
        f"{key} encoder input must be a tensor or a mapping with a '{key}' tensor, got {type(inputs).__name__}"
    )


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Return the mean of ``x`` ``(B, N, D)`` over real items (``mask`` ``(B, N)`` True) -> ``(B, D)``.

    A row with no real item gives zeros.
    """
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """Attention pooling ``(B, N, D) -> (B, D)``: softmax over items of ``w^T tanh(V h_n)``.

    Ilse et al., "Attention-based Deep Multiple Instance Learning", ICML 2018. Masked items get no
    weight; a row with no real item gives zeros.
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Return the attention-weighted sum ``(B, D)`` of ``x`` ``(B, N, D)``."""
        logits = self.score(x).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=1)
        if mask is not None:
            weights = weights * mask.to(weights.dtype)
        return torch.einsum("bn,bnd->bd", weights, x)


def conv_stack(in_channels: int, channels: tuple[int, ...] | list[int]) -> nn.Sequential:
    """Return blocks of two 3x3 conv-BN-ReLU layers each followed by 2x2 average pooling.

    The CNN of Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks", 2020, made small;
    ``ceil_mode`` pooling keeps short inputs at least one pixel tall and wide. Maps
    ``(N, in_channels, H, W)`` to ``(N, channels[-1], ~H / 2^k, ~W / 2^k)``.
    """
    layers: list[nn.Module] = []
    prev = in_channels
    for ch in channels:
        layers += [
            nn.Conv2d(prev, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, ceil_mode=True),
        ]
        prev = ch
    return nn.Sequential(*layers)


class LogMelFrontend(nn.Module):
    """Waveform windows ``(N, T)`` -> log-mel images ``(N, 1, n_mels, frames)``, standardised per image.

    Log-mel in dB (top_db clipped), then standardised so recording gain and device loudness do not
    shift the input: ``spec_norm="image"`` gives each image zero mean and unit variance;
    ``"frequency"`` first removes each mel band's mean over time (cepstral mean normalisation: a
    device's fixed frequency response is a per-band offset in dB), then divides by the image's standard
    deviation. In training, ``eq_db > 0`` adds a random smooth gain curve within ``+-eq_db`` dB across
    the mel bands of each image (another stethoscope's response), and SpecAugment (Park et al. 2019)
    masks bands and spans when enabled.
    """

    def __init__(
        self,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int = 20,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
        top_db: float | None = 80.0,
        spec_augment: bool = False,
        *,
        spec_norm: str = "image",
        eq_db: float = 0.0,
        eq_points: int = 4,
    ) -> None:
        super().__init__()
        check_choice("spec_norm", spec_norm, ["image", "frequency"])
        if eq_db < 0 or eq_points < 2:
            raise ConfigError(f"eq_db must be >= 0 and eq_points >= 2, got eq_db={eq_db}, eq_points={eq_points}")
        self.log_mel = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax, top_db=top_db)
        self.spec_norm = spec_norm
        self.eq_db = float(eq_db)
        self.eq_points = int(eq_points)
        self.augment = (
            SpecAugment(freq_mask_param=max(1, n_mels // 8), time_mask_param=50, max_time_ratio=0.2)
            if spec_augment
            else None
        )

    @property
    def n_mels(self) -> int:
        return self.log_mel.n_mels

    def random_eq(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Return ``n`` random gain curves ``(n, n_mels, 1)`` in dB: ``eq_points`` uniform draws in ``+-eq_db``, linearly interpolated."""
        points = (torch.rand(n, 1, self.eq_points, generator=generator) * 2.0 - 1.0) * self.eq_db
        curve = nn.functional.interpolate(points, size=self.n_mels, mode="linear", align_corners=True)
        return curve.reshape(n, self.n_mels, 1)

    def forward(self, waveforms: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return standardised log-mel images ``(N, 1, n_mels, frames)`` for ``waveforms`` ``(N, T)``."""
        spec = self.log_mel(waveforms)
        if self.training and self.eq_db > 0:
            spec = spec + self.random_eq(spec.shape[0], generator).to(device=spec.device, dtype=spec.dtype)
        if self.spec_norm == "frequency":
            spec = spec - spec.mean(dim=-1, keepdim=True)
        else:
            spec = spec - spec.mean(dim=(-2, -1), keepdim=True)
        spec = spec / spec.std(dim=(-2, -1), keepdim=True, unbiased=False).clamp(min=1e-5)
        if self.augment is not None:
            spec = self.augment(spec, generator)
        return spec.unsqueeze(1)


class _WindowedAudioEncoder(Encoder):
    """Shared plumbing: accept clips or windows, encode real windows in chunks, pool over windows."""

    modality = "audio"

    def __init__(self, output_dim: int, window_pool: str, window_chunk: int | None) -> None:
        super().__init__()
        check_choice("window_pool", window_pool, ["mean", "attention"])
        if window_chunk is not None and window_chunk < 1:
            raise ConfigError(f"window_chunk must be at least 1, got {window_chunk}")
        self.output_dim = output_dim
        self.window_chunk = window_chunk
        self.window_pool = AttentionPool(output_dim) if window_pool == "attention" else None

    def encode_windows(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(pooled (N, D), tokens (N, L, D))`` for waveform windows ``(N, T_w)``."""
        raise NotImplementedError  # pragma: no cover - implemented by each encoder

    def forward(self, inputs: object) -> EncoderOutput:
        """Return pooled ``(B, D)``, time tokens ``(B, W * L, D)`` and their mask for audio ``(B, T)`` or ``(B, W, T)``.

        ``inputs``: the audio tensor, or a mapping with ``audio`` and optionally ``audio_mask``.
        """
        audio, mask = split_inputs(inputs, "audio")
        if audio.ndim == 2:
            audio = audio.unsqueeze(1)
        if audio.ndim != 3:
            raise ConfigError(f"audio input must be (B, T) or (B, W, T), got shape {tuple(audio.shape)}")
        batch, n_win, n_samples = audio.shape
        if mask is None:
            # Collation pads clips with all-zero windows; without a mask those are the padding.
            mask = audio.detach().abs().amax(dim=-1) > 0
        mask = mask.to(device=audio.device, dtype=torch.bool)
        flat = audio.reshape(batch * n_win, n_samples)
        real = mask.reshape(-1).nonzero().squeeze(1)
        chunk = self.window_chunk or max(int(real.numel()), 1)
        pooled_parts, token_parts = [], []
        for start in range(0, int(real.numel()), chunk):
            pooled, tokens = self.encode_windows(flat[real[start : start + chunk]])
            pooled_parts.append(pooled)
            token_parts.append(tokens)
        if not pooled_parts:  # every window masked: zero vectors, one masked token per window
            ref = audio.new_zeros(0, self.output_dim)
            pooled_parts, token_parts, n_tokens = [ref], [audio.new_zeros(0, 1, self.output_dim)], 1
        else:
            n_tokens, ref = token_parts[0].shape[1], pooled_parts[0]
        win_vecs = ref.new_zeros(batch * n_win, self.output_dim).index_copy(0, real, torch.cat(pooled_parts))
        win_tokens = ref.new_zeros(batch * n_win, n_tokens, self.output_dim).index_copy(0, real, torch.cat(token_parts))
        win_vecs = win_vecs.reshape(batch, n_win, self.output_dim)
        pooled = self.window_pool(win_vecs, mask) if self.window_pool is not None else masked_mean(win_vecs, mask)
        tokens = win_tokens.reshape(batch, n_win * n_tokens, self.output_dim)
        token_mask = mask.repeat_interleave(n_tokens, dim=1)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=token_mask)


@ENCODERS.register("audio_cnn")
class AudioCNNEncoder(_WindowedAudioEncoder):
    """Log-mel + small 2-D CNN audio encoder: ``(B, T)`` or ``(B, W, T)`` -> ``(B, D)`` and time tokens.

    The CNN's feature map is averaged over frequency into one token per time step (``L ~ frames / 2^k``);
    a window's vector is the mean plus the max of its tokens (Kong et al., PANNs, 2020). ``spec_norm``,
    ``eq_db`` and ``spec_augment`` set the :class:`LogMelFrontend`; with ``window_pool="mean"`` a clip's
    vector is the mean of its windows' vectors.
    """

    def __init__(
        self,
        output_dim: int = 128,
        *,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int = 20,
        n_mels: int = 64,
        fmin: float = 20.0,
        fmax: float | None = None,
        channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        dropout: float = 0.1,
        spec_augment: bool = False,
        spec_norm: str = "image",
        eq_db: float = 0.0,
        window_pool: str = "attention",
        window_chunk: int | None = None,
    ) -> None:
        super().__init__(output_dim, window_pool, window_chunk)
        if not channels:
            raise ConfigError("audio_cnn: channels must name at least one block width")
        self.frontend = LogMelFrontend(sample_rate, n_fft, hop_length, n_mels, fmin, fmax, spec_augment=spec_augment,
                                       spec_norm=spec_norm, eq_db=eq_db)
        self.cnn = conv_stack(1, tuple(channels))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(channels[-1], output_dim)

    def encode_windows(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(pooled (N, D), tokens (N, L, D))`` for waveform windows ``(N, T_w)``."""
        feats = self.cnn(self.frontend(windows))  # (N, C, F', L)
        tokens = self.proj(self.dropout(feats.mean(dim=2).transpose(1, 2)))  # (N, L, D)
        return tokens.mean(dim=1) + tokens.amax(dim=1), tokens


@ENCODERS.register("audio_timm")
class AudioTimmEncoder(_WindowedAudioEncoder):
    """Log-mel image (1 channel) into a timm backbone by name: ``(B, T)`` or ``(B, W, T)`` -> ``(B, D)`` and time tokens.

    The backbone is a :class:`~medfuse.models.encoders.image.TimmImageEncoder` with ``in_chans=1``, so
    ``pretrained`` (a packaged weight set) and ``weights`` (a local file) load as for images, the RGB
    stem summed to one channel; nothing is downloaded. CNN feature maps are averaged over frequency
    into time tokens; ViT-style backbones give their patch tokens. ``image_size`` resizes the log-mel
    image (for ViTs built for a fixed size). ``output_dim=None`` keeps the backbone's width; otherwise
    linear projections map to it. ``spec_norm``, ``eq_db`` and ``spec_augment`` set the :class:`LogMelFrontend`.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        output_dim: int | None = None,
        *,
        pretrained: str | None = None,
        weights: str | None = None,
        load_weights: bool = True,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int = 20,
        n_mels: int = 128,
        fmin: float = 20.0,
        fmax: float | None = None,
        image_size: tuple[int, int] | list[int] | None = None,
        spec_augment: bool = False,
        spec_norm: str = "image",
        eq_db: float = 0.0,
        window_pool: str = "attention",
        window_chunk: int | None = None,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from medfuse.models.encoders.image import TimmImageEncoder

        image_encoder = TimmImageEncoder(
            backbone, pretrained=pretrained, weights=weights, in_chans=1, load_weights=load_weights,
            model_kwargs=timm_kwargs, output_tokens=True,
        )
        head_dim, token_width = int(image_encoder.output_dim), int(image_encoder.token_dim)
        dim = head_dim if output_dim is None else output_dim
        super().__init__(dim, window_pool, window_chunk)
        self.backbone: Any = image_encoder.model
        self.backbone_name = image_encoder.arch
        self.load_report = image_encoder.load_report
        self.frontend = LogMelFrontend(sample_rate, n_fft, hop_length, n_mels, fmin, fmax, spec_augment=spec_augment,
                                       spec_norm=spec_norm, eq_db=eq_db)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.pooled_proj: nn.Module = nn.Identity() if dim == head_dim else nn.Linear(head_dim, dim)
        self.token_proj: nn.Module = nn.Identity() if dim == token_width else nn.Linear(token_width, dim)

    def encode_windows(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(pooled (N, D), tokens (N, L, D))`` for waveform windows ``(N, T_w)``."""
        image = self.frontend(windows)
        if self.image_size is not None:
            image = nn.functional.interpolate(image, size=self.image_size, mode="bilinear", align_corners=False)
        feats = self.backbone.forward_features(image)
        pooled = self.pooled_proj(self.backbone.forward_head(feats, pre_logits=True))
        if feats.ndim == 4:
            if str(getattr(self.backbone, "output_fmt", "NCHW")).upper().endswith("NHWC"):
                feats = feats.permute(0, 3, 1, 2)
            tokens = feats.mean(dim=2).transpose(1, 2)  # average over frequency: (N, L, C)
        else:
            tokens = feats[:, int(getattr(self.backbone, "num_prefix_tokens", 0) or 0) :]
        return pooled, self.token_proj(tokens)
