"""DICOM decoding: Modality LUT, VOI windows (parity with a hand computation and pydicom), MONOCHROME1,
multi-frame, colour, compressed transfer syntaxes, de-identified metadata and damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfuse.core import ConfigError, DataError
from medfuse.data.dicom import is_dicom_bytes, is_dicom_file, read_dicom
from medfuse.data.dicom_meta import parse_age
from medfuse.data.windowing import apply_window

pydicom = pytest.importorskip("pydicom", reason="pydicom is needed for DICOM tests (pip install 'medfuse[dicom]')")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid  # noqa: E402

FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MONOCHROME1_CR = FILES / "dicomdirtests" / "77654033" / "CR1" / "6154"  # a real CR file without a suffix


def hand_linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 written out element by element, output range [0, 1]."""
    out = np.empty(x.shape, dtype=np.float64)
    for idx, value in np.ndenumerate(x):
        if value <= center - 0.5 - (width - 1) / 2:
            out[idx] = 0.0
        elif value > center - 0.5 + (width - 1) / 2:
            out[idx] = 1.0
        else:
            out[idx] = (value - (center - 0.5)) / (width - 1) + 0.5
    return out


def write_dataset(path: Path, pixels: np.ndarray, **attrs: object) -> Path:
    """Write a minimal secondary-capture DICOM file with ``pixels`` ``(H, W)``, ``(F, H, W)`` or ``(H, W, 3)``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-12345"
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "General Hospital"
    colour = pixels.ndim == 3 and pixels.shape[-1] == 3 and attrs.get("PhotometricInterpretation") == "RGB"
    frames = 1 if colour or pixels.ndim == 2 else pixels.shape[0]
    ds.Rows, ds.Columns = (pixels.shape[0], pixels.shape[1]) if colour or pixels.ndim == 2 else pixels.shape[1:3]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PhotometricInterpretation = "MONOCHROME2"
    itemsize = pixels.dtype.itemsize
    ds.BitsAllocated = 8 * itemsize
    ds.BitsStored = 8 * itemsize
    ds.HighBit = 8 * itemsize - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture
def ramp() -> np.ndarray:
    return (np.arange(16 * 16, dtype=np.int32).reshape(16, 16) * 16).astype(np.uint16)  # 0 .. 4080


def test_rescale_and_given_window_match_hand_computation(tmp_path: Path, ramp: np.ndarray) -> None:
    path = write_dataset(tmp_path / "a.dcm", ramp, RescaleSlope=0.5, RescaleIntercept=-100, WindowCenter=500, WindowWidth=800)
    rescaled = ramp.astype(np.float64) * 0.5 - 100
    ds = pydicom.dcmread(path)
    np.testing.assert_allclose(apply_modality_lut(ds.pixel_array, ds), rescaled)  # the reference agrees on the LUT
    header = read_dicom(path)  # header window by default
    np.testing.assert_allclose(header.pixels, hand_linear_window(rescaled, 500, 800), atol=1e-6)
    given = read_dicom(path, window=(1000.0, 400.0))
    np.testing.assert_allclose(given.pixels, hand_linear_window(rescaled, 1000, 400), atol=1e-6)
    assert header.pixels.dtype == np.float32 and header.pixels.shape == (16, 16)
    assert header.meta["rescale"] == {"slope": 0.5, "intercept": -100.0}
    assert header.meta["window"]["source"] == "header" and header.meta["window"]["center"] == 500.0
    assert given.meta["window"]["source"] == "given"


def test_header_window_parity_with_pydicom_voi(tmp_path: Path, ramp: np.ndarray) -> None:
    path = write_dataset(tmp_path / "w.dcm", ramp, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=[40, 400], WindowWidth=[400, 1500])
    ds = pydicom.dcmread(path)
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)  # first window, range of the stored bits
    y_min, y_max = 0 * 1 - 1024, (2**16 - 1) - 1024
    ours = read_dicom(path).pixels
    np.testing.assert_allclose(ours, (reference - y_min) / (y_max - y_min), atol=1e-6)
    assert 0 < ours.mean() < 1 and ours.min() == 0 and ours.max() == 1


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_other_voi_functions(tmp_path: Path, ramp: np.ndarray, function: str) -> None:
    path = write_dataset(tmp_path / "f.dcm", ramp, WindowCenter=2000, WindowWidth=1000, VOILUTFunction=function)
    x = ramp.astype(np.float64)
    expected = np.clip((x - 2000) / 1000 + 0.5, 0, 1) if function == "LINEAR_EXACT" else 1 / (1 + np.exp(-4 * (x - 2000) / 1000))
    np.testing.assert_allclose(read_dicom(path).pixels, expected, atol=1e-6)


def test_voi_lut_sequence(tmp_path: Path, ramp: np.ndarray) -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", [min(255, (i * i) // 64) for i in range(256)])  # LUT Data
    path = write_dataset(tmp_path / "lut.dcm", (ramp // 16).astype(np.uint16), VOILUTSequence=[item])
    expected = np.asarray(item.LUTData, dtype=np.float64)[np.clip(ramp // 16, 0, 255)] / 255
    image = read_dicom(path)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta["window"]["function"] == "LUT"


def test_window_modes(tmp_path: Path, ramp: np.ndarray) -> None:
    plain = write_dataset(tmp_path / "p.dcm", ramp + 100)
    auto = read_dicom(plain)  # no header window: min-max
    np.testing.assert_allclose(auto.pixels, (ramp - ramp.min()) / (ramp.max() - ramp.min()), atol=1e-6)
    assert auto.meta["window"]["source"] == "minmax"
    with pytest.raises(DataError, match="header has no Window"):
        read_dicom(plain, window="header")
    windowed = write_dataset(tmp_path / "q.dcm", ramp, WindowCenter=100, WindowWidth=50)
    stretched = read_dicom(windowed, window="minmax").pixels
    assert stretched.min() == 0 and stretched.max() == 1 and np.unique(stretched).size > 200
    for bad in [(1, 0), (1,), "hu", (np.nan, 10)]:
        with pytest.raises(ConfigError):
            read_dicom(windowed, window=bad)  # type: ignore[arg-type]


def test_pixel_padding_is_left_out_of_the_stretch(tmp_path: Path) -> None:
    pixels = np.full((8, 8), 1000, dtype=np.int16)
    pixels[2:6, 2:6] = np.arange(16).reshape(4, 4) * 10
    pixels[0, 0] = -2000
    path = write_dataset(tmp_path / "pad.dcm", pixels, PixelPaddingValue=1000)
    out = read_dicom(path).pixels
    assert out[0, 1] == 0.0  # padding is black
    np.testing.assert_allclose(out[2:6, 2:6].ravel(), (np.arange(16) * 10 + 2000) / 2150, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path: Path, ramp: np.ndarray) -> None:
    m2 = read_dicom(write_dataset(tmp_path / "m2.dcm", ramp, WindowCenter=2000, WindowWidth=3000)).pixels
    m1 = read_dicom(write_dataset(tmp_path / "m1.dcm", ramp, WindowCenter=2000, WindowWidth=3000, PhotometricInterpretation="MONOCHROME1"))
    np.testing.assert_allclose(m1.pixels, 1.0 - m2, atol=1e-6)
    assert m1.meta["inverted"] is True


def test_bundled_monochrome1_cr_parity() -> None:
    assert is_dicom_file(MONOCHROME1_CR)  # no suffix: recognised by the DICM magic
    ds = pydicom.dcmread(MONOCHROME1_CR)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    reference = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    y_min, y_max = 200.0, (2**12 - 1) * 0.684 + 200.0
    image = read_dicom(MONOCHROME1_CR)
    np.testing.assert_allclose(image.pixels, 1.0 - (reference - y_min) / (y_max - y_min), atol=1e-5)
    assert image.meta["modality"] == "CR" and image.meta["inverted"] is True


def test_multiframe_selection(tmp_path: Path) -> None:
    frames = np.stack([np.full((4, 6), 100 * (k + 1), dtype=np.uint16) for k in range(5)])
    frames[:, 0, 0] = 0  # so that every frame has a range to stretch
    path = write_dataset(tmp_path / "mf.dcm", frames)
    everything = read_dicom(path, frame="all")
    assert everything.pixels.shape == (5, 4, 6) and everything.meta["frames"] == 5
    np.testing.assert_allclose(everything.pixels[:, 1, 1], [0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-6)  # one stretch for all
    assert read_dicom(path).meta["frame"] == 2  # middle
    assert read_dicom(path, frame="first").meta["frame"] == 0
    assert read_dicom(path, frame=-1).meta["frame"] == 4
    assert read_dicom(path, frame=3).pixels.shape == (4, 6)
    with pytest.raises(DataError, match="out of range"):
        read_dicom(path, frame=5)


def test_enhanced_multiframe_functional_groups(tmp_path: Path) -> None:
    frames = np.stack([np.arange(12, dtype=np.uint16).reshape(3, 4) * 10 for _ in range(2)])
    per_frame = []
    for slope in (1.0, 2.0):
        transform, item = Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, 0.0
        item.PixelValueTransformationSequence = [transform]
        per_frame.append(item)
    voi, shared = Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = 60.0, 101.0
    shared.FrameVOILUTSequence = [voi]
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.25]
    shared.PixelMeasuresSequence = [measures]
    path = write_dataset(
        tmp_path / "enh.dcm", frames, PerFrameFunctionalGroupsSequence=per_frame, SharedFunctionalGroupsSequence=[shared]
    )
    out = read_dicom(path, frame="all")
    base = np.arange(12, dtype=np.float64).reshape(3, 4) * 10
    np.testing.assert_allclose(out.pixels[0], hand_linear_window(base, 60, 101), atol=1e-6)
    np.testing.assert_allclose(out.pixels[1], hand_linear_window(base * 2, 60, 101), atol=1e-6)
    assert out.meta["spacing"] == (0.5, 0.25)


def test_rgb_dataset_and_bytes_input(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    path = write_dataset(tmp_path / "rgb.dcm", rgb, PhotometricInterpretation="RGB")
    image = read_dicom(path)
    assert image.pixels.shape == (4, 5, 3) and image.meta["window"] is None
    np.testing.assert_allclose(image.pixels[0, 0], [1.0, 0.0, 0.2], atol=1e-6)
    data = path.read_bytes()
    assert is_dicom_bytes(data)
    np.testing.assert_array_equal(read_dicom(data).pixels, image.pixels)
    with pytest.raises(DataError, match="MONOCHROME"):
        read_dicom(path, window="header")


def test_meta_has_no_patient_identifiers(tmp_path: Path, ramp: np.ndarray) -> None:
    path = write_dataset(
        tmp_path / "id.dcm", ramp, PatientSex="F", PatientAge="094Y", ViewPosition="PA", BodyPartExamined="CHEST",
        PixelSpacing=[0.2, 0.3],
    )
    meta = read_dicom(path).meta
    assert (meta["sex"], meta["age"], meta["view"], meta["body_part"]) == ("F", 90.0, "PA", "CHEST")
    assert meta["spacing"] == (0.2, 0.3) and meta["rows"] == 16 and meta["columns"] == 16 and meta["frames"] == 1
    text = repr(meta)
    for identifier in ("Doe", "Jane", "MRN-12345", "19700101", "General Hospital"):
        assert identifier not in text
    assert parse_age("006M") == 0.5 and parse_age("") is None and parse_age("abc") is None


def test_bundled_ct_and_mr() -> None:
    ct = read_dicom(FILES / "CT_small.dcm")
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(ct.pixels, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)  # no header window
    lung = read_dicom(FILES / "CT_small.dcm", window=(-600.0, 1500.0))
    np.testing.assert_allclose(lung.pixels, hand_linear_window(hu, -600, 1500), atol=1e-6)
    assert ct.meta["modality"] == "CT" and ct.meta["spacing"] == pytest.approx((0.661468, 0.661468))
    assert "CompressedSamples" not in repr(ct.meta)
    mr = read_dicom(FILES / "MR_small.dcm")
    assert mr.pixels.shape == (64, 64) and mr.meta["window"]["center"] == 600.0


def test_bundled_multiframe_and_colour() -> None:
    dose = read_dicom(FILES / "rtdose.dcm", frame="all")
    assert dose.pixels.shape == (15, 10, 10)
    np.testing.assert_array_equal(read_dicom(FILES / "rtdose.dcm", frame=7).pixels.shape, (10, 10))
    ybr = read_dicom(FILES / "examples_ybr_color.dcm", frame="all")  # JPEG baseline, YBR_FULL_422, 30 frames
    assert ybr.pixels.shape == (30, 240, 320, 3) and ybr.meta["photometric_used"].endswith("RGB")
    palette = read_dicom(FILES / "examples_palette.dcm")
    assert palette.pixels.shape == (350, 800, 3) and 0 <= palette.pixels.min() < palette.pixels.max() <= 1


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"])
def test_compressed_and_big_endian_decode_like_the_original(name: str) -> None:
    ds = pydicom.dcmread(FILES / name)
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    if not decoder.is_available:
        pytest.skip(f"no decoder installed for {ds.file_meta.TransferSyntaxUID.name}")
    np.testing.assert_allclose(read_dicom(FILES / name).pixels, read_dicom(FILES / "MR_small.dcm").pixels, atol=1e-6)


def test_undecodable_transfer_syntax_names_the_packages() -> None:
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = FILES / "MR_small_jpeg_ls_lossless.dcm"
    with pytest.raises(DataError) as info:
        read_dicom(path)
    message = str(info.value)
    assert str(path) in message and "JPEG-LS Lossless" in message and "pylibjpeg-libjpeg" in message


def test_no_pixel_data_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="DICOM has no pixel data") as info:
        read_dicom(FILES / "rtplan.dcm")
    assert info.value.path == str(FILES / "rtplan.dcm")
    with pytest.raises(DataError, match="truncated") as info:
        read_dicom(FILES / "MR_truncated.dcm")
    assert info.value.path == str(FILES / "MR_truncated.dcm")

    data = (FILES / "CT_small.dcm").read_bytes()
    for name, blob in {
        "cut_pixels.dcm": data[: len(data) - 5000],
        "cut_header.dcm": data[:400],
        "garbage.dcm": data[:132] + bytes(range(256)) * 8,
        "empty.dcm": b"",
        "not_dicom.dcm": b"hello, this is not an image" * 20,
    }.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(DataError) as info:
            read_dicom(path)
        assert info.value.path == str(path), name
    with pytest.raises(DataError, match="upload.dcm"):
        read_dicom(data[:600], name="upload.dcm")
    with pytest.raises(DataError, match="cannot read"):
        read_dicom(tmp_path / "missing.dcm")


def test_apply_window_edges() -> None:
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(apply_window(x, 0.5, 1.0), [0, 0, 1, 1, 1])  # width 1: x > c - 0.5
    np.testing.assert_allclose(apply_window(x, 0.5, 3.0), hand_linear_window(x, 0.5, 3.0))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damaged values it meets
def test_damaged_bytes_give_data_errors_or_valid_images() -> None:
    original = (FILES / "CT_small.dcm").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(40):
        damaged = bytearray(original)
        for _ in range(int(rng.integers(1, 6))):
            damaged[int(rng.integers(128, 1500))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            damaged = damaged[: int(rng.integers(132, len(damaged)))]
        try:
            pixels = read_dicom(bytes(damaged), name="damaged.dcm").pixels
        except DataError as exc:
            assert exc.path == "damaged.dcm"
            outcomes.add("error")
        else:
            assert pixels.dtype == np.float32 and np.isfinite(pixels).all() and 0 <= pixels.min() <= pixels.max() <= 1
            outcomes.add("image")
    assert outcomes == {"error", "image"}
