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
    "add_noise",
    "bandpass",
    "decode_audio_bytes",
    "load_audio",
    "load_audio_windows",
    "normalize_audio",
    "prepare_audio_windows",
    "random_windows",
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
    samples: np.ndarray,
    sample_rate: float,
    low_hz: float | None = 25.0,
    high_hz: float | None = 400.0,
    *,
    order: int = 4,
    zero_phase: bool = True,
) -> np.ndarray:
    """Return ``samples`` band-pass filtered along the last axis (float32, same shape).

    Butterworth filter of ``order`` in second-order sections. ``zero_phase``: applied forwards and
    backwards (``sosfiltfilt``, squared magnitude response), so heart-sound timing is not shifted;
    otherwise applied once, causally (``sosfilt``, as a streaming device would). ``low_hz=None`` gives a
    low-pass, ``high_hz=None`` a high-pass; a ``high_hz`` at or above Nyquist is dropped. The 25-400 Hz
    default keeps the first and second heart sounds and murmurs and removes baseline wander, breathing
    rumble and hiss.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ConfigError(f"band-pass: order must be a positive integer, got {order!r}")
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
    if not zero_phase:
        return sps.sosfilt(sos, x, axis=-1).astype(np.float32)
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
    """How recordings become model input: rate, filter, normalisation, windows, training augmentation.

    ``band``: (low_hz, high_hz) of the Butterworth band-pass (``filter_order``), or None to skip it;
    ``zero_phase``: forwards-backwards filtering (else causal). ``normalize``: per recording (``zscore``,
    ``peak`` or ``none``); ``clip``: then limit samples to ``[-clip, clip]`` (stethoscope knocks and
    friction spikes are many standard deviations tall). ``window_s``: None gives the whole clip as one
    window; ``hop_s``: the window step; ``max_windows``: keep evenly spaced windows.

    Training only (when the dataset passes a random generator): ``train_windows`` random crops of
    ``window_s`` per recording instead of the fixed grid (time shift; None keeps the grid, shifted by a
    random offset below one hop), and ``noise_snr_db``: white noise, band-limited like the signal, at a
    signal-to-noise ratio drawn uniformly from ``(low, high)`` dB.
    """

    sample_rate: int = 2000
    band: tuple[float, float] | None = (25.0, 400.0)
    filter_order: int = 4
    zero_phase: bool = True
    normalize: str = "zscore"
    clip: float | None = None
    window_s: float | None = 5.0
    hop_s: float | None = 2.5
    max_windows: int | None = None
    train_windows: int | None = None
    noise_snr_db: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"audio.sample_rate must be positive, got {self.sample_rate}")
        check_choice("audio.normalize", self.normalize, ["zscore", "peak", "none"])
        if self.band is not None:
            if len(self.band) != 2 or not self.band[0] < self.band[1]:
                raise ConfigError(f"audio.band must be (low_hz, high_hz) with low < high, got {self.band}")
            self.band = (float(self.band[0]), float(self.band[1]))
        if isinstance(self.filter_order, bool) or not isinstance(self.filter_order, int) or self.filter_order < 1:
            raise ConfigError(f"audio.filter_order must be a positive integer, got {self.filter_order!r}")
        if self.clip is not None and not self.clip > 0:
            raise ConfigError(f"audio.clip must be positive (or null for no clipping), got {self.clip}")
        if self.window_s is not None and self.window_s <= 0:
            raise ConfigError(f"audio.window_s must be positive, got {self.window_s}")
        if self.hop_s is not None and self.hop_s <= 0:
            raise ConfigError(f"audio.hop_s must be positive, got {self.hop_s}")
        for name in ("max_windows", "train_windows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"audio.{name} must be at least 1, got {value}")
        if self.train_windows is not None and self.window_s is None:
            raise ConfigError("audio.train_windows needs audio.window_s (the length of the random crops)")
        if self.noise_snr_db is not None:
            if len(self.noise_snr_db) != 2 or not self.noise_snr_db[0] <= self.noise_snr_db[1]:
                raise ConfigError(f"audio.noise_snr_db must be (low_db, high_db) with low <= high, got {self.noise_snr_db}")
            self.noise_snr_db = (float(self.noise_snr_db[0]), float(self.noise_snr_db[1]))


def add_noise(
    samples: np.ndarray, snr_db: float, rng: np.random.Generator, *, sample_rate: float | None = None,
    band: tuple[float, float] | None = None,
) -> np.ndarray:
    """Return ``samples`` ``(T,)`` plus white noise at ``snr_db`` (float32, same shape).

    The noise is band-passed to ``band`` first (when given with ``sample_rate``), so it lands where the
    signal is; its power is set from the signal's mean power. A silent signal is returned unchanged.
    """
    x = np.asarray(samples, dtype=np.float32)
    power = float(np.mean(np.square(x, dtype=np.float64)))
    if power == 0.0:
        return x
    noise = rng.standard_normal(x.shape)
    if band is not None and sample_rate is not None:
        noise = bandpass(noise, sample_rate, band[0], band[1])
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    scale = np.sqrt(power / (max(noise_power, 1e-20) * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def random_windows(samples: np.ndarray, sample_rate: float, window_s: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` windows ``(count, T_w)`` of ``window_s`` starting at uniformly random positions.

    Starts are drawn in ``[0, T - T_w]`` and sorted; a clip shorter than one window gives one window
    holding the clip at a random offset, zero-padded around it.
    """
    x = np.asarray(samples, dtype=np.float32)
    win = int(round(window_s * sample_rate))
    if win <= 0:
        raise ConfigError(f"window_s must give at least one sample, got {window_s} at {sample_rate} Hz")
    if x.shape[0] <= win:
        out = np.zeros((1, win), dtype=np.float32)
        start = int(rng.integers(0, win - x.shape[0] + 1))
        out[0, start : start + x.shape[0]] = x
        return out
    starts = np.sort(rng.integers(0, x.shape[0] - win + 1, size=count))
    return np.stack([x[s : s + win] for s in starts])


