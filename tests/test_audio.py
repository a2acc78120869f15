"""Audio IO, preprocessing, torch spectrogram features (parity with librosa) and audio encoders."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from medfuse.core import ConfigError, DataError
from medfuse.data.audio import (
    AudioConfig,
    add_noise,
    bandpass,
    decode_audio_bytes,
    load_audio,
    load_audio_windows,
    normalize_audio,
    prepare_audio_windows,
    random_windows,
    resample_audio,
    window_signal,
)
from medfuse.models.base import ENCODERS, EncoderOutput
from medfuse.models.encoders.audio import AudioCNNEncoder, AudioTimmEncoder, LogMelFrontend
from medfuse.models.features import MFCC, LogMelSpectrogram, MelSpectrogram, SpecAugment, power_to_db

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEART = SHARED / "heartsound2016"


def tone(freqs: list[float], sr: int, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def amplitude_at(x: np.ndarray, sr: float, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) / (np.hanning(x.size).sum() / 2)
    return float(spectrum[int(round(freq * x.size / sr))])


def heart_rows(n: int) -> list[dict[str, str]]:
    manifest = HEART / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"shared heart-sound data not found at {HEART} (../shared/data is absent in a fresh clone)")
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if r["split"] == "train"][:n] + [r for r in rows if r["split"] == "dev"][:1]


# --- IO -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".wav", "FLOAT")])
def test_load_audio_round_trip(tmp_path: Path, suffix: str, subtype: str) -> None:
    x = tone([50.0, 180.0], 2000, 1.5)
    path = tmp_path / f"beat{suffix}"
    sf.write(path, x, 2000, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == 2000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32768 + 1e-7)


def test_stereo_mixes_to_mono_or_keeps_channels(tmp_path: Path) -> None:
    left, right = tone([60.0], 4000, 0.5), tone([200.0], 4000, 0.5, amp=0.1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 4000, subtype="FLOAT")
    mono, _ = load_audio(path)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, left.size)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(both[1], right, atol=1e-6)


def test_resampling_keeps_tones_and_removes_aliases(tmp_path: Path) -> None:
    path = tmp_path / "fast.wav"
    sf.write(path, tone([50.0, 1500.0], 4000, 2.0), 4000, subtype="FLOAT")
    y, sr = load_audio(path, sample_rate=2000)
    assert sr == 2000 and y.shape == (4000,)
    assert amplitude_at(y, sr, 50.0) == pytest.approx(0.3, rel=0.02)
    # 1500 Hz is above the new Nyquist (1000 Hz): it must not fold back to 500 Hz.
    assert amplitude_at(y, sr, 500.0) < 1e-3
    up = resample_audio(y, 2000, 3000)
    assert up.shape == (6000,) and amplitude_at(up, 3000, 50.0) == pytest.approx(0.3, rel=0.02)


def test_decode_bytes_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.flac"
    sf.write(path, tone([90.0], 2000, 1.0), 2000)
    from_file, _ = load_audio(path, sample_rate=1000)
    from_bytes, sr = decode_audio_bytes(path.read_bytes(), sample_rate=1000)
    assert sr == 1000
    np.testing.assert_array_equal(from_file, from_bytes)


def test_bad_audio_raises_data_error(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, tone([80.0], 2000, 2.0), 2000, subtype="PCM_16")
    raw = good.read_bytes()
    cases = {
        "garbage.wav": b"RIFF" + bytes(range(256)) * 4,
        "half.wav": raw[: len(raw) // 2],
        "header_only.wav": raw[:44],
        "text.flac": b"not audio at all",
    }
    flac = tmp_path / "good.flac"
    sf.write(flac, tone([80.0], 2000, 2.0), 2000)
    cases["half.flac"] = flac.read_bytes()[: flac.stat().st_size // 2]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as info:
            load_audio(tmp_path / name)
        assert name in str(info.value)
        with pytest.raises(DataError):
            decode_audio_bytes(data, name=name)
    with pytest.raises(DataError, match="truncated"):
        load_audio(tmp_path / "half.wav")
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "missing.wav")


# --- preprocessing ------------------------------------------------------------------------------------


def test_bandpass_keeps_band_removes_rest_without_phase_shift() -> None:
    sr = 2000
    x = tone([5.0, 100.0, 900.0], sr, 4.0)
    y = bandpass(x, sr, 25.0, 400.0)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert amplitude_at(y, sr, 100.0) == pytest.approx(0.3, rel=0.02)
    assert amplitude_at(y, sr, 5.0) < 0.3 * 0.05
    assert amplitude_at(y, sr, 900.0) < 0.3 * 0.05
    inband = tone([100.0], sr, 4.0)
    mid = slice(1000, 7000)
    np.testing.assert_allclose(bandpass(inband, sr)[mid], inband[mid], atol=0.01)
    with pytest.raises(ConfigError):
        bandpass(x, sr, 400.0, 25.0)


@pytest.mark.parametrize("zero_phase", [True, False])
@pytest.mark.parametrize("band", [(25.0, 400.0), (20.0, 600.0)])
def test_bandpass_matches_scipy(zero_phase: bool, band: tuple[float, float]) -> None:
    from scipy import signal as sps

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(8000) + tone([3.0, 60.0, 150.0, 800.0], 2000, 4.0)).astype(np.float32)
    sos = sps.butter(4, list(band), btype="bandpass", fs=2000, output="sos")
    reference = sps.sosfiltfilt(sos, x.astype(np.float64)) if zero_phase else sps.sosfilt(sos, x.astype(np.float64))
    ours = bandpass(x, 2000, *band, order=4, zero_phase=zero_phase)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # the same response as the design's: |H| once causally, |H|^2 forwards-backwards, at a tone in the middle
    _, h = sps.sosfreqz(sos, worN=[150.0, 800.0], fs=2000)
    gain = np.abs(h) ** (2 if zero_phase else 1)
    y = bandpass(tone([150.0, 800.0], 2000, 4.0), 2000, *band, zero_phase=zero_phase)
    assert amplitude_at(y[2000:], 2000, 150.0) == pytest.approx(0.3 * gain[0], rel=0.02)
    assert amplitude_at(y[2000:], 2000, 800.0) == pytest.approx(0.3 * gain[1], abs=2e-3)
    with pytest.raises(ConfigError, match="order"):
        bandpass(x, 2000, order=0)


def test_causal_bandpass_delays_and_zero_phase_does_not() -> None:
    sr = 2000
    pulse = np.zeros(4000, dtype=np.float32)
    pulse[2000] = 1.0
    peak_zero = int(np.argmax(np.abs(bandpass(pulse, sr, 25.0, 400.0))))
    peak_causal = int(np.argmax(np.abs(bandpass(pulse, sr, 25.0, 400.0, zero_phase=False))))
    assert peak_zero == 2000 and peak_causal > 2000


def test_normalize_modes() -> None:
    x = 3.0 + 2.0 * tone([30.0], 1000, 1.0)
    z = normalize_audio(x, "zscore")
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, rel=1e-4)
    assert np.abs(normalize_audio(x, "peak")).max() == pytest.approx(1.0)
    assert not np.isnan(normalize_audio(np.zeros(10, np.float32))).any()
    with pytest.raises(ConfigError):
        normalize_audio(x, "minmax")  # type: ignore[arg-type]


def test_window_signal_covers_clip_and_pads_short_ones() -> None:
    sr = 100
    x = np.arange(1100, dtype=np.float32)
    w = window_signal(x, sr, window_s=4.0, hop_s=2.0)
    assert w.shape == (5, 400)
    np.testing.assert_array_equal(w[:4, 0], [0, 200, 400, 600])
    np.testing.assert_array_equal(w[-1], x[-400:])
    assert window_signal(x[:1000], sr, 4.0, 2.0).shape == (4, 400)
    short = window_signal(x[:150], sr, 4.0)
    assert short.shape == (1, 400) and short[0, 149] == 149 and not short[0, 150:].any()
    with pytest.raises(ConfigError):
        window_signal(x[None], sr, 4.0)


def test_load_audio_windows_and_config(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tone([60.0], 4000, 12.0), 4000, subtype="PCM_16")
    cfg = AudioConfig(sample_rate=2000, window_s=5.0, hop_s=2.5, max_windows=3)
    windows = load_audio_windows(path, cfg)
    assert windows.shape == (3, 10000) and windows.dtype == np.float32
    assert load_audio_windows(path, AudioConfig(window_s=None)).shape == (1, 24000)
    for bad in ({"normalize": "max"}, {"band": (400.0, 25.0)}, {"window_s": 0.0}, {"sample_rate": 0}):
        with pytest.raises(ConfigError):
            AudioConfig(**bad)  # type: ignore[arg-type]


def test_add_noise_hits_the_snr_in_band() -> None:
    rng = np.random.default_rng(3)
    x = tone([100.0], 2000, 10.0)
    for snr in (0.0, 10.0, 30.0):
        noisy = add_noise(x, snr, np.random.default_rng(5), sample_rate=2000, band=(25.0, 400.0))
        noise = noisy - x
        measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.05)
        assert amplitude_at(noise, 2000, 800.0) < 0.05 * amplitude_at(noise, 2000, 200.0) + 1e-6
    assert not add_noise(np.zeros(100, np.float32), 10.0, rng).any()


def test_random_windows_are_crops_of_the_clip() -> None:
    sr = 100
    x = np.arange(1000, dtype=np.float32)
    w = random_windows(x, sr, 2.0, 5, np.random.default_rng(0))
    assert w.shape == (5, 200)
    starts = w[:, 0].astype(int)
    assert list(starts) == sorted(starts) and len(set(starts)) > 1
    for row, start in zip(w, starts, strict=True):
        np.testing.assert_array_equal(row, x[start : start + 200])
    np.testing.assert_array_equal(w, random_windows(x, sr, 2.0, 5, np.random.default_rng(0)))
    short = random_windows(x[:50] + 1.0, sr, 2.0, 3, np.random.default_rng(1))
    assert short.shape == (1, 200) and (short != 0).sum() == 50


def test_prepare_audio_windows_augments_only_with_a_generator() -> None:
    rng = np.random.default_rng(2)
    x = (tone([60.0, 120.0], 2000, 9.0) + 0.1 * rng.standard_normal(18000)).astype(np.float32)
    cfg = AudioConfig(window_s=4.0, hop_s=2.0, train_windows=2, noise_snr_db=(5.0, 5.0), clip=3.0)
    fixed = prepare_audio_windows(x, 2000, cfg)
    expected = window_signal(np.clip(normalize_audio(bandpass(x, 2000)), -3.0, 3.0), 2000, 4.0, 2.0)
    np.testing.assert_allclose(fixed, expected, atol=1e-6)
    np.testing.assert_array_equal(fixed, prepare_audio_windows(x, 2000, cfg))
    train = prepare_audio_windows(x, 2000, cfg, rng=np.random.default_rng(4))
    assert train.shape == (2, 8000) and np.abs(train).max() <= 3.0
    again = prepare_audio_windows(x, 2000, cfg, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(train, again)
    # without train_windows a generator shifts the window grid by less than one hop
    grid = AudioConfig(window_s=4.0, hop_s=2.0, band=None, normalize="none")
    shifted = prepare_audio_windows(np.arange(18000, dtype=np.float32), 2000, grid, rng=np.random.default_rng(0))
    assert 0 < shifted[0, 0] < 4000 and shifted.shape[1] == 8000
    for bad in ({"train_windows": 0}, {"noise_snr_db": (20.0, 5.0)}, {"clip": 0.0}, {"filter_order": 0},
                {"train_windows": 2, "window_s": None}):
        with pytest.raises(ConfigError):
            AudioConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.shared
def test_shared_heart_sounds_load() -> None:
    for row in heart_rows(3):
        x, sr = load_audio(HEART / row["audio_path"])
        assert sr == int(row["sample_rate"]) == 2000
        assert abs(x.size / sr - float(row["duration_s"])) < 0.01
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
        windows = load_audio_windows(HEART / row["audio_path"])
        assert windows.shape[1] == 10000 and windows.shape[0] >= 1


# --- features -----------------------------------------------------------------------------------------

MEL_KW = {"n_fft": 256, "hop_length": 32, "n_mels": 48, "fmin": 20.0, "fmax": 900.0}


def _signal() -> np.ndarray:
    rng = np.random.default_rng(7)
    return tone([50.0, 230.0], 2000, 3.0) + 0.05 * rng.standard_normal(6000).astype(np.float32)


@pytest.mark.parametrize("htk,win_length,n_fft", [(False, None, 256), (True, 200, 255)])
def test_mel_db_mfcc_match_librosa(htk: bool, win_length: int | None, n_fft: int) -> None:
    librosa = pytest.importorskip("librosa")
    y = _signal()
    kw = {**MEL_KW, "n_fft": n_fft, "win_length": win_length, "htk": htk}
    ref = librosa.feature.melspectrogram(y=y, sr=2000, center=True, pad_mode="constant", norm="slaney", **kw)
    mel = MelSpectrogram(2000, **kw)(torch.from_numpy(y)).numpy()
    assert mel.shape == ref.shape
    assert np.abs(mel - ref).max() / ref.max() < 1e-5
    big = ref > 1e-4 * ref.max()
    assert (np.abs(mel - ref)[big] / ref[big]).max() < 1e-3
    ref_db = librosa.power_to_db(ref, ref=1.0, amin=1e-10, top_db=80.0)
    np.testing.assert_allclose(power_to_db(torch.from_numpy(mel)).numpy(), ref_db, atol=2e-3)
    np.testing.assert_allclose(LogMelSpectrogram(2000, **kw)(torch.from_numpy(y)).numpy(), ref_db, atol=2e-3)
    ref_mfcc = librosa.feature.mfcc(S=ref_db, n_mfcc=13, lifter=22)
    mfcc = MFCC(13, 2000, lifter=22, **kw)(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(mfcc, ref_mfcc, atol=5e-3)


@pytest.mark.shared
def test_log_mel_matches_librosa_on_a_heart_sound() -> None:
    librosa = pytest.importorskip("librosa")
    row = heart_rows(1)[0]
    y, sr = load_audio(HEART / row["audio_path"])
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, **MEL_KW), top_db=80.0)
    ours = LogMelSpectrogram(sr, **MEL_KW)(torch.from_numpy(y)).numpy()
    # float32 rounding shows most in the quietest bins, near the top_db floor (measured ~2e-3 dB)
    np.testing.assert_allclose(ours, ref, atol=5e-3)


def test_features_are_batched_per_example() -> None:
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.standard_normal((2, 3, 1000)).astype(np.float32))
    batch[1, 2] *= 100.0  # top_db must be relative to each example's own peak
    log_mel = LogMelSpectrogram(2000, n_fft=128, hop_length=16, n_mels=32)
    out = log_mel(batch)
    assert out.shape == (2, 3, 32, 1 + 1000 // 16)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], log_mel(batch[i, j]), rtol=1e-5, atol=1e-4)
    assert MFCC(20, 2000, n_fft=128, hop_length=16, n_mels=32)(batch).shape == (2, 3, 20, 63)


def test_spec_augment_masks_in_training_only_and_is_reproducible() -> None:
    spec = torch.randn(4, 40, 100) + 5.0
    aug = SpecAugment(freq_mask_param=8, time_mask_param=20, num_freq_masks=2, num_time_masks=2, mask_value=0.0)
    out1 = aug(spec, generator=torch.Generator().manual_seed(3))
    out2 = aug(spec, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out1, out2)
    masked = out1 == 0
    assert masked.any() and (out1[~masked] == spec[~masked]).all()
    freq_rows = masked.all(dim=2).sum(dim=1)
    time_cols = masked.all(dim=1).sum(dim=1)
    assert (freq_rows <= 16).all() and (time_cols <= 40).all()
    assert not torch.equal(masked[0], masked[1])
    aug.eval()
    assert aug(spec) is spec


# --- encoders ----------------------------------------------------------------------------------------

SMALL = {"sample_rate": 2000, "n_fft": 128, "hop_length": 32, "n_mels": 32}


def test_encoders_are_registered() -> None:
    assert ENCODERS.get("audio_cnn") is AudioCNNEncoder
    assert ENCODERS.get("audio_timm") is AudioTimmEncoder


@pytest.mark.parametrize("window_pool", ["mean", "attention"])
def test_audio_cnn_shapes_windows_and_masks(window_pool: str) -> None:
    torch.manual_seed(0)
    enc = AudioCNNEncoder(24, channels=(8, 16), window_pool=window_pool, window_chunk=2, **SMALL).eval()
    clip = enc(torch.randn(2, 2000))
    assert isinstance(clip, EncoderOutput) and clip.pooled.shape == (2, 24)
    n_tokens = clip.tokens.shape[1]
    assert clip.tokens.shape == (2, n_tokens, 24) and clip.token_mask.all()
    windows = torch.randn(2, 3, 2000)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = enc({"audio": windows, "audio_mask": mask})
    assert out.pooled.shape == (2, 24) and out.tokens.shape == (2, 3 * n_tokens, 24)
    assert out.token_mask.sum(dim=1).tolist() == [2 * n_tokens, n_tokens]
    changed = windows.clone()
    changed[0, 2] = 50.0 * torch.randn(2000)
    changed[1, 1:] = 0.0
    again = enc({"audio": changed, "audio_mask": mask})
    torch.testing.assert_close(again.pooled, out.pooled)
    # without a mask, all-zero (padding) windows are left out
    padded = windows.clone()
    padded[0, 2] = 0.0
    padded[1, 1:] = 0.0
    torch.testing.assert_close(enc(padded).pooled, out.pooled)
    # one window is the same as the clip
    torch.testing.assert_close(enc(windows[:, :1]).pooled, enc(windows[:, 0]).pooled)
    silent = enc({"audio": windows, "audio_mask": torch.zeros(2, 3, dtype=torch.bool)})
    assert not silent.pooled.any() and silent.tokens.shape == (2, 3, 24) and not silent.token_mask.any()
    for length in (150, 777, 6000):
        assert enc(torch.randn(1, 2, length)).pooled.shape == (1, 24)


def test_audio_cnn_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    enc = AudioCNNEncoder(16, channels=(8, 16), spec_augment=True, **SMALL).train()
    out = enc(torch.randn(3, 2, 1500))
    (out.pooled.square().mean() + out.tokens.mean()).backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_audio_timm_cnn_and_vit_backbones() -> None:
    pytest.importorskip("timm")
    torch.manual_seed(0)
    enc = AudioTimmEncoder("test_resnet", output_dim=20, window_chunk=1, **SMALL)
    out = enc(torch.randn(2, 2, 2000))
    assert enc.output_dim == 20 and out.pooled.shape == (2, 20) and out.tokens.shape[::2] == (2, 20)
    out.pooled.sum().backward()
    stem = next(enc.backbone.parameters())
    assert stem.shape[1] == 1 and stem.grad is not None and stem.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.pooled_proj.parameters())
    vit = AudioTimmEncoder("test_vit", image_size=(32, 64), **SMALL)
    out = vit(torch.randn(2, 2000))
    # prefix (class) token dropped: (32 / 16) * (64 / 16) patches per window
    assert out.pooled.shape == (2, vit.output_dim) and out.tokens.shape[1] == 8
    with pytest.raises(ConfigError, match="unknown timm architecture"):
        AudioTimmEncoder("no_such_net_xyz")


def test_audio_timm_loads_local_rgb_weights_into_one_channel(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    rgb = timm.create_model("test_resnet", num_classes=0, in_chans=3)
    save_file(rgb.state_dict(), str(tmp_path / "rgb.safetensors"))
    enc = AudioTimmEncoder("test_resnet", weights=str(tmp_path / "rgb.safetensors"), **SMALL)
    assert enc.load_report is not None and enc.load_report.adapted
    stem = enc.load_report.adapted[0]
    torch.testing.assert_close(enc.backbone.state_dict()[stem], rgb.state_dict()[stem].sum(dim=1, keepdim=True))
    unloaded = AudioTimmEncoder("test_resnet", weights=str(tmp_path / "rgb.safetensors"), load_weights=False)
    assert unloaded.load_report is None


def test_frontend_frequency_norm_removes_a_device_response_and_eq_trains_only() -> None:
    from scipy import signal as sps

    rng = np.random.default_rng(0)
    x = bandpass(rng.standard_normal(8000).astype(np.float32) * np.repeat(rng.random(40), 200).astype(np.float32), 2000)
    # another device: a fixed peaking response (+9 dB near 150 Hz) convolved with the same sound
    b, a = sps.iirpeak(150.0, 1.0, fs=2000)
    device = (x + 1.8 * sps.lfilter(b, a, x)).astype(np.float32)
    pair = torch.from_numpy(np.stack([x, device]))
    gaps = {}
    for norm in ("image", "frequency"):
        frontend = LogMelFrontend(2000, 256, 40, 32, 20.0, 500.0, spec_norm=norm).eval()
        out = frontend(pair)
        assert out.shape == (2, 1, 32, 201)
        gaps[norm] = float((out[0] - out[1]).abs().mean())
    assert gaps["frequency"] < 0.5 * gaps["image"]
    frontend = LogMelFrontend(2000, 256, 40, 32, 20.0, 500.0, eq_db=6.0)
    clean = frontend.eval()(pair)
    assert torch.equal(clean, frontend(pair))
    frontend.train()
    curves = frontend.random_eq(3, torch.Generator().manual_seed(0))
    assert curves.shape == (3, 32, 1) and curves.abs().max() <= 6.0 and curves.std() > 0
    assert not torch.equal(frontend(pair), clean)
    with pytest.raises(ConfigError):
        LogMelFrontend(spec_norm="bin")
