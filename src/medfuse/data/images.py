"""Decode image files and uploads (PNG, JPEG, 8/16-bit, greyscale/RGB/RGBA/palette, DICOM) to float arrays.

Every decoder returns float32 values in [0, 1]: ``(H, W)`` for one channel, ``(H, W, 3)`` for
three. Scaling follows the stored type, never the content, so that a dark image stays dark:

- 8-bit modes (``L``, ``RGB``, ``P``, ...) divide by 255; ``1`` (bilevel) is already 0/1;
- 16-bit greyscale (``I;16``, e.g. 16-bit PNG) divides by 65535, keeping the full range;
- 32-bit integer ``I`` divides by 65535 when its values fit in 16 bits (how 16-bit files are
  often read), else is stretched min-max; float ``F`` is used as is when within [0, 1], else
  stretched min-max;
- DICOM goes through :func:`medfuse.data.dicom.read_dicom` (rescale, window, MONOCHROME1).

Alpha is dropped; palette images are expanded to RGB; greyscale becomes three channels by
repetition and RGB becomes one channel by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medfuse.core import ConfigError, DataError
from medfuse.data.dicom import FrameArg, is_dicom_bytes, is_dicom_file, read_dicom
from medfuse.data.windowing import WindowArg, apply_window, check_window, min_max

LUMA_BT601 = np.array([0.299, 0.587, 0.114])

# PIL modes read as greyscale with their full-scale value; None means "stretch min-max".
_GREY_FULL_SCALE = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def load_image(
    path: str | Path,
    *,
    channels: int = 1,
    window: WindowArg = None,
    frame: int | str = "middle",
) -> np.ndarray:
    """Return the image at ``path`` as float32 in [0, 1]: ``(H, W)`` or ``(H, W, 3)`` for ``channels=3``.

    DICOM is recognised by a ``.dcm``/``.dicom`` suffix or the ``DICM`` magic at byte 128 (files
    without a suffix); anything else goes to Pillow. ``window`` is as in
    :func:`~medfuse.data.dicom.read_dicom`; for ordinary images ``(center, width)`` is in stored
    units (0-255 for 8-bit, 0-65535 for 16-bit), ``"minmax"`` stretches the image and
    ``"header"`` is refused (there is no header window). ``frame`` picks a frame of multi-frame
    files (DICOM, TIFF, GIF): ``"middle"``, ``"first"`` or an index.

    Raises:
        DataError: naming ``path`` when it is missing, not an image, corrupt or truncated.
        ConfigError: for ``channels`` other than 1 or 3, a malformed window or ``frame="all"``.
    """
    _check_args(channels, window, frame)
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found; check the path (relative paths are read from the manifest's folder)", path=path)
    if is_dicom_file(path):
        pixels = read_dicom(path, window=window, frame=_dicom_frame(frame)).pixels
        return to_channels(pixels, channels)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read the image: {exc.strerror or exc}", path=path) from None
    with fh:
        return _decode_pil(fh, str(path), channels=channels, window=window, frame=frame)


def decode_image_bytes(
    data: bytes,
    *,
    channels: int = 1,
    window: WindowArg = None,
    frame: int | str = "middle",
    name: str = "<upload>",
) -> np.ndarray:
    """Return encoded image bytes (an upload) as float32 in [0, 1], by the rules of :func:`load_image`.

    DICOM is recognised by its ``DICM`` magic. ``name`` is what errors call the data.
    """
    _check_args(channels, window, frame)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError(f"expected the bytes of an image file, got {type(data).__name__}", path=name)
    data = bytes(data)
    if not data:
        raise DataError("the upload is empty", path=name)
    if is_dicom_bytes(data):
        return to_channels(read_dicom(data, window=window, frame=_dicom_frame(frame), name=name).pixels, channels)
    return _decode_pil(io.BytesIO(data), name, channels=channels, window=window, frame=frame)


def load_image_uint8(
    path: str | Path,
    size: int | tuple[int, int],
    channels: int = 1,
    *,
    window: WindowArg = None,
    frame: int | str = "middle",
) -> np.ndarray:
    """Return the image resized to ``size`` as uint8: ``(h, w)`` or ``(h, w, 3)``, for caches.

    ``size`` is an int (square) or ``(height, width)``; the image is resized, not cropped, with
    antialiased bilinear interpolation on the float values before rounding to 0-255.
    """
    image = load_image(path, channels=channels, window=window, frame=frame)
    return to_uint8(resize(image, size))


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Return ``image`` ``(H, W)`` or ``(H, W, 3)`` as ``channels`` (1 -> BT.601 luma, 3 -> repeat), float32."""
    if channels == 1 and image.ndim == 3:
        image = image[..., :3] @ LUMA_BT601
    elif channels == 3 and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Return float ``image`` ``(H, W[, C])`` resized to ``size`` (int or (height, width)), float32."""
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ConfigError(f"size: must be positive, got {size!r}")
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=False)
    planes = image[..., None] if image.ndim == 2 else image
    out = np.stack(
        [
            np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            ))
            for c in range(planes.shape[-1])
        ],
        axis=-1,
    )
    return out[..., 0] if image.ndim == 2 else out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Return float ``image`` in [0, 1] as uint8 0-255 (rounded), same shape."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_args(channels: int, window: object, frame: object) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"channels: must be 1 or 3, got {channels!r}")
    check_window(window)
    if frame == "all":
        raise ConfigError("frame: 'all' is for read_dicom(); load_image returns one frame ('middle', 'first' or an index)")
    if not (frame in ("middle", "first") or (isinstance(frame, int | np.integer) and not isinstance(frame, bool))):
        raise ConfigError(f"frame: expected 'middle', 'first' or an integer, got {frame!r}")


def _dicom_frame(frame: int | str) -> FrameArg:
    return int(frame) if not isinstance(frame, str) else frame  # type: ignore[return-value]


def _decode_pil(fh: BinaryIO, where: str, *, channels: int, window: WindowArg, frame: int | str) -> np.ndarray:
    """Return a Pillow-readable image as float32 in [0, 1] with ``channels`` channels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(fh) as im:
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            index = _pil_frame(frame, n_frames, where)
            if index:
                im.seek(index)
            im.load()  # decoding happens here: truncated data raises now, not later
            values, full_scale = _pil_values(im)
    except UnidentifiedImageError:
        raise DataError(
            "not an image Pillow can read nor DICOM (expected PNG, JPEG, TIFF, BMP, ... or a .dcm file)", path=where
        ) from None
    except DataError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... on damaged files
        raise DataError(f"image is corrupt or truncated ({type(exc).__name__}: {exc}); re-export or remove it", path=where) from None
    if window == "header":
        raise DataError("window='header' needs a DICOM file; use None, 'minmax' or (center, width)", path=where)
    if isinstance(window, tuple | list):
        scaled = apply_window(values, float(window[0]), float(window[1]))
    elif window == "minmax" or full_scale is None:
        scaled = min_max(values)
    else:
        scaled = values / full_scale
    return to_channels(scaled, channels)


