"""Multi-lead physiological waveforms (ECG, PPG): WFDB records, CSV and NumPy files -> :class:`Waveform`.

WFDB headers (``.hea``) are parsed here, following the WFDB header specification
(https://physionet.org/physiotools/wag/header-5.htm); signals are read from MATLAB v4 ``.mat`` files
(variable ``val``, as in the PhysioNet/CinC 2021 challenge) or binary ``.dat`` files (formats 16, 24,
32, 61, 80, 212). Digital samples become physical units as ``(digital - baseline) / gain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy import io as sio
from scipy import signal as sps

from medfuse.core.errors import ConfigError, DataError

__all__ = [
    "Waveform",
    "WfdbHeader",
    "WfdbSignal",
    "bandpass_waveform",
    "crop_or_pad",
    "load_waveform",
    "load_wfdb",
    "read_wfdb_header",
    "resample_waveform",
]

# Sample values WFDB reserves for "no sample" in each format; they become NaN.
_INVALID = {"16": -32768, "61": -32768, "80": -128, "24": -(2**23), "32": -(2**31), "212": -2048}
_TIME_COLUMNS = ("time", "t", "timestamp", "seconds", "time_s", "sample")


@dataclass
class Waveform:
    """A multi-lead recording: ``signal`` ``(C, T)`` float32 in physical units (NaN where missing)."""

    signal: np.ndarray
    sample_rate: float
    leads: list[str]
    units: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.signal.shape[-1] / self.sample_rate


@dataclass
class WfdbSignal:
    """One signal line of a WFDB header."""

    file_name: str
    fmt: str
    gain: float
    baseline: int
    units: str
    adc_res: int
    adc_zero: int
    init_value: int | None
    checksum: int | None
    byte_offset: int
    description: str


@dataclass
class WfdbHeader:
    """A parsed WFDB header: the record line, one :class:`WfdbSignal` per signal, and the comments."""

    record_name: str
    n_sig: int
    fs: float
    n_samples: int | None
    signals: list[WfdbSignal]
    comments: list[str]


def read_wfdb_header(path: str | Path) -> WfdbHeader:
    """Return the :class:`WfdbHeader` parsed from a ``.hea`` file (single-segment records).

    Defaults follow the specification: ``fs`` 250 Hz, gain 200 (also when given as 0), baseline =
    ``adc_zero``, units ``mV``, ``adc_res`` 12 (or by format).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read WFDB header: {exc}", path=path) from None
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), start=1)]
    comments = [ln.lstrip("#").strip() for _, ln in lines if ln.startswith("#")]
    body = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise DataError("WFDB header has no record line", path=path)
    row, record = body[0]
    parts = record.split()
    if "/" in parts[0]:
        raise DataError("multi-segment WFDB records are not supported; convert with wfdb first", path=path, row=row)
    try:
        n_sig = int(parts[1])
        fs = float(parts[2].split("/")[0]) if len(parts) > 2 else 250.0
        n_samples = int(parts[3]) if len(parts) > 3 else None
    except (IndexError, ValueError):
        raise DataError(f"record line must be 'name n_sig [fs [n_samples]]', got {record!r}", path=path, row=row) from None
    if len(body) - 1 < n_sig:
        raise DataError(f"record line declares {n_sig} signals but {len(body) - 1} signal lines follow", path=path)
    signals = [_parse_signal_line(ln, path, n) for n, ln in body[1 : 1 + n_sig]]
    return WfdbHeader(parts[0], n_sig, fs, n_samples, signals, comments)


def _parse_signal_line(line: str, path: Path, row: int) -> WfdbSignal:
    parts = line.split(maxsplit=8)
    try:
        file_name, spec = parts[0], parts[1]
        fmt = spec.split("+")[0].split(":")[0].split("x")[0]
        if "x" in spec.split("+")[0] and int(spec.split("+")[0].split(":")[0].split("x")[1]) != 1:
            raise DataError("several samples per frame are not supported", path=path, row=row)
        byte_offset = int(spec.split("+")[1]) if "+" in spec else 0
        gain, baseline, units = 0.0, None, "mV"
        if len(parts) > 2:
            gain_field = parts[2]
            if "/" in gain_field:
                gain_field, units = gain_field.split("/", 1)
            if "(" in gain_field:
                gain_field, base_text = gain_field.split("(", 1)
                baseline = int(base_text.rstrip(")"))
            gain = float(gain_field)
        adc_res = int(parts[3]) if len(parts) > 3 else (8 if fmt == "80" else 12)
        adc_zero = int(parts[4]) if len(parts) > 4 else 0
        init_value = int(parts[5]) if len(parts) > 5 else None
        checksum = int(parts[6]) if len(parts) > 6 else None
        description = parts[8] if len(parts) > 8 else ""
    except DataError:
        raise
    except (IndexError, ValueError):
        raise DataError(f"cannot parse WFDB signal line {line!r}", path=path, row=row) from None
    return WfdbSignal(
        file_name, fmt, gain if gain != 0 else 200.0, adc_zero if baseline is None else baseline, units,
        adc_res, adc_zero, init_value, checksum, byte_offset, description,
    )


