"""Video IO (MP4/AVI/MKV via PyAV, DICOM cine via pydicom) and the per-frame video encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.core import ConfigError, DataError
from medfuse.data.video import load_video, sample_frame_indices, write_video
from medfuse.models.base import ENCODERS
from medfuse.models.encoders.video import VideoFramesEncoder

av = pytest.importorskip("av", reason="PyAV is needed for video tests: pip install 'medfuse[video]'")

N_FRAMES = 30


def ramp_clip(n: int = N_FRAMES, h: int = 32, w: int = 48) -> np.ndarray:
    """Frames of constant grey level that encodes the frame index: value = (i + 3) / (n + 6)."""
    return np.stack([np.full((h, w), (i + 3) / (n + 6), dtype=np.float32) for i in range(n)])


def frame_ids(frames: np.ndarray, n: int = N_FRAMES) -> np.ndarray:
    axes = tuple(range(1, frames.ndim))
    return np.round(frames.mean(axis=axes) * (n + 6) - 3).astype(int)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    frames = ramp_clip()
    return {
        "mp4": write_video(root / "ramp.mp4", frames, fps=25),
        "mpeg4": write_video(root / "ramp_mpeg4.mp4", frames, fps=25, codec="mpeg4"),
        "avi": write_video(root / "ramp.avi", frames, fps=25),
        "mkv": write_video(root / "ramp.mkv", frames, fps=25),  # Matroska stores no frame count
    }


def test_sample_frame_indices() -> None:
    np.testing.assert_array_equal(sample_frame_indices(100, 5), [0, 25, 50, 74, 99])
    np.testing.assert_array_equal(sample_frame_indices(3, 5), [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(sample_frame_indices(20, 4, "strided", stride=3, offset=5), [5, 8, 11, 14])
    np.testing.assert_array_equal(sample_frame_indices(10, 4, "strided", stride=4, offset=3), [3, 7, 9, 9])
    np.testing.assert_array_equal(sample_frame_indices(7, None, "strided", stride=3), [0, 3, 6])
    assert sample_frame_indices(7, None).tolist() == list(range(7))
    with pytest.raises(ConfigError):
        sample_frame_indices(10, 4, "random")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["mp4", "mpeg4", "avi", "mkv"])
def test_round_trip_keeps_frames_in_order(clips: dict[str, Path], kind: str) -> None:
    full = load_video(clips[kind], num_frames=None)
    assert full.shape == (N_FRAMES, 32, 48) and full.dtype == np.float32
    assert full.min() >= 0.0 and full.max() <= 1.0
    np.testing.assert_array_equal(frame_ids(full), np.arange(N_FRAMES))
    np.testing.assert_allclose(full, ramp_clip(), atol=0.02)
    uniform = load_video(clips[kind], num_frames=6)
    np.testing.assert_array_equal(frame_ids(uniform), sample_frame_indices(N_FRAMES, 6))
    strided = load_video(clips[kind], num_frames=5, sampling="strided", stride=4, offset=20)
    np.testing.assert_array_equal(frame_ids(strided), [20, 24, 28, 29, 29])


def test_resize_and_channels(clips: dict[str, Path], tmp_path: Path) -> None:
    rgb = load_video(clips["avi"], num_frames=4, size=(16, 24), channels=3)
    assert rgb.shape == (4, 16, 24, 3)
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 2], atol=0.02)
    assert load_video(clips["mp4"], num_frames=4, size=20).shape == (4, 20, 20)
    colour = np.zeros((6, 16, 16, 3), dtype=np.float32)
    colour[..., 0] = 1.0  # pure red
    path = write_video(tmp_path / "red.avi", colour, fps=10)
    grey = load_video(path, num_frames=3, channels=1)
    assert grey.shape == (3, 16, 16) and grey.mean() == pytest.approx(0.299, abs=0.03)
    with pytest.raises(ConfigError):
        load_video(path, channels=2)
    with pytest.raises(ConfigError, match="even"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16)))


def test_bad_video_raises_data_error(clips: dict[str, Path], tmp_path: Path) -> None:
    raw = {kind: clips[kind].read_bytes() for kind in ("mp4", "avi")}
    cases = {
        "noise.mp4": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "empty.avi": b"",
        "half.mp4": raw["mp4"][: len(raw["mp4"]) // 2],
        "half.avi": raw["avi"][: len(raw["avi"]) // 2],
        "tenth.avi": raw["avi"][: len(raw["avi"]) // 10],
    }
    damaged = bytearray(raw["avi"])
    damaged[len(damaged) // 3 : len(damaged) // 3 + 2000] = bytes(2000)
    cases["damaged.avi"] = bytes(damaged)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for num_frames in (8, None):
            with pytest.raises(DataError) as info:
                load_video(tmp_path / name, num_frames=num_frames)
            assert name in str(info.value)
    sound = tmp_path / "sound.wav"
    import soundfile as sf

    sf.write(sound, np.zeros(800, dtype=np.float32), 8000)
    with pytest.raises(DataError, match="no video stream"):
        load_video(sound)
    with pytest.raises(DataError, match="not found"):
        load_video(tmp_path / "missing.mp4")


# --- DICOM cine ----------------------------------------------------------------------------------------


def write_dicom_cine(path: Path, frames: np.ndarray, *, photometric: str = "MONOCHROME2",
                     slope: float = 1.0, intercept: float = 0.0) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.PhotometricInterpretation = photometric
    if frames.ndim == 4:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.SamplesPerPixel = 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == frames.shape
    return path


def test_dicom_cine_modality_lut_and_sampling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.integers(100, 4000, size=(12, 20, 24), dtype=np.uint16)
    path = write_dicom_cine(tmp_path / "cine.dcm", raw, slope=2.0, intercept=-1024.0)
    clip = load_video(path, num_frames=4)
    idx = sample_frame_indices(12, 4)
    hu = raw[idx].astype(np.float64) * 2.0 - 1024.0
    np.testing.assert_allclose(clip, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    strided = load_video(path, num_frames=3, sampling="strided", stride=5, offset=1)
    assert strided.shape == (3, 20, 24)
    inverted = write_dicom_cine(tmp_path / "inv.dicom", raw, photometric="MONOCHROME1")
    sampled = raw[idx].astype(np.float64)
    expected = 1.0 - (sampled - sampled.min()) / (sampled.max() - sampled.min())
    np.testing.assert_allclose(load_video(inverted, num_frames=4), expected, atol=1e-6)
    resized = load_video(path, num_frames=2, size=(10, 12), channels=3)
    assert resized.shape == (2, 10, 12, 3) and resized.dtype == np.float32
    no_suffix = tmp_path / "cine_without_suffix"
    no_suffix.write_bytes(path.read_bytes())
    np.testing.assert_array_equal(load_video(no_suffix, num_frames=4), clip)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_dicom_rgb_cine_and_corrupt_dicom(tmp_path: Path) -> None:
    rgb = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = np.arange(5, dtype=np.uint8)[:, None, None] * 50
    path = write_dicom_cine(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    clip = load_video(path, num_frames=5, channels=3)
    assert clip.shape == (5, 8, 8, 3)
    np.testing.assert_allclose(clip[..., 1].mean(axis=(1, 2)), np.linspace(0, 1, 5), atol=1e-6)
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataError, match="cut.dcm"):
        load_video(truncated, num_frames=5)
    garbage = tmp_path / "junk.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(DataError, match="junk.dcm"):
        load_video(garbage)


# --- encoder ---------------------------------------------------------------------------------------


def test_video_encoder_registered() -> None:
    assert ENCODERS.get("video_frames") is VideoFramesEncoder


@pytest.mark.parametrize("temporal", ["mean", "attention", "transformer"])
def test_video_encoder_shapes_masks_and_gradients(temporal: str) -> None:
    torch.manual_seed(0)
    enc = VideoFramesEncoder(32, channels=(8, 16), temporal=temporal, frame_chunk=4, dropout=0.0)
    video = torch.randn(2, 6, 1, 24, 24)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = enc({"video": video, "video_mask": mask})
    assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, 6, 32)
    assert torch.equal(out.token_mask, mask)
    out.pooled.pow(2).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    enc.eval()
    with torch.no_grad():
        ref = enc({"video": video, "video_mask": mask}).pooled
        changed = video.clone()
        changed[1, 3:] = 100.0
        torch.testing.assert_close(enc({"video": changed, "video_mask": mask}).pooled, ref)
        alone = enc(video[1:, :3]).pooled
        torch.testing.assert_close(alone, ref[1:], atol=1e-5, rtol=1e-5)
        empty = enc({"video": video, "video_mask": torch.zeros(2, 6, dtype=torch.bool)})
        assert torch.isfinite(empty.pooled).all()


def test_video_encoder_long_clip_in_bounded_chunks() -> None:
    torch.manual_seed(0)
    enc = VideoFramesEncoder(16, channels=(4, 8), temporal="transformer", frame_chunk=8, num_heads=2,
                             checkpoint_frames=True)
    seen: list[int] = []
    body_forward = enc.frame_encoder.body.forward

    def counting_forward(frames: torch.Tensor) -> torch.Tensor:
        seen.append(frames.shape[0])
        return body_forward(frames)

    enc.frame_encoder.body.forward = counting_forward  # counts the recomputation too (hooks do not)
    out = enc(torch.randn(1, 64, 1, 16, 16))
    assert out.pooled.shape == (1, 16) and out.tokens.shape == (1, 64, 16)
    assert max(seen) <= 8 and sum(seen) == 64
    out.pooled.sum().backward()  # recomputes each chunk
    assert max(seen) <= 8 and sum(seen) == 128
    assert enc.frame_encoder.body[0].weight.grad is not None


def test_video_encoder_timm_backbone_and_errors() -> None:
    pytest.importorskip("timm")
    enc = VideoFramesEncoder(24, backbone="test_resnet", in_chans=3, frame_chunk=3)
    out = enc(torch.randn(2, 4, 1, 32, 32))  # grey clips are repeated to three channels
    assert out.pooled.shape == (2, 24) and len(enc.preprocessing["mean"]) == 3
    out.pooled.sum().backward()
    with pytest.raises(ConfigError):
        VideoFramesEncoder(backbone="cnn", in_chans=1)(torch.randn(1, 2, 3, 16, 16))
    with pytest.raises(ConfigError):
        VideoFramesEncoder(temporal="lstm")
    with pytest.raises(ConfigError, match="unknown timm architecture"):
        VideoFramesEncoder(backbone="no_such_net_xyz")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        VideoFramesEncoder(backbone="cnn", weights="frames.safetensors")
