"""Synthetic 3-lead ECGs (leads I, II, V5) written as WFDB records (format 16 ``.dat`` + ``.hea``).

Each beat is a sum of Gaussian waves (P, Q, R, S, T), the shape model of McSharry et al., "A
dynamical model for generating synthetic electrocardiogram signals", IEEE TBME 2003, placed at
the beat onsets of the study's rhythm. Atrial fibrillation drops the P waves, adds fibrillatory
f-waves (4-7 Hz) and makes the intervals irregular; an ST deviation lifts (or lowers) the segment
between the end of QRS and the T wave, most in the lateral leads; the QT interval follows the
rate (Bazett). Baseline wander, mains hum and noise are added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfuse.data.synth.cardiac import CardiacState, beat_times

ECG_RATE = 250  # Hz
ECG_SECONDS = 10.0
ECG_LEADS = ("I", "II", "V5")
ECG_GAIN = 1000.0  # digital units per mV (1 uV resolution)

# Per lead: (P, Q, R, S, T amplitude in mV, ST weight): lead II the largest limb lead, V5 lateral.
_LEAD_SHAPE = {
    "I": (0.08, -0.05, 0.6, -0.1, 0.2, 0.6),
    "II": (0.14, -0.08, 1.1, -0.2, 0.3, 0.8),
    "V5": (0.08, -0.1, 1.5, -0.3, 0.35, 1.2),
}


def _gauss(tau: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((tau - centre) / width) ** 2)


def render_ecg(
    rng: np.random.Generator, state: CardiacState, *, duration_s: float = ECG_SECONDS, sample_rate: int = ECG_RATE
) -> np.ndarray:
    """Return an ECG ``(3, T)`` float32 in mV (leads :data:`ECG_LEADS`), ``T = duration_s * sample_rate``.

    Beat onsets are R-peak times from :func:`~medfuse.data.synth.cardiac.beat_times`; ``state.st_mv``
    shifts the ST segment (lead weights 0.6/0.8/1.2), ``state.qrs_scale`` scales the QRS.
    """
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    onsets = beat_times(rng, state, duration_s)
    intervals = np.diff(np.append(onsets, onsets[-1] + state.rr_s))
    axis_scale = rng.normal(1.0, 0.1, len(ECG_LEADS)).clip(0.7, 1.3)
    shape = np.array([_LEAD_SHAPE[name] for name in ECG_LEADS])  # (leads, 6): P, Q, R, S, T, ST weight
    # per lead: the weights of the P wave, T wave and ST segment, and the QRS amplitudes (Q, R, S)
    slow = np.stack([shape[:, 0] * (state.rhythm == "sinus"), shape[:, 4], state.st_mv * shape[:, 5]], axis=1)
    qrs = shape[:, 1:4] * (state.qrs_scale * axis_scale)[:, None]
    signal = np.zeros((len(ECG_LEADS), n))
    for onset, interval in zip(onsets.tolist(), intervals.tolist()):
        t_centre = 0.4 * np.sqrt(min(interval, 1.6)) - 0.1  # T peak; Bazett: QT = 0.4 s * sqrt(RR)
        # a beat's waves may overlap the next beat's P wave at fast rates: each beat is drawn whole
        lo, hi = np.searchsorted(t, [onset - 0.3, onset + t_centre + 0.2])
        if hi <= lo:
            continue
        tau = t[lo:hi] - onset
        waves = np.stack([
            _gauss(tau, -0.17, 0.022),
            _gauss(tau, t_centre, 0.045),
            # the ST segment: from the J point (~50 ms after R) to the T wave's peak, soft edges
            np.clip((tau - 0.05) / 0.02, 0.0, 1.0) * np.clip((t_centre - tau) / 0.06, 0.0, 1.0),
        ])
        complex_ = np.stack([_gauss(tau, -0.03, 0.01), _gauss(tau, 0.0, 0.011), _gauss(tau, 0.032, 0.012)])
        signal[:, lo:hi] += slow @ waves + qrs @ complex_
    if state.rhythm != "sinus":  # fibrillatory waves replace the P waves
        f_rate, phase = rng.uniform(4.0, 7.0), rng.uniform(0, 2 * np.pi)
        wobble = np.cumsum(rng.normal(0, 0.02, n))
        fwave = 0.05 * np.sin(2 * np.pi * f_rate * t + phase + wobble)
        signal += fwave[None, :] * np.array([0.6, 1.0, 0.8])[:, None]
    wander = rng.uniform(0.03, 0.12, (len(ECG_LEADS), 1)) * np.sin(
        2 * np.pi * rng.uniform(0.15, 0.35) * t[None, :] + rng.uniform(0, 2 * np.pi, (len(ECG_LEADS), 1))
    )
    hum = rng.uniform(0.0, 0.015) * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))
    noise = rng.normal(0.0, 0.012, signal.shape)
    return (signal + wander + hum[None, :] + noise).astype(np.float32)


def write_wfdb_record(
    header_path: Path, signal: np.ndarray, sample_rate: float, leads: tuple[str, ...] | list[str] = ECG_LEADS,
    comments: dict[str, object] | None = None,
) -> Path:
    """Write ``signal`` ``(C, T)`` in mV as a WFDB record (``NAME.hea`` + ``NAME.dat``, format 16); return the header path.

    Samples are stored at :data:`ECG_GAIN` units per mV with baseline 0; the header holds each
    lead's first value and 16-bit checksum, so readers can check the file, and ``comments`` as
    ``# key: value`` lines.
    """
    header_path = Path(header_path)
    name = header_path.with_suffix("").name
    digital = np.round(np.clip(np.asarray(signal, dtype=np.float64) * ECG_GAIN, -32767, 32767)).astype(np.int16)
    n_sig, n_samples = digital.shape
    digital.T.astype("<i2").tofile(header_path.with_suffix(".dat"))  # interleaved: one frame per sample time
    lines = [f"{name} {n_sig} {sample_rate:g} {n_samples}"]
    for lead, row in zip(leads, digital):
        checksum = int(row.astype(np.int64).sum()) & 0xFFFF
        checksum = checksum - 65536 if checksum >= 32768 else checksum
        lines.append(f"{name}.dat 16 {ECG_GAIN:g}/mV 16 0 {int(row[0])} {checksum} 0 {lead}")
    lines += [f"# {key}: {value}" for key, value in (comments or {}).items()]
    header_path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return header_path