def prepare_audio_windows(
    samples: np.ndarray, sample_rate: float, config: AudioConfig | None = None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return the mono recording ``samples`` ``(T,)`` at ``sample_rate`` as model input windows ``(W, T_w)`` float32.

    Band-pass, per-recording normalisation, clipping, then windows (or ``(1, T)`` when ``window_s`` is
    None); ``max_windows`` keeps evenly spaced windows. With ``rng`` (training) the augmentation of
    ``config`` is drawn from it: noise after normalisation, then random crops or a randomly shifted grid.
    """
    cfg = config or AudioConfig()
    x = np.asarray(samples, dtype=np.float32)
    if cfg.band is not None:
        x = bandpass(x, sample_rate, cfg.band[0], cfg.band[1], order=cfg.filter_order, zero_phase=cfg.zero_phase)
    x = normalize_audio(x, cfg.normalize)  # type: ignore[arg-type]
    if rng is not None and cfg.noise_snr_db is not None:
        x = add_noise(x, float(rng.uniform(*cfg.noise_snr_db)), rng, sample_rate=sample_rate, band=cfg.band)
    if cfg.clip is not None:
        x = np.clip(x, -cfg.clip, cfg.clip)
    if cfg.window_s is None:
        return x[None, :]
    if rng is not None and cfg.train_windows is not None:
        return random_windows(x, sample_rate, cfg.window_s, cfg.train_windows, rng)
    if rng is not None:
        hop = cfg.hop_s if cfg.hop_s is not None else cfg.window_s
        offset = int(rng.integers(0, max(int(round(hop * sample_rate)), 1)))
        if x.shape[0] - offset > int(round(cfg.window_s * sample_rate)):
            x = x[offset:]
    windows = window_signal(x, sample_rate, cfg.window_s, cfg.hop_s)
    if cfg.max_windows is not None and windows.shape[0] > cfg.max_windows:
        keep = np.round(np.linspace(0, windows.shape[0] - 1, cfg.max_windows)).astype(int)
        windows = windows[keep]
    return windows


def load_audio_windows(
    path: str | Path, config: AudioConfig | None = None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return the recording at ``path`` prepared by ``config`` as windows ``(W, T_w)`` float32.

    Loads mono at ``config.sample_rate`` and runs :func:`prepare_audio_windows` (``rng``: training augmentation).
    """
    cfg = config or AudioConfig()
    samples, sr = load_audio(path, sample_rate=cfg.sample_rate, mono=True)
    return prepare_audio_windows(samples, sr, cfg, rng=rng)