def _pil_frame(frame: int | str, n_frames: int, where: str) -> int:
    if frame == "middle":
        return n_frames // 2
    if frame == "first":
        return 0
    index = int(frame) + (n_frames if int(frame) < 0 else 0)
    if not 0 <= index < n_frames:
        raise DataError(f"frame {frame} is out of range: the image has {n_frames} frame(s)", path=where)
    return index


def _pil_values(im: Any) -> tuple[np.ndarray, float | None]:
    """Return (stored values float64 ``(H, W)`` or ``(H, W, 3)``, full-scale value or None for min-max)."""
    mode = im.mode
    if mode in _GREY_FULL_SCALE:
        return np.asarray(im).astype(np.float64), _GREY_FULL_SCALE[mode]
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0)).astype(np.float64), 255.0
    if mode == "I":
        values = np.asarray(im).astype(np.float64)
        fits_16_bit = values.size and values.min() >= 0 and values.max() <= 65535
        return values, 65535.0 if fits_16_bit else None
    if mode == "F":
        values = np.asarray(im).astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, np.nanmin(np.where(finite, values, np.nan)) if finite.any() else 0.0)
        return values, 1.0 if values.min() >= 0 and values.max() <= 1 else None
    if mode != "RGB":
        im = im.convert("RGB")  # P, PA, RGBA, RGBX, CMYK, YCbCr, ...: alpha dropped, palette expanded
    return np.asarray(im).astype(np.float64), 255.0
