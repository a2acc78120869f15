"""Audio reading and preprocessing: WAV/FLAC decoding, polyphase resampling, band-pass, normalisation, windows.

Heart-sound and lung-sound recordings come from many sites and devices; the helpers here remove the
differences that do not carry diagnosis (sample rate, DC offset and out-of-band noise, gain) before a model
sees them:

>>> x, sr = load_audio("a0001.wav", sample_rate=2000)             # doctest: +SKIP
>>> x = normalize_audio(bandpass(x, sr, 25.0, 400.0))              # doctest: +SKIP
>>> windows = window_signal(x, sr, window_s=5.0, hop_s=2.5)        # doctest: +SKIP  (W, 10000)
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from scipy import signal as sps

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError, DataError

__all__ = [
    "AudioConfig",
    "bandpass",
    "decode_audio_bytes",
    "load_audio",
    "load_audio_windows",
    "normalize_audio",
    "resample_audio",
    "window_signal",
]

NormalizeMode = Literal["zscore", "peak", "none"]


def load_audio(
    path: str | Path, *, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Return ``(samples, sample_rate)`` from a WAV/FLAC/OGG file, float32 in [-1, 1].

    samples: ``(T,)`` when ``mono`` (channels averaged), else ``(C, T)``.
    ``sample_rate``: resample to this rate with a polyphase filter; ``None`` keeps the file's rate.
    A missing, empty, truncated or undecodable file raises :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "audio file not found; check the path (relative paths are resolved from the manifest's folder)", path=path
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read audio file: {exc}", path=path) from None
    _check_wav_complete(head, size, path)
    return _decode(path, path, sample_rate=sample_rate, mono=mono)


def decode_audio_bytes(
    data: bytes, *, sample_rate: int | None = None, mono: bool = True, name: str = "<audio bytes>"
) -> tuple[np.ndarray, int]:
    """Return ``(samples, sample_rate)`` decoded from the bytes of a WAV/FLAC/OGG file (e.g. an upload).

    Same output as :func:`load_audio`; ``name`` is used in error messages.
    """
    _check_wav_complete(data[:4096], len(data), name)
    return _decode(io.BytesIO(data), name, sample_rate=sample_rate, mono=mono)


def _decode(
    source: Path | io.BytesIO, name: str | Path, *, sample_rate: int | None, mono: bool
) -> tuple[np.ndarray, int]:
    try:
        samples, sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, EOFError) as exc:
        raise DataError(
            f"cannot decode audio ({exc}); the file is corrupt, truncated or not WAV/FLAC/OGG: "
            "re-export it as 16-bit PCM WAV",
            path=name,
        ) from None
    if samples.shape[0] == 0:
        raise DataError("audio file holds no samples; re-export or drop the recording", path=name)
    if not np.isfinite(samples).all():
        raise DataError("audio holds NaN or infinite samples; re-export it as 16-bit PCM WAV", path=name)
    out = samples.mean(axis=1) if mono else samples.T
    out = np.ascontiguousarray(out, dtype=np.float32)
    if sample_rate is not None and sample_rate != sr:
        out = resample_audio(out, sr, sample_rate)
        sr = sample_rate
    return out, int(sr)


def _check_wav_complete(head: bytes, size: int, name: str | Path) -> None:
    """Raise when a RIFF/WAVE header declares more sample bytes than the file holds.

    libsndfile silently shortens such files; a cut-off recording must be reported instead.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (chunk_size,) = struct.unpack("<I", head[pos + 4 : pos + 8])
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF mark streamed files whose size was never written.
            if chunk_size not in (0, 0xFFFFFFFF) and pos + 8 + chunk_size > size:
                raise DataError(
                    f"truncated WAV: header declares {chunk_size} sample bytes, file holds "
                    f"{max(size - pos - 8, 0)}; re-copy or re-export the recording",
                    path=name,
                )
            return
        pos += 8 + chunk_size + (chunk_size & 1)


