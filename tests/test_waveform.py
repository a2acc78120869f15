"""Waveform IO (WFDB .hea + .mat/.dat, CSV, NumPy) with parity against wfdb, and signal helpers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import io as sio

from medfuse.core import ConfigError, DataError
from medfuse.data.waveform import (
    Waveform,
    bandpass_waveform,
    crop_or_pad,
    load_waveform,
    load_wfdb,
    read_wfdb_header,
    resample_waveform,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ECG = SHARED / "ecg_cinc2021"


def sine(freqs: list[float], fs: float, seconds: float) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return sum(np.sin(2 * np.pi * f * t) for f in freqs)


def write_mat_record(folder: Path, name: str, digital: np.ndarray, signal_fields: list[str], fs: int = 500) -> Path:
    """Write ``name.mat`` (MATLAB v4, variable ``val``) and a hand-written ``name.hea``; return the record path."""
    sio.savemat(folder / f"{name}.mat", {"val": digital.astype(np.int16)}, format="4")
    lines = [f"{name} {digital.shape[0]} {fs} {digital.shape[1]}"]
    for row, fields in zip(digital, signal_fields):
        checksum = int(row.astype(np.int64).sum()) & 0xFFFF
        checksum = checksum - 65536 if checksum >= 32768 else checksum
        lines.append(fields.format(name=name, init=int(row[0]), checksum=checksum))
    lines += ["# Age: 61", "# Sex: Female", "# Dx: 426783006"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


@pytest.fixture()
def mat_record(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    digital = rng.integers(-3000, 3000, size=(3, 1200)).astype(np.int16)
    digital[1, 7] = -32768  # WFDB's "no sample" value
    fields = [
        "{name}.mat 16x1+24 1000.0(0)/mV 16 0 {init} {checksum} 0 I",
        "{name}.mat 16+24 200.0(-25)/uV 16 0 {init} {checksum} 0 II",
        "{name}.mat 16+24 400.0/mV 16 12 {init} {checksum} 0 V1 lead",  # baseline defaults to adc_zero
    ]
    return write_mat_record(tmp_path, "rec1", digital, fields)


def test_header_parsing(mat_record: Path) -> None:
    header = read_wfdb_header(mat_record.with_suffix(".hea"))
    assert (header.record_name, header.n_sig, header.fs, header.n_samples) == ("rec1", 3, 500.0, 1200)
    second, third = header.signals[1], header.signals[2]
    assert (second.gain, second.baseline, second.units, second.byte_offset) == (200.0, -25, "uV", 24)
    assert (third.baseline, third.adc_zero, third.description) == (12, 12, "V1 lead")
    assert header.comments == ["Age: 61", "Sex: Female", "Dx: 426783006"]


def test_mat_record_matches_wfdb(mat_record: Path) -> None:
    wfdb = pytest.importorskip("wfdb")
    wave = load_wfdb(mat_record)
    ref = wfdb.rdrecord(str(mat_record))
    assert wave.signal.shape == (3, 1200) and wave.signal.dtype == np.float32
    assert wave.leads == ref.sig_name == ["I", "II", "V1 lead"]
    assert wave.units == ref.units and wave.sample_rate == ref.fs
    np.testing.assert_allclose(wave.signal, ref.p_signal.T, atol=1e-6, equal_nan=True)
    assert np.isnan(wave.signal[1, 7]) and np.isnan(wave.signal).sum() == 1
    assert wave.meta["age"] == "61" and wave.meta["dx"] == "426783006" and wave.meta["record_name"] == "rec1"
    assert wave.duration_s == pytest.approx(2.4)
    for variant in (mat_record.with_suffix(".hea"), mat_record.with_suffix(".mat")):
        np.testing.assert_array_equal(load_waveform(variant).signal, wave.signal)


@pytest.mark.parametrize("fmt", ["16", "24", "32", "61", "80", "212"])
def test_dat_formats_match_wfdb(tmp_path: Path, fmt: str) -> None:
    wfdb = pytest.importorskip("wfdb")
    rng = np.random.default_rng(1)
    p_signal = np.stack([sine([1.3], 250, 4.0), 0.4 * sine([7.0], 250, 4.0)], axis=1) + 0.01 * rng.standard_normal((1000, 2))
    kwargs = {} if fmt != "80" else {"adc_gain": [100.0, 200.0], "baseline": [0, 3]}
    written = "16" if fmt == "61" else fmt  # wfdb cannot write big-endian 61: swap the bytes of a 16 record
    wfdb.wrsamp(f"rec{fmt}", fs=250, units=["mV", "mV"], sig_name=["I", "II"], p_signal=p_signal,
                fmt=[written, written], write_dir=str(tmp_path), **kwargs)
    if fmt == "61":
        dat, hea = tmp_path / "rec61.dat", tmp_path / "rec61.hea"
        dat.write_bytes(np.fromfile(dat, dtype="<i2").astype(">i2").tobytes())
        hea.write_text(hea.read_text().replace("rec61.dat 16 ", "rec61.dat 61 "))
        assert read_wfdb_header(hea).signals[0].fmt == "61"
    wave = load_wfdb(tmp_path / f"rec{fmt}")
    ref = wfdb.rdrecord(str(tmp_path / f"rec{fmt}"))
    np.testing.assert_allclose(wave.signal, ref.p_signal.T, atol=1e-6)
    assert wave.leads == ["I", "II"] and wave.sample_rate == 250.0


@pytest.mark.shared
def test_shared_cinc2021_records_match_wfdb() -> None:
    wfdb = pytest.importorskip("wfdb")
    manifest = ECG / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"shared ECG data not found at {ECG} (../shared/data is absent in a fresh clone)")
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    worst = 0.0
    for row in rows:
        wave = load_waveform(ECG / row["record_path"])
        ref = wfdb.rdrecord(str(ECG / row["record_path"]))
        assert wave.signal.shape == (int(row["leads"]), int(row["n_samples"]))
        assert wave.sample_rate == float(row["sample_rate"]) and wave.leads == ref.sig_name
        worst = max(worst, float(np.abs(wave.signal - ref.p_signal.T).max()))
        assert wave.meta["sex"] == row["sex"]
    assert worst < 1e-5


def test_damaged_records_raise_data_error(mat_record: Path, tmp_path: Path) -> None:
    header = mat_record.with_suffix(".hea")
    mat = mat_record.with_suffix(".mat")
    text = header.read_text()
    good_mat = mat.read_bytes()
    # one changed sample breaks the checksum
    changed = bytearray(good_mat)
    changed[100] ^= 0x01
    mat.write_bytes(bytes(changed))
    with pytest.raises(DataError, match="checksum"):
        load_wfdb(mat_record)
    assert load_wfdb(mat_record, verify_checksum=False).signal.shape == (3, 1200)
    mat.write_bytes(good_mat[: len(good_mat) // 2])
    with pytest.raises(DataError, match="rec1.mat"):
        load_wfdb(mat_record)
    mat.write_bytes(good_mat)
    header.write_text(text.replace("rec1 3 500 1200", "rec1 3 500 1500"))
    with pytest.raises(DataError, match="1500"):
        load_wfdb(mat_record)
    header.write_text(text.replace("rec1 3 500 1200", "rec1 4 500 1200"))
    with pytest.raises(DataError, match="4 signals"):
        load_wfdb(mat_record)
    header.write_text(text.replace("1000.0(0)/mV", "one(0)/mV"))
    with pytest.raises(DataError, match="line 2"):
        load_wfdb(mat_record)
    with pytest.raises(DataError, match="not found"):
        load_wfdb(tmp_path / "nothing")
    mat.unlink()
    header.write_text(text)
    with pytest.raises(DataError, match="missing"):
        load_wfdb(mat_record)


def test_csv_waveforms(tmp_path: Path) -> None:
    fs = 100.0
    t = np.arange(300) / fs
    timed = tmp_path / "ppg.csv"
    timed.write_text("time,red,ir\n" + "".join(f"{a:.4f},{np.sin(a):.6f},{np.cos(a):.6f}\n" for a in t))
    wave = load_waveform(timed)
    assert wave.sample_rate == pytest.approx(fs) and wave.leads == ["red", "ir"]
    np.testing.assert_allclose(wave.signal[1], np.cos(t), atol=1e-6)
    plain = tmp_path / "ecg.csv"
    plain.write_text("I,II\n1,2\n3,4\n5,\n")
    with pytest.raises(DataError, match="sample_rate"):
        load_waveform(plain)
    wave = load_waveform(plain, sample_rate=500, leads=["lead I", "lead II"])
    assert wave.signal.shape == (2, 3) and np.isnan(wave.signal[1, 2]) and wave.leads == ["lead I", "lead II"]
    bad = tmp_path / "bad.csv"
    bad.write_text("I,II\n1,2\n3,oops\n")
    with pytest.raises(DataError) as info:
        load_waveform(bad, sample_rate=500)
    assert "line 3" in str(info.value) and "'II'" in str(info.value) and "bad.csv" in str(info.value)


def test_numpy_waveforms(tmp_path: Path) -> None:
    signal = np.random.default_rng(2).standard_normal((3, 400)).astype(np.float32)
    np.save(tmp_path / "ct.npy", signal)
    np.save(tmp_path / "tc.npy", signal.T)
    for name in ("ct.npy", "tc.npy"):
        np.testing.assert_array_equal(load_waveform(tmp_path / name, sample_rate=100).signal, signal)
    np.savez(tmp_path / "rec.npz", signal=signal, fs=250.0, leads=np.array(["a", "b", "c"]))
    wave = load_waveform(tmp_path / "rec.npz")
    assert wave.sample_rate == 250.0 and wave.leads == ["a", "b", "c"]
    with pytest.raises(DataError, match="sample rate"):
        load_waveform(tmp_path / "ct.npy")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="broken.npy"):
        load_waveform(tmp_path / "broken.npy", sample_rate=100)
    with pytest.raises(DataError, match="unknown waveform format"):
        (tmp_path / "x.edf").write_bytes(b"0")
        load_waveform(tmp_path / "x.edf")


def test_resample_keeps_the_rhythm() -> None:
    wave = Waveform(np.stack([sine([5.0], 500, 4.0)]).astype(np.float32), 500.0, ["I"], ["mV"])
    half = resample_waveform(wave, 250)
    assert half.signal.shape == (1, 1000) and half.sample_rate == 250.0
    np.testing.assert_allclose(half.signal[0, 50:-50], sine([5.0], 250, 4.0)[50:-50], atol=2e-3)
    odd = resample_waveform(wave, 360)
    assert odd.signal.shape == (1, 1440)
    assert resample_waveform(wave, 500).signal is wave.signal


def test_crop_or_pad() -> None:
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    np.testing.assert_array_equal(crop_or_pad(x, 4, mode="start"), x[:, :4])
    np.testing.assert_array_equal(crop_or_pad(x, 4, mode="center"), x[:, 3:7])
    padded = crop_or_pad(x, 14, mode="center")
    assert padded.shape == (2, 14) and not padded[:, :2].any() and (padded[:, 2:12] == x).all()
    a = crop_or_pad(x, 5, mode="random", rng=np.random.default_rng(4))
    b = crop_or_pad(x, 5, mode="random", rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 5) and a[0, 1] - a[0, 0] == 1
    with pytest.raises(ConfigError):
        crop_or_pad(x, 5, mode="random")


def test_ecg_bandpass_removes_wander_and_mains() -> None:
    fs = 500.0
    clean = sine([10.0], fs, 8.0)
    noisy = clean + 2.0 * sine([0.1], fs, 8.0) + 0.5 * sine([60.0], fs, 8.0)
    signal = np.stack([noisy, noisy]).astype(np.float32)
    signal[1, 1000:1010] = np.nan
    out = bandpass_waveform(Waveform(signal, fs, ["I", "II"], ["mV", "mV"]))
    mid = slice(500, -500)
    assert np.abs(out.signal[0, mid] - clean[mid]).max() < 0.1
    assert np.isnan(out.signal[1, 1000:1010]).all() and np.isnan(out.signal).sum() == 10
    assert np.abs(out.signal[1, 2000:3000] - clean[2000:3000]).max() < 0.1