def load_wfdb(record: str | Path, *, verify_checksum: bool = True) -> Waveform:
    """Return the :class:`Waveform` of a WFDB record (``record`` with or without ``.hea``).

    Signals come from MATLAB v4 ``.mat`` files (variable ``val``, ``(n_sig, T)``) or ``.dat`` files.
    ``verify_checksum`` compares each signal's 16-bit sum with the header and raises on mismatch (a
    damaged file). ``meta`` holds the record name, the header comments parsed as ``key: value`` and
    ``comments`` (the raw lines).
    """
    record = Path(record)
    header_path = record if record.suffix == ".hea" else record.with_name(record.name + ".hea")
    if not header_path.is_file():
        raise DataError(
            "WFDB header not found; give the record path without extension (name.hea next to the signal file)",
            path=header_path,
        )
    header = read_wfdb_header(header_path)
    groups: dict[str, list[int]] = {}
    for i, sig in enumerate(header.signals):
        groups.setdefault(sig.file_name, []).append(i)
    rows: dict[int, np.ndarray] = {}
    for file_name, idx in groups.items():
        signal_path = header_path.parent / file_name
        block = _read_signal_file(signal_path, [header.signals[i] for i in idx], header.n_samples)
        for k, i in enumerate(idx):
            rows[i] = block[k]
    lengths = {r.shape[0] for r in rows.values()}
    if len(lengths) != 1:
        raise DataError(f"signal files hold different numbers of samples: {sorted(lengths)}", path=header_path)
    digital = np.stack([rows[i] for i in range(header.n_sig)])
    if header.n_samples is not None and digital.shape[1] != header.n_samples:
        raise DataError(
            f"header declares {header.n_samples} samples, the signal file holds {digital.shape[1]}: truncated or "
            "mismatched record", path=header_path,
        )
    physical = np.empty(digital.shape, dtype=np.float64)
    for i, sig in enumerate(header.signals):
        if verify_checksum and sig.checksum is not None:
            total = int(digital[i].sum()) & 0xFFFF
            expected = sig.checksum & 0xFFFF
            if total != expected:
                raise DataError(
                    f"checksum mismatch for signal {i} ({sig.description or 'unnamed'}): header {sig.checksum}, "
                    f"data {total - 65536 if total >= 32768 else total}; the signal file is damaged "
                    "(pass verify_checksum=False to read it anyway)", path=header_path,
                )
        values = (digital[i] - sig.baseline) / sig.gain
        invalid = _INVALID.get(sig.fmt)
        if invalid is not None:
            values[digital[i] == invalid] = np.nan
        physical[i] = values
    meta: dict[str, Any] = {"record_name": header.record_name, "comments": header.comments}
    for line in header.comments:
        if ":" in line:
            key, value = line.split(":", 1)
            meta.setdefault(key.strip().lower(), value.strip())
    return Waveform(
        physical.astype(np.float32), header.fs,
        [s.description or f"ch{i}" for i, s in enumerate(header.signals)], [s.units for s in header.signals], meta,
    )