def resample_audio(samples: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Return ``samples`` resampled along the last axis from ``orig_sr`` to ``target_sr`` (float32).

    Polyphase filtering (``scipy.signal.resample_poly``, Kaiser window) with the rate ratio reduced to
    a fraction; the output has ``ceil(T * target_sr / orig_sr)`` samples.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ConfigError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    ratio = Fraction(target_sr / orig_sr).limit_denominator(10_000)
    if ratio == 1:
        return np.asarray(samples, dtype=np.float32)
    out = sps.resample_poly(np.asarray(samples, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def bandpass(
    samples: np.ndarray, sample_rate: float, low_hz: float | None = 25.0, high_hz: float | None = 400.0, *, order: int = 4
) -> np.ndarray:
    """Return ``samples`` band-pass filtered along the last axis, zero-phase (float32, same shape).

    Butterworth filter of ``order`` applied forwards and backwards (``sosfiltfilt``), so heart-sound
    timing is not shifted. ``low_hz=None`` gives a low-pass, ``high_hz=None`` a high-pass; a ``high_hz``
    at or above Nyquist is dropped. The 25-400 Hz default keeps the first and second heart sounds and
    murmurs and removes baseline wander, breathing rumble and hiss.
    """
    nyquist = sample_rate / 2.0
    if high_hz is not None and high_hz >= nyquist:
        high_hz = None
    if low_hz is not None and low_hz <= 0:
        low_hz = None
    if low_hz is not None and high_hz is not None and low_hz >= high_hz:
        raise ConfigError(f"band-pass: low_hz ({low_hz}) must be below high_hz ({high_hz})")
    if low_hz is None and high_hz is None:
        return np.asarray(samples, dtype=np.float32)
    if low_hz is not None and high_hz is not None:
        sos = sps.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    elif low_hz is not None:
        sos = sps.butter(order, low_hz, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = sps.butter(order, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    x = np.asarray(samples, dtype=np.float64)
    # sosfiltfilt needs more samples than its edge padding; very short clips are filtered with less padding.
    padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
    if padlen < 1:
        return x.astype(np.float32)
    return sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen).astype(np.float32)


def normalize_audio(samples: np.ndarray, mode: NormalizeMode = "zscore", *, eps: float = 1e-8) -> np.ndarray:
    """Return ``samples`` normalised per recording along the last axis (float32, same shape).

    ``zscore``: zero mean, unit standard deviation; ``peak``: divide by the largest absolute value;
    ``none``: unchanged. Silent recordings stay zero instead of dividing by zero.
    """
    check_choice("normalize", mode, ["zscore", "peak", "none"])
    x = np.asarray(samples, dtype=np.float32)
    if mode == "zscore":
        centred = x - x.mean(axis=-1, keepdims=True)
        return centred / np.maximum(centred.std(axis=-1, keepdims=True), eps)
    if mode == "peak":
        return x / np.maximum(np.abs(x).max(axis=-1, keepdims=True), eps)
    return x


def window_signal(samples: np.ndarray, sample_rate: float, window_s: float, hop_s: float | None = None) -> np.ndarray:
    """Return fixed-length windows ``(W, T_w)`` cut from ``samples`` ``(T,)``, ``T_w = round(window_s * sr)``.

    Windows start every ``hop_s`` seconds (default: ``window_s``, no overlap). A clip shorter than one
    window is zero-padded at the end into one window; otherwise the last window is aligned to the end
    of the clip when the hop does not land there, so no sample is left out and no window is padded.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ConfigError(f"window_signal expects a 1-D signal (T,), got shape {x.shape}")
    win = int(round(window_s * sample_rate))
    hop = int(round((hop_s if hop_s is not None else window_s) * sample_rate))
    if win <= 0 or hop <= 0:
        raise ConfigError(f"window_s and hop_s must give at least one sample, got {window_s}, {hop_s} at {sample_rate} Hz")
    if x.shape[0] <= win:
        out = np.zeros((1, win), dtype=np.float32)
        out[0, : x.shape[0]] = x
        return out
    starts = list(range(0, x.shape[0] - win + 1, hop))
    if starts[-1] + win < x.shape[0]:
        starts.append(x.shape[0] - win)
    return np.stack([x[s : s + win] for s in starts])


@dataclass
class AudioConfig:
    """How recordings become model input: rate, band, normalisation and windows.

    ``band``: (low_hz, high_hz) of the band-pass, or None to skip it. ``window_s``: None gives the
    whole clip as one window.
    """

    sample_rate: int = 2000
    band: tuple[float, float] | None = (25.0, 400.0)
    normalize: str = "zscore"
    window_s: float | None = 5.0
    hop_s: float | None = 2.5
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"audio.sample_rate must be positive, got {self.sample_rate}")
        check_choice("audio.normalize", self.normalize, ["zscore", "peak", "none"])
        if self.band is not None:
            if len(self.band) != 2 or not self.band[0] < self.band[1]:
                raise ConfigError(f"audio.band must be (low_hz, high_hz) with low < high, got {self.band}")
            self.band = (float(self.band[0]), float(self.band[1]))
        if self.window_s is not None and self.window_s <= 0:
            raise ConfigError(f"audio.window_s must be positive, got {self.window_s}")
        if self.hop_s is not None and self.hop_s <= 0:
            raise ConfigError(f"audio.hop_s must be positive, got {self.hop_s}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"audio.max_windows must be at least 1, got {self.max_windows}")


def load_audio_windows(path: str | Path, config: AudioConfig | None = None) -> np.ndarray:
    """Return the recording at ``path`` preprocessed by ``config`` as windows ``(W, T_w)`` float32.

    Loads mono at ``config.sample_rate``, band-passes, normalises per recording, then windows (or
    ``(1, T)`` when ``window_s`` is None). ``max_windows`` keeps evenly spaced windows across the clip.
    """
    cfg = config or AudioConfig()
    samples, sr = load_audio(path, sample_rate=cfg.sample_rate, mono=True)
    if cfg.band is not None:
        samples = bandpass(samples, sr, cfg.band[0], cfg.band[1])
    samples = normalize_audio(samples, cfg.normalize)  # type: ignore[arg-type]
    if cfg.window_s is None:
        return samples[None, :]
    windows = window_signal(samples, sr, cfg.window_s, cfg.hop_s)
    if cfg.max_windows is not None and windows.shape[0] > cfg.max_windows:
        keep = np.round(np.linspace(0, windows.shape[0] - 1, cfg.max_windows)).astype(int)
        windows = windows[keep]
    return windows
