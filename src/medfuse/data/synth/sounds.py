"""Synthetic heart sounds (phonocardiograms): S1 and S2 at the study's rate, an S3 gallop, a systolic murmur.

Each heart sound is a short damped oscillation: S1 (~50 ms, 50-80 Hz) at the start of systole, S2
(~40 ms, 80-120 Hz) at its end, and an S3 (~50 ms, 28-40 Hz) 120-170 ms after S2 in a gallop. A
holosystolic murmur is band-limited noise (120-350 Hz) filling the gap between S1 and S2. Body
noise (low-frequency rumble) and sensor hiss sit underneath, and the recording gain varies. All
frequencies stay inside the 25-400 Hz band :class:`medfuse.data.audio.AudioConfig` keeps.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal as sps

from medfuse.data.synth.cardiac import CardiacState, beat_times, systole_s

SOUND_RATE = 2000  # Hz, as in the PhysioNet/CinC 2016 heart sound recordings
SOUND_SECONDS = 5.0
MURMUR_BAND = (120.0, 350.0)  # Hz


def _burst(length: int, rate: int, freq: float, decay_s: float, rng: np.random.Generator) -> np.ndarray:
    """Return a damped oscillation ``(length,)`` with a smooth attack, peak amplitude ~1."""
    t = np.arange(length) / rate
    envelope = (t / decay_s) * np.exp(1.0 - t / decay_s)
    chirp = freq * (1.0 - 0.15 * t / max(t[-1], 1e-6))  # the pitch falls a little as the valves settle
    phase = 2 * np.pi * np.cumsum(chirp) / rate + rng.uniform(0, 2 * np.pi)
    wave = np.sin(phase) + 0.35 * np.sin(1.9 * phase + rng.uniform(0, 2 * np.pi))
    return envelope * wave / 1.35


def _add(target: np.ndarray, start_s: float, rate: int, event: np.ndarray) -> None:
    """Add ``event`` into ``target`` starting at ``start_s`` (parts outside the recording are dropped)."""
    start = int(round(start_s * rate))
    lo, hi = max(start, 0), min(start + event.shape[0], target.shape[0])
    if hi > lo:
        target[lo:hi] += event[lo - start : hi - start]


@lru_cache(maxsize=8)
def _bandpass_sos(low: float, high: float, rate: int) -> np.ndarray:
    """Return the 4th-order Butterworth band-pass ``[low, high]`` Hz as second-order sections (cached)."""
    return sps.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")


def _band_noise(rng: np.random.Generator, n: int, rate: int, low: float, high: float) -> np.ndarray:
    """Return white noise band-passed to ``[low, high]`` Hz, unit standard deviation ``(n,)``."""
    noise = sps.sosfilt(_bandpass_sos(low, high, rate), rng.standard_normal(n + 400))[400:]  # drop the start-up
    return noise / max(float(noise.std()), 1e-9)


def render_heart_sound(
    rng: np.random.Generator, state: CardiacState, *, duration_s: float = SOUND_SECONDS, sample_rate: int = SOUND_RATE
) -> np.ndarray:
    """Return a heart sound recording ``(T,)`` float32 in [-1, 1], ``T = duration_s * sample_rate``.

    Beats follow :func:`~medfuse.data.synth.cardiac.beat_times` (jittered sinus rhythm or atrial
    fibrillation); ``state.murmur`` and ``state.gallop`` set the loudness of the murmur and the S3
    relative to S1.
    """
    n = int(round(duration_s * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    murmur_noise = _band_noise(rng, n, sample_rate, *MURMUR_BAND) if state.murmur > 0 else None
    murmur_envelope = np.zeros(n)
    # one sound of each kind per recording (the patient's valves), repeated with varying loudness
    s1 = _burst(int(0.09 * sample_rate), sample_rate, rng.uniform(50.0, 80.0), 0.012, rng)
    s2 = _burst(int(0.07 * sample_rate), sample_rate, rng.uniform(80.0, 120.0), 0.009, rng)
    s3 = _burst(int(0.1 * sample_rate), sample_rate, rng.uniform(28.0, 40.0), 0.016, rng)
    onsets = beat_times(rng, state, duration_s)
    rr = np.diff(np.append(onsets, onsets[-1] + state.rr_s))
    for onset, interval in zip(onsets.tolist(), rr.tolist()):
        systole = systole_s(interval)
        _add(out, onset, sample_rate, s1 * rng.uniform(0.85, 1.15))
        _add(out, onset + systole, sample_rate, s2 * rng.uniform(0.55, 0.8))
        if state.gallop > 0:
            _add(out, onset + systole + rng.uniform(0.12, 0.17), sample_rate, s3 * 0.7 * state.gallop)
        if murmur_noise is not None:
            # holosystolic plateau from just after S1 to S2, with soft edges
            start, stop = onset + 0.04, onset + systole - 0.01
            length = int(round((stop - start) * sample_rate))
            if length > 8:
                _add(murmur_envelope, start, sample_rate, sps.windows.tukey(length, 0.3))
    if murmur_noise is not None:
        out += 0.22 * state.murmur * murmur_envelope * murmur_noise
    rumble = _band_noise(rng, n, sample_rate, 20.0, 90.0) * rng.uniform(0.01, 0.04)
    hiss = rng.standard_normal(n) * rng.uniform(0.005, 0.015)
    out += rumble + hiss
    gain = rng.uniform(0.3, 0.8) / max(float(np.abs(out).max()), 1e-9)
    return (out * gain).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SOUND_RATE) -> Path:
    """Write ``samples`` ``(T,)`` in [-1, 1] as mono 16-bit PCM WAV at ``path``; return the path."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(int(sample_rate))
        fh.writeframes(pcm.tobytes())
    return path
