"""Spectrogram features in pure torch: mel spectrogram, log-mel (dB), MFCC and SpecAugment.

Every transform is an ``nn.Module`` whose window, filterbank and DCT matrix are buffers, so it moves
with the model (``.to(device)``), runs batched on GPU, and exports with the model. Defaults and
arithmetic follow librosa (``librosa.feature.melspectrogram``, ``librosa.power_to_db``,
``librosa.feature.mfcc``), against which the tests check parity.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError

__all__ = [
    "MFCC",
    "LogMelSpectrogram",
    "MelSpectrogram",
    "SpecAugment",
    "dct_matrix",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "power_to_db",
]

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs: Tensor, *, htk: bool = False) -> Tensor:
    """Return mel values for frequencies in Hz (same shape); Slaney scale unless ``htk`` (2595 log10(1 + f/700))."""
    if htk:
        return 2595.0 * torch.log10(1.0 + freqs / 700.0)
    linear = freqs / _F_SP
    log_part = _MIN_LOG_MEL + torch.log(torch.clamp(freqs, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freqs >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mels: Tensor, *, htk: bool = False) -> Tensor:
    """Return frequencies in Hz for mel values (same shape); inverse of :func:`hz_to_mel`."""
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = _F_SP * mels
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log_part, linear)


def mel_filterbank(
    sample_rate: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    *,
    htk: bool = False,
    norm: Literal["slaney"] | None = "slaney",
) -> Tensor:
    """Return triangular mel filters ``(n_mels, n_fft // 2 + 1)`` float32, as ``librosa.filters.mel``.

    ``norm="slaney"`` scales each triangle to unit area (constant energy per band); ``None`` leaves
    peaks at 1. Computed in float64 and rounded once.
    """
    if norm not in ("slaney", None):
        raise ConfigError(f"mel norm: unknown value '{norm}'; known: slaney, None")
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ConfigError(
            f"mel filterbank needs 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, sr={sample_rate}"
        )
    fft_freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    bounds = hz_to_mel(torch.tensor([fmin, fmax], dtype=torch.float64), htk=htk)
    mel_f = mel_to_hz(torch.linspace(float(bounds[0]), float(bounds[1]), n_mels + 2, dtype=torch.float64), htk=htk)
    fdiff = mel_f[1:] - mel_f[:-1]
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.to(torch.float32)


def power_to_db(power: Tensor, *, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> Tensor:
    """Return ``10 log10(max(power, amin) / ref)`` in dB (same shape), as ``librosa.power_to_db``.

    ``top_db`` clips each example from below at its own maximum minus ``top_db``; the maximum is taken
    over the last two axes (frequency, time), so a batch ``(B, F, T)`` matches librosa per example.
    """
    if amin <= 0:
        raise ConfigError(f"power_to_db: amin must be positive, got {amin}")
    db = 10.0 * torch.log10(torch.clamp(power, min=amin)) - 10.0 * math.log10(max(amin, ref))
    if top_db is not None:
        if top_db < 0:
            raise ConfigError(f"power_to_db: top_db must be non-negative, got {top_db}")
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def dct_matrix(n_out: int, n_in: int) -> Tensor:
    """Return the orthonormal DCT-II matrix ``(n_out, n_in)`` (rows are the first ``n_out`` basis vectors).

    ``dct_matrix(k, n) @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:k]``.
    """
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] = basis[0] / math.sqrt(2.0)
    return basis.to(torch.float32)


class MelSpectrogram(nn.Module):
    """Mel power spectrogram ``(..., n_mels, frames)`` from waveforms ``(..., T)``.

    STFT with a periodic Hann window of ``win_length`` (zero-padded to ``n_fft``), ``center=True`` pads
    ``n_fft // 2`` on both sides with ``pad_mode`` (librosa's default ``constant``), so
    ``frames = 1 + T // hop_length``. ``power=2`` gives power, ``1`` magnitude.
    """

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float | None = None,
        *,
        power: float = 2.0,
        center: bool = True,
        pad_mode: str = "constant",
        htk: bool = False,
        norm: Literal["slaney"] | None = "slaney",
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        self.win_length = win_length or n_fft
        if self.win_length > n_fft:
            raise ConfigError(f"win_length ({self.win_length}) must not exceed n_fft ({n_fft})")
        if pad_mode not in ("constant", "reflect", "replicate", "circular"):
            raise ConfigError(f"pad_mode: unknown value '{pad_mode}'; known: constant, reflect, replicate, circular")
        self.n_mels = n_mels
        self.power = power
        self.center = center
        self.pad_mode = pad_mode
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)
        self.register_buffer(
            "filterbank", mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm), persistent=False
        )

    def num_frames(self, num_samples: int) -> int:
        """Return the number of STFT frames for ``num_samples`` input samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length

    def forward(self, waveform: Tensor) -> Tensor:
        """Return the mel spectrogram ``(..., n_mels, frames)`` of ``waveform`` ``(..., T)``."""
        lead = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1])
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(flat.dtype),
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )
        mag = spec.abs()
        spec_power = mag.pow(self.power) if self.power != 1.0 else mag
        mel = torch.matmul(self.filterbank.to(spec_power.dtype), spec_power)
        return mel.reshape(*lead, self.n_mels, mel.shape[-1])


