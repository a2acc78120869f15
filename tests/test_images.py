"""Image decoding: modes and bit depths, channel conversion, windows, frames, uploads, caches, damaged files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfuse.core import ConfigError, DataError
from medfuse.data.images import decode_image_bytes, load_image, load_image_uint8, resize, to_channels
from medfuse.data.windowing import apply_window

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, size=(12, 10), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, **kwargs: object) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def luma(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def test_8bit_grey_png_and_repetition_to_three_channels(tmp_path: Path) -> None:
    path = save(tmp_path / "g.png", GREY8)
    image = load_image(path)
    assert image.dtype == np.float32 and image.shape == (12, 10)
    np.testing.assert_allclose(image, GREY8 / 255.0, atol=1e-7)
    three = load_image(path, channels=3)
    assert three.shape == (12, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(three[..., c], image)


def test_16bit_png_keeps_its_full_range(tmp_path: Path) -> None:
    deep = (np.arange(120, dtype=np.uint32).reshape(12, 10) * 500 + 7).astype(np.uint16)  # up to 59507
    path = save(tmp_path / "d.png", deep)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    np.testing.assert_allclose(image, deep / 65535.0, atol=1e-7)
    assert np.unique(image).size == 120  # no quantisation to 8 bits


def test_rgb_rgba_palette_and_luma(tmp_path: Path) -> None:
    rgb = load_image(save(tmp_path / "c.png", RGB8), channels=3)
    np.testing.assert_allclose(rgb, RGB8 / 255.0, atol=1e-7)
    np.testing.assert_allclose(load_image(tmp_path / "c.png"), luma(RGB8), atol=1e-6)
    rgba = np.concatenate([RGB8, RNG.integers(0, 256, size=(12, 10, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_allclose(load_image(save(tmp_path / "a.png", rgba), channels=3), RGB8 / 255.0, atol=1e-7)
    palette = Image.fromarray(RGB8).quantize(colors=16)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB")) / 255.0
    np.testing.assert_allclose(load_image(tmp_path / "p.png", channels=3), expected, atol=1e-7)
    grey_alpha = Image.fromarray(GREY8).convert("LA")
    grey_alpha.save(tmp_path / "la.png")
    np.testing.assert_allclose(load_image(tmp_path / "la.png"), GREY8 / 255.0, atol=1e-7)


def test_bilevel_and_jpeg(tmp_path: Path) -> None:
    Image.fromarray(GREY8 > 127).save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_image(tmp_path / "b.png"), (GREY8 > 127).astype(np.float32))
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    save(tmp_path / "s.jpg", smooth, quality=95)
    np.testing.assert_allclose(load_image(tmp_path / "s.jpg"), smooth / 255.0, atol=0.03)
    Image.fromarray(np.stack([smooth] * 3, -1)).convert("CMYK").save(tmp_path / "k.jpg", quality=95)
    assert load_image(tmp_path / "k.jpg", channels=3).shape == (64, 64, 3)


def test_windows_on_ordinary_images(tmp_path: Path) -> None:
    path = save(tmp_path / "g.png", GREY8)
    np.testing.assert_allclose(load_image(path, window=(128.0, 64.0)), apply_window(GREY8, 128.0, 64.0), atol=1e-6)
    stretched = load_image(path, window="minmax")
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    with pytest.raises(DataError, match="needs a DICOM"):
        load_image(path, window="header")


def test_multiframe_tiff(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4), 40 * k, dtype=np.uint8)) for k in range(5)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "m.tif")[0, 0] == pytest.approx(80 / 255)  # middle
    assert load_image(tmp_path / "m.tif", frame="first")[0, 0] == 0
    assert load_image(tmp_path / "m.tif", frame=-1)[0, 0] == pytest.approx(160 / 255)
    with pytest.raises(DataError, match="out of range"):
        load_image(tmp_path / "m.tif", frame=9)


def test_dicom_by_suffix_and_by_magic(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom", reason="pydicom is needed for DICOM (pip install 'medfuse[dicom]')")
    from medfuse.data.dicom import read_dicom

    source = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    expected = read_dicom(source).pixels
    np.testing.assert_array_equal(load_image(source), expected)
    bare = tmp_path / "scan_without_suffix"
    bare.write_bytes(source.read_bytes())
    np.testing.assert_array_equal(load_image(bare), expected)
    np.testing.assert_array_equal(decode_image_bytes(source.read_bytes(), channels=3)[..., 1], expected)
    assert load_image(source, window=(600.0, 1600.0)).shape == (64, 64)


def test_decode_image_bytes_matches_files(tmp_path: Path) -> None:
    path = save(tmp_path / "c.png", RGB8)
    np.testing.assert_array_equal(decode_image_bytes(path.read_bytes()), load_image(path))
    buffer = io.BytesIO()
    Image.fromarray(GREY8).save(buffer, format="JPEG")
    assert decode_image_bytes(buffer.getvalue(), channels=3).shape == (12, 10, 3)
    with pytest.raises(DataError, match="empty") as info:
        decode_image_bytes(b"", name="upload.png")
    assert info.value.path == "upload.png"
    with pytest.raises(DataError, match="not an image") as info:
        decode_image_bytes(b"<html>not an image</html>", name="upload.png")
    assert info.value.path == "upload.png"


def test_uint8_cache_loading(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
    path = save(tmp_path / "grad.png", np.round(gradient * 255).astype(np.uint8))
    small = load_image_uint8(path, 20)
    assert small.dtype == np.uint8 and small.shape == (20, 20)
    assert np.all(np.diff(small.astype(int), axis=1) >= 0) and small[0, 0] < 10 and small[0, -1] > 245
    assert load_image_uint8(path, (10, 16), channels=3).shape == (10, 16, 3)
    np.testing.assert_array_equal(resize(gradient, (30, 40)), gradient)  # same size: unchanged
    with pytest.raises(ConfigError):
        load_image_uint8(path, 0)


def test_to_channels() -> None:
    rgb = RGB8 / 255.0
    np.testing.assert_allclose(to_channels(rgb, 1), luma(RGB8), atol=1e-6)
    assert to_channels(rgb, 3).dtype == np.float32
    np.testing.assert_array_equal(to_channels(np.full((2, 2), 1.5), 1), np.ones((2, 2), np.float32))  # clipped


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="channels"):
        load_image("x.png", channels=2)
    with pytest.raises(ConfigError, match="all"):
        load_image("x.png", frame="all")
    with pytest.raises(ConfigError, match="window"):
        load_image("x.png", window="soft")  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_and_corrupt_files_name_the_path(tmp_path: Path, suffix: str) -> None:
    path = save(tmp_path / f"full{suffix}", RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / f"corrupt{suffix}"
    corrupt.write_bytes(data[:40] + bytes(len(data) - 40))
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"\x00\x01 not an image at all" * 10)
    for bad in (truncated, corrupt, garbage):
        with pytest.raises(DataError) as info:
            load_image(bad)
        assert info.value.path == str(bad)
    with pytest.raises(DataError, match="not found") as info:
        load_image(tmp_path / f"missing{suffix}")
    assert info.value.path == str(tmp_path / f"missing{suffix}")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_damaged_uploads_give_data_errors_or_valid_images(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(RGB8).save(buffer, format=fmt)
    original = buffer.getvalue()
    rng = np.random.default_rng(1)
    outcomes = set()
    for _ in range(60):
        damaged = bytearray(original)
        for _ in range(int(rng.integers(1, 5))):
            damaged[int(rng.integers(0, min(len(damaged), 300)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        try:
            image = decode_image_bytes(bytes(damaged), name="upload")
        except DataError as exc:
            assert exc.path == "upload"
            outcomes.add("error")
        else:
            assert image.dtype == np.float32 and np.isfinite(image).all()
            outcomes.add("image")
    assert "error" in outcomes