def _read_signal_file(path: Path, signals: list[WfdbSignal], n_samples: int | None) -> np.ndarray:
    """Return the digital samples ``(len(signals), T)`` int64 of one signal file."""
    if not path.is_file():
        raise DataError("WFDB signal file named in the header is missing", path=path)
    if path.suffix.lower() == ".mat":
        try:
            val = sio.loadmat(str(path))["val"]
        except KeyError:
            raise DataError(
                "MATLAB file has no variable 'val' (WFDB .mat signals are stored as 'val')", path=path
            ) from None
        except (ValueError, OSError, TypeError, NotImplementedError) as exc:
            raise DataError(
                f"cannot read MATLAB signal file ({exc}); it is truncated or not MATLAB v4/v5", path=path
            ) from None
        val = np.atleast_2d(np.asarray(val))
        if val.shape[0] != len(signals):
            raise DataError(f"'val' holds {val.shape[0]} signals, the header names {len(signals)} in this file", path=path)
        return val.astype(np.int64)
    fmts = {s.fmt for s in signals}
    if len(fmts) != 1:
        raise DataError(f"signals sharing one file must share a format, got {sorted(fmts)}", path=path)
    fmt = fmts.pop()
    raw = np.fromfile(path, dtype=np.uint8)[signals[0].byte_offset :]
    n_sig = len(signals)
    if fmt in ("16", "61", "32", "80"):
        dtype = {"16": "<i2", "61": ">i2", "32": "<i4", "80": "u1"}[fmt]
        item = np.dtype(dtype).itemsize
        usable = (raw.size // (item * n_sig)) * item * n_sig
        flat = raw[:usable].view(dtype).astype(np.int64)
        if fmt == "80":
            flat -= 128
    elif fmt == "24":
        triples = raw[: (raw.size // (3 * n_sig)) * 3 * n_sig].reshape(-1, 3).astype(np.int64)
        flat = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        flat = np.where(flat >= 2**23, flat - 2**24, flat)
    elif fmt == "212":
        # Two 12-bit samples in three bytes: low bytes first, the shared byte holds both high nibbles.
        triples = raw[: (raw.size // 3) * 3].reshape(-1, 3).astype(np.int64)
        first = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
        second = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
        flat = np.stack([first, second], axis=1).reshape(-1)
        flat = np.where(flat >= 2048, flat - 4096, flat)
        if n_samples is not None:
            flat = flat[: n_samples * n_sig]
        flat = flat[: (flat.size // n_sig) * n_sig]
    else:
        raise DataError(f"WFDB format {fmt} is not supported (supported: 16, 24, 32, 61, 80, 212, and .mat)", path=path)
    return flat.reshape(-1, n_sig).T


def load_waveform(
    path: str | Path, *, sample_rate: float | None = None, leads: list[str] | None = None, units: str = "mV"
) -> Waveform:
    """Return the :class:`Waveform` in ``path``: a WFDB record (``.hea``, or ``.mat``/``.dat`` with a header), CSV or NumPy.

    CSV: one column per lead (the header row names them); a ``time`` column, when present, gives the
    sample rate. ``.npy``: an array ``(C, T)`` (the shorter axis is taken as leads). ``.npz``: arrays
    ``signal`` (or the only array), and optionally ``sample_rate``/``fs`` and ``leads``.
    ``sample_rate`` is required where the file does not state it; ``leads`` renames or names the leads.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".hea", ".mat", ".dat") or (not path.exists() and path.with_name(path.name + ".hea").is_file()):
        wave = load_wfdb(path.with_suffix("") if suffix in (".hea", ".mat", ".dat") else path)
    elif not path.is_file():
        raise DataError(
            "waveform file not found; check the path (relative paths are resolved from the manifest's folder)", path=path
        )
    elif suffix == ".csv":
        wave = _load_csv(path, sample_rate, units)
    elif suffix in (".npy", ".npz"):
        wave = _load_numpy(path, sample_rate, units)
    else:
        raise DataError(f"unknown waveform format '{suffix}'; use WFDB (.hea), .csv, .npy or .npz", path=path)
    if leads is not None:
        if len(leads) != wave.signal.shape[0]:
            raise DataError(f"{len(leads)} lead names given for {wave.signal.shape[0]} leads", path=path)
        wave.leads = list(leads)
    return wave


def _load_csv(path: Path, sample_rate: float | None, units: str) -> Waveform:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot parse CSV ({exc})", path=path) from None
    if frame.empty:
        raise DataError("CSV holds no samples", path=path)
    columns = [str(c) for c in frame.columns]
    time_col = next((c for c in columns if c.strip().lower() in _TIME_COLUMNS), None)
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise DataError(f"not a number: {frame.iat[r, c]!r}", path=path, row=int(r) + 2, field=columns[c])
    if time_col is not None and sample_rate is None and time_col.lower() != "sample":
        steps = np.diff(numeric[time_col].to_numpy(dtype=np.float64))
        if steps.size == 0 or not np.median(steps) > 0:
            raise DataError(
                "cannot infer the sample rate from the time column; pass sample_rate", path=path, field=time_col
            )
        sample_rate = float(1.0 / np.median(steps))
    if sample_rate is None:
        raise DataError("CSV states no sample rate (no 'time' column); pass sample_rate", path=path)
    lead_cols = [c for c in columns if c != time_col]
    if not lead_cols:
        raise DataError("CSV has no signal columns", path=path)
    signal = numeric[lead_cols].to_numpy(dtype=np.float32).T
    return Waveform(
        np.ascontiguousarray(signal), float(sample_rate), lead_cols, [units] * len(lead_cols), {"source": str(path)}
    )


def _load_numpy(path: Path, sample_rate: float | None, units: str) -> Waveform:
    leads: list[str] | None = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                keys = list(data.keys())
                key = "signal" if "signal" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"npz holds {keys}; name the signal array 'signal'", path=path)
                array = data[key]
                for rate_key in ("sample_rate", "fs"):
                    if rate_key in keys and sample_rate is None:
                        sample_rate = float(data[rate_key])
                if "leads" in keys:
                    leads = [str(v) for v in data["leads"].tolist()]
        else:
            array = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read NumPy file ({exc}); it is truncated or holds objects", path=path) from None
    if sample_rate is None:
        raise DataError("NumPy file states no sample rate; pass sample_rate", path=path)
    array = np.asarray(array)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"expected a numeric (C, T) array, got {array.dtype} {array.shape}", path=path)
    if array.shape[0] > array.shape[1]:
        array = array.T
    n = array.shape[0]
    names = leads if leads is not None and len(leads) == n else [f"ch{i}" for i in range(n)]
    signal = np.ascontiguousarray(array, dtype=np.float32)
    return Waveform(signal, float(sample_rate), names, [units] * n, {"source": str(path)})


def resample_waveform(wave: Waveform, sample_rate: float) -> Waveform:
    """Return ``wave`` resampled to ``sample_rate`` with a polyphase filter (``scipy.signal.resample_poly``)."""
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    ratio = Fraction(sample_rate / wave.sample_rate).limit_denominator(10_000)
    if ratio == 1:
        return replace(wave, sample_rate=float(sample_rate))
    signal = sps.resample_poly(wave.signal.astype(np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return replace(wave, signal=signal.astype(np.float32), sample_rate=float(sample_rate))


def crop_or_pad(
    signal: np.ndarray, length: int, *, mode: str = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Return ``signal`` ``(C, T)`` cut or zero-padded along time to ``(C, length)``.

    ``mode``: ``start`` keeps/pads from the start, ``center`` cuts/pads evenly on both sides, ``random``
    cuts at a random offset drawn from ``rng`` (padding then goes at the end).
    """
    if length < 1:
        raise ConfigError(f"length must be at least 1, got {length}")
    if mode not in ("start", "center", "random"):
        raise ConfigError(f"mode: unknown value '{mode}'; known: start, center, random")
    if mode == "random" and rng is None:
        raise ConfigError("crop_or_pad(mode='random') needs rng=np.random.Generator")
    x = np.asarray(signal)
    n = x.shape[-1]
    if n >= length:
        if mode == "start":
            start = 0
        elif mode == "center":
            start = (n - length) // 2
        else:
            start = int(rng.integers(0, n - length + 1))  # type: ignore[union-attr]
        return x[..., start : start + length]
    before = (length - n) // 2 if mode == "center" else 0
    out = np.zeros((*x.shape[:-1], length), dtype=x.dtype)
    out[..., before : before + n] = x
    return out


def bandpass_waveform(
    wave: Waveform, low_hz: float | None = 0.5, high_hz: float | None = 40.0, *, order: int = 2
) -> Waveform:
    """Return ``wave`` band-pass filtered per lead, zero-phase Butterworth (``sosfiltfilt``).

    The 0.5-40 Hz default removes baseline wander (breathing, movement) and mains/EMG noise from ECG
    while keeping the QRS complex. NaN samples stay NaN in their lead; the rest of that lead is
    filtered with NaNs bridged by linear interpolation.
    """
    nyquist = wave.sample_rate / 2.0
    high = high_hz if high_hz is not None and high_hz < nyquist else None
    low = low_hz if low_hz is not None and low_hz > 0 else None
    if low is not None and high is not None and low >= high:
        raise ConfigError(f"band-pass: low_hz ({low_hz}) must be below high_hz ({high_hz})")
    if low is None and high is None:
        return wave
    band: Any = [low, high] if low is not None and high is not None else (low if low is not None else high)
    btype = "bandpass" if low is not None and high is not None else ("highpass" if low is not None else "lowpass")
    sos = sps.butter(order, band, btype=btype, fs=wave.sample_rate, output="sos")
    x = wave.signal.astype(np.float64)
    missing = np.isnan(x)
    if missing.any():
        t = np.arange(x.shape[-1])
        for c in np.nonzero(missing.any(axis=-1))[0]:
            ok = ~missing[c]
            x[c] = np.interp(t, t[ok], x[c, ok]) if ok.any() else 0.0
    padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
    if padlen >= 1:
        x = sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen)
    x[missing] = np.nan
    return replace(wave, signal=x.astype(np.float32))