class LogMelSpectrogram(nn.Module):
    """Log-mel spectrogram in dB ``(..., n_mels, frames)``: :class:`MelSpectrogram` then :func:`power_to_db`."""

    def __init__(
        self,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float | None = None,
        *,
        center: bool = True,
        pad_mode: str = "constant",
        htk: bool = False,
        norm: Literal["slaney"] | None = "slaney",
        top_db: float | None = 80.0,
        amin: float = 1e-10,
        ref: float = 1.0,
    ) -> None:
        super().__init__()
        self.mel = MelSpectrogram(
            sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax,
            center=center, pad_mode=pad_mode, htk=htk, norm=norm,
        )
        self.top_db = top_db
        self.amin = amin
        self.ref = ref

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    def forward(self, waveform: Tensor) -> Tensor:
        """Return log-mel dB ``(..., n_mels, frames)`` for ``waveform`` ``(..., T)``."""
        return power_to_db(self.mel(waveform), ref=self.ref, amin=self.amin, top_db=self.top_db)


class MFCC(nn.Module):
    """Mel-frequency cepstral coefficients ``(..., n_mfcc, frames)``: orthonormal DCT-II of the log-mel (dB).

    Takes the :class:`LogMelSpectrogram` arguments after ``n_mfcc``. ``lifter > 0`` applies sinusoidal
    liftering ``1 + (L/2) sin(pi (k+1) / L)`` as librosa does.
    """

    dct: Tensor

    def __init__(
        self,
        n_mfcc: int = 20,
        sample_rate: int = 2000,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float | None = None,
        *,
        lifter: float = 0.0,
        center: bool = True,
        pad_mode: str = "constant",
        htk: bool = False,
        norm: Literal["slaney"] | None = "slaney",
        top_db: float | None = 80.0,
    ) -> None:
        super().__init__()
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"n_mfcc must be in 1..n_mels ({n_mels}), got {n_mfcc}")
        if lifter < 0:
            raise ConfigError(f"lifter must be non-negative, got {lifter}")
        self.log_mel = LogMelSpectrogram(
            sample_rate, n_fft, hop_length, win_length, n_mels, fmin, fmax,
            center=center, pad_mode=pad_mode, htk=htk, norm=norm, top_db=top_db,
        )
        matrix = dct_matrix(n_mfcc, n_mels)
        if lifter > 0:
            k = torch.arange(1, n_mfcc + 1, dtype=torch.float64)
            matrix = matrix * (1.0 + (lifter / 2.0) * torch.sin(math.pi * k / lifter)).to(torch.float32)[:, None]
        self.register_buffer("dct", matrix, persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        """Return MFCCs ``(..., n_mfcc, frames)`` for ``waveform`` ``(..., T)``."""
        log_mel = self.log_mel(waveform)
        return torch.matmul(self.dct.to(log_mel.dtype), log_mel)


class SpecAugment(nn.Module):
    """Frequency and time masking of spectrograms ``(..., F, T)``; identity in eval mode.

    Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition",
    Interspeech 2019. Each example gets ``num_freq_masks`` bands ``[f0, f0 + f)`` with
    ``f ~ U{0..freq_mask_param}``, ``f0 ~ U{0..F - f}``, and ``num_time_masks`` spans with
    ``t ~ U{0..min(time_mask_param, floor(max_time_ratio * T))}`` (the paper's upper bound ``p * tau``),
    set to ``mask_value`` (``None``: the example's mean). Time warping is not applied. Random draws
    come from ``generator`` (CPU) when given, so augmentation is reproducible without global seeding.
    """

    def __init__(
        self,
        freq_mask_param: int = 8,
        time_mask_param: int = 20,
        num_freq_masks: int = 2,
        num_time_masks: int = 2,
        *,
        max_time_ratio: float = 1.0,
        mask_value: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if min(freq_mask_param, time_mask_param, num_freq_masks, num_time_masks) < 0:
            raise ConfigError("SpecAugment mask sizes and counts must be non-negative")
        if not 0.0 < max_time_ratio <= 1.0:
            raise ConfigError(f"SpecAugment max_time_ratio must be in (0, 1], got {max_time_ratio}")
        self.freq_mask_param = freq_mask_param
        self.time_mask_param = time_mask_param
        self.num_freq_masks = num_freq_masks
        self.num_time_masks = num_time_masks
        self.max_time_ratio = max_time_ratio
        self.mask_value = mask_value
        self.generator = generator

    def _band_mask(
        self, n_examples: int, size: int, max_width: int, count: int, generator: torch.Generator | None
    ) -> Tensor:
        """Return ``(n_examples, size)`` bool, True inside any of ``count`` random bands per example."""
        max_width = min(max_width, size)
        if count == 0 or max_width == 0:
            return torch.zeros(n_examples, size, dtype=torch.bool)
        widths = torch.randint(0, max_width + 1, (n_examples, count), generator=generator)
        starts = (torch.rand(n_examples, count, generator=generator) * (size - widths + 1)).floor().long()
        pos = torch.arange(size)[None, None, :]
        inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
        return inside.any(dim=1)

    def forward(self, spec: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return ``spec`` ``(..., F, T)`` with random frequency and time masks (training) or unchanged (eval)."""
        if not self.training:
            return spec
        gen = generator if generator is not None else self.generator
        n_freq, n_time = spec.shape[-2], spec.shape[-1]
        flat = spec.reshape(-1, n_freq, n_time)
        max_t = min(self.time_mask_param, int(self.max_time_ratio * n_time))
        freq = self._band_mask(flat.shape[0], n_freq, self.freq_mask_param, self.num_freq_masks, gen)
        time = self._band_mask(flat.shape[0], n_time, max_t, self.num_time_masks, gen)
        mask = (freq[:, :, None] | time[:, None, :]).to(spec.device)
        if self.mask_value is None:
            fill = flat.mean(dim=(-2, -1), keepdim=True).expand_as(flat)
        else:
            fill = torch.full_like(flat, self.mask_value)
        return torch.where(mask, fill, flat).reshape(spec.shape)
