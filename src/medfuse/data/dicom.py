"""DICOM pixel data as float arrays in [0, 1], following the display pipeline of DICOM PS3.3 C.11.

The pipeline is: decode the stored values (compressed transfer syntaxes through pydicom's
decoders), apply the Modality LUT (rescale slope/intercept, or a Modality LUT Sequence), apply a
VOI transform (a window centre/width or a VOI LUT Sequence from the header, a given window, or a
min-max stretch) and invert MONOCHROME1 so that bright always means dense. Colour images (RGB,
YBR converted to RGB, PALETTE COLOR through its lookup table) are scaled by their bit depth.

``pydicom`` is an optional dependency (``pip install 'medfuse[dicom]'``) imported on first use.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medfuse.core import DataError, MedfuseError, require
from medfuse.data.dicom_meta import frame_attribute, header_window, public_meta
from medfuse.data.windowing import WindowArg, apply_window, check_window, min_max

log = logging.getLogger(__name__)

FrameArg = int | Literal["middle", "first", "all"]

DICOM_SUFFIXES = (".dcm", ".dicom")

# Which pip packages decode which family of compressed transfer syntaxes (pydicom's plugins).
_DECODER_PACKAGES = {
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
}


@dataclass(frozen=True)
class DicomImage:
    """Decoded pixels and de-identified header facts of one DICOM file.

    ``pixels`` is float32 in [0, 1]: ``(H, W)`` for one greyscale frame, ``(H, W, 3)`` for one
    colour frame, ``(F, H, W)`` / ``(F, H, W, 3)`` when all frames were asked for. ``meta`` holds
    modality, photometric, rows, columns, frames, frame, spacing, bits_stored, transfer_syntax,
    rescale, window, inverted, body_part, view, laterality, sex and age; never a name, identifier,
    date or institution.
    """

    pixels: np.ndarray
    meta: dict[str, Any]


def is_dicom_bytes(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file: a ``.dcm``/``.dicom`` suffix or the ``DICM`` magic."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return is_dicom_bytes(fh.read(132))
    except OSError:
        return False


def read_dicom(
    source: str | Path | bytes,
    *,
    window: WindowArg = None,
    frame: FrameArg = "middle",
    name: str | None = None,
) -> DicomImage:
    """Return the pixels of a DICOM file in [0, 1] with its de-identified metadata.

    Args:
        source: a path, or the bytes of a DICOM file (an upload).
        window: ``None`` uses the header's window (first value when several) or VOI LUT when
            there is one and a min-max stretch otherwise; ``"header"`` requires the header's;
            ``"minmax"`` stretches the stored range of the frame (of all frames for
            ``frame="all"``) to [0, 1]; ``(center, width)`` applies that window in rescaled
            units (for example Hounsfield units for CT) with the LINEAR function of PS3.3
            C.11.2.1.2.1. Colour images ignore ``None`` and ``"header"`` windows (they are
            scaled by their bit depth).
        frame: ``"middle"`` (index ``F // 2``), ``"first"``, an index (negative counts from the
            end) or ``"all"`` for every frame.
        name: what to call ``source`` in error messages when it is bytes.

    Raises:
        DataError: naming the file for unreadable, truncated or pixel-less files, transfer
            syntaxes without an installed decoder (naming the packages to install) and frame
            indexes out of range.
    """
    check_window(window)
    where = str(source) if not isinstance(source, bytes | bytearray) else (name or "<DICOM bytes>")
    pydicom = require("pydicom", extra="dicom", purpose="reading DICOM files")
    ds = _read_dataset(pydicom, source, where)
    try:
        return _to_image(ds, window, frame, where)
    except MedfuseError:
        raise
    except Exception as exc:  # a malformed header value met while processing: still the file's fault
        raise DataError(f"DICOM file is malformed ({type(exc).__name__}: {exc})", path=where) from None


def _to_image(ds: Any, window: WindowArg, frame: FrameArg, where: str) -> DicomImage:
    """Return the decoded, windowed pixels of dataset ``ds`` with its metadata."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError("DICOM has no pixel data (a structured report, plan or other non-image object?)", path=where)
    try:
        n_frames = max(1, int(ds.get("NumberOfFrames") or 1))
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    except (TypeError, ValueError) as exc:
        raise DataError(f"DICOM header is malformed: {exc}", path=where) from None
    indexes = _frame_indexes(frame, n_frames, where)
    stored = _decode(ds, None if frame == "all" else indexes[0], where)
    if frame != "all":
        stored = stored[None]

    meta = public_meta(ds, n_frames=n_frames, frame=frame if frame == "all" else indexes[0])
    if photometric in ("MONOCHROME1", "MONOCHROME2") and stored.ndim == 3:
        pixels = _monochrome(ds, stored, indexes, window, photometric, meta, where)
    else:
        pixels = _colour(ds, stored, window, photometric, meta, where)
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    return DicomImage(pixels=pixels if frame == "all" else pixels[0], meta=meta)


def _read_dataset(pydicom: Any, source: str | Path | bytes, where: str) -> Any:
    """Return the parsed dataset; files without the DICM preamble are read leniently."""
    try:
        raw = bytes(source) if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", path=where) from None
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(raw))
    except InvalidDicomError:
        # No DICM preamble: maybe a bare dataset (older files); read it leniently and keep it only
        # when it looks like DICOM.
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        except Exception:
            ds = None
        if ds is None or not any(k in ds for k in ("Rows", "SOPClassUID", "Modality", "PixelData")):
            raise DataError("not a DICOM file (no DICM preamble and no DICOM header); check the file type", path=where) from None
    except Exception as exc:  # pydicom raises many types on a damaged header
        raise DataError(f"DICOM header is unreadable or truncated ({type(exc).__name__}: {exc})", path=where) from None
    _ensure_transfer_syntax(pydicom, ds)
    return ds


def _ensure_transfer_syntax(pydicom: Any, ds: Any) -> None:
    """Set a missing Transfer Syntax UID from the encoding the dataset was read with."""
    if not getattr(ds, "file_meta", None):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    uid = pydicom.uid
    ds.file_meta.TransferSyntaxUID = (
        uid.ImplicitVRLittleEndian if implicit else uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
    )


def _frame_indexes(frame: FrameArg, n_frames: int, where: str) -> list[int]:
    """Return the frame indexes ``frame`` names (all of them for ``"all"``)."""
    if frame == "all":
        return list(range(n_frames))
    if frame == "middle":
        return [n_frames // 2]
    if frame == "first":
        return [0]
    if isinstance(frame, int | np.integer) and not isinstance(frame, bool):
        index = int(frame) + (n_frames if frame < 0 else 0)
        if not 0 <= index < n_frames:
            raise DataError(f"frame {frame} is out of range: the file has {n_frames} frame(s)", path=where)
        return [index]
    raise DataError(f"frame must be 'middle', 'first', 'all' or an integer, got {frame!r}", path=where)


def _decoder_hint(tsyntax: Any) -> str:
    """Return the 'install X' advice for a compressed transfer syntax."""
    name = str(getattr(tsyntax, "name", tsyntax))
    for family, packages in _DECODER_PACKAGES.items():
        if name.startswith(family):
            return f"pip install {packages}"
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def _decode(ds: Any, index: int | None, where: str) -> np.ndarray:
    """Return stored values: ``(H, W)``/``(H, W, S)`` for one frame, ``(F, H, W[, S])`` for all."""
    from pydicom.pixels import pixel_array

    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    compressed = bool(tsyntax is not None and getattr(tsyntax, "is_compressed", False))
    try:
        arr = pixel_array(ds, index=index)
    except Exception as exc:  # decoders raise RuntimeError, ValueError, NotImplementedError, ...
        if compressed:
            ts_name = getattr(tsyntax, "name", str(tsyntax))
            raise DataError(
                f"cannot decode pixel data compressed as '{ts_name}' ({tsyntax}) with the installed "
                f"decoders; install one: {_decoder_hint(tsyntax)} "
                f"(detail: {type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                path=where,
            ) from None
        raise DataError(
            f"DICOM pixel data is unreadable (truncated file or incomplete header?) ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            path=where,
        ) from None
    if index is None:
        n_frames = max(1, int(ds.get("NumberOfFrames") or 1))
        samples = int(ds.get("SamplesPerPixel") or 1)
        if n_frames == 1 and arr.ndim == (2 if samples == 1 else 3):
            arr = arr[None]
    return np.asarray(arr)


def _monochrome(
    ds: Any,
    stored: np.ndarray,
    indexes: list[int],
    window: WindowArg,
    photometric: str,
    meta: dict[str, Any],
    where: str,
) -> np.ndarray:
    """Return ``(F, H, W)`` values in [0, 1] after Modality LUT, VOI and MONOCHROME1 inversion."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    padding = ds.get("PixelPaddingValue")
    valid = None if padding is None else stored != padding
    out = np.empty(stored.shape, dtype=np.float64)
    rescale: list[tuple[float, float]] = []
    for k, index in enumerate(indexes):
        slope = frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is not None or intercept is not None:
            s, b = float(slope if slope is not None else 1.0), float(intercept if intercept is not None else 0.0)
            out[k] = stored[k].astype(np.float64) * s + b
            rescale.append((s, b))
        elif ds.get("ModalityLUTSequence"):
            out[k] = apply_modality_lut(stored[k], ds).astype(np.float64)
        else:
            out[k] = stored[k]
    meta["rescale"] = {"slope": rescale[0][0], "intercept": rescale[0][1]} if rescale else None

    has_lut = bool(ds.get("VOILUTSequence"))
    if isinstance(window, tuple):
        center, width = float(window[0]), float(window[1])
        out = apply_window(out, center, width)
        meta["window"] = {"center": center, "width": width, "function": "LINEAR", "source": "given"}
    elif window == "minmax" or (window is None and header_window(ds, indexes[0]) is None and not has_lut):
        lo, hi = _padded_range(out, valid)
        out = min_max(out, lo, hi)
        meta["window"] = {"center": (lo + hi) / 2, "width": hi - lo, "function": "MINMAX", "source": "minmax"}
    elif (first_window := header_window(ds, indexes[0])) is not None:
        for k, index in enumerate(indexes):
            center, width, function = header_window(ds, index) or first_window
            out[k] = apply_window(out[k], center, width, function=function)
            if k == 0:
                meta["window"] = {"center": center, "width": width, "function": function, "source": "header"}
    elif has_lut:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        for k in range(len(indexes)):
            out[k] = apply_voi_lut(stored[k], ds, index=0, prefer_lut=True).astype(np.float64) / (2**bits - 1)
        out = np.clip(out, 0.0, 1.0)
        meta["window"] = {"center": None, "width": None, "function": "LUT", "source": "header"}
    else:
        raise DataError(
            "window='header' but the DICOM header has no Window Center/Width or VOI LUT; "
            "use window=None, 'minmax' or (center, width)",
            path=where,
        )
    if valid is not None:
        out = np.where(valid, out, 0.0)
    inverse = str(ds.get("PresentationLUTShape", "")).strip().upper() == "INVERSE"
    inverted = (photometric == "MONOCHROME1") != inverse
    meta["inverted"] = inverted
    if inverted:
        out = 1.0 - out
        if valid is not None:  # padding stays black whatever the polarity
            out = np.where(valid, out, 0.0)
    return out


def _padded_range(values: np.ndarray, valid: np.ndarray | None) -> tuple[float, float]:
    """Return (min, max) of ``values`` ignoring pixel padding."""
    chosen = values if valid is None or not valid.any() else values[valid]
    return float(chosen.min()), float(chosen.max())


def _colour(
    ds: Any,
    stored: np.ndarray,
    window: WindowArg,
    photometric: str,
    meta: dict[str, Any],
    where: str,
) -> np.ndarray:
    """Return ``(F, H, W, 3)`` RGB values in [0, 1] (PALETTE COLOR through its lookup table)."""
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(stored, ds)
        except Exception as exc:
            raise DataError(f"PALETTE COLOR lookup table is unusable ({exc})", path=where) from None
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        meta["photometric_used"] = "PALETTE COLOR -> RGB"
    elif stored.ndim == 4 and stored.shape[-1] == 3:
        rgb = stored
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        if photometric.startswith("YBR"):
            meta["photometric_used"] = f"{photometric} -> RGB"
    else:
        raise DataError(
            f"unsupported photometric interpretation '{photometric}' with {stored.shape[-1]} samples per pixel",
            path=where,
        )
    meta["rescale"] = None
    meta["inverted"] = False
    values = rgb.astype(np.float64)
    if isinstance(window, tuple):
        center, width = float(window[0]), float(window[1])
        meta["window"] = {"center": center, "width": width, "function": "LINEAR", "source": "given"}
        return apply_window(values, center, width)
    if window == "minmax":
        lo, hi = float(values.min()), float(values.max())
        meta["window"] = {"center": (lo + hi) / 2, "width": hi - lo, "function": "MINMAX", "source": "minmax"}
        return min_max(values, lo, hi)
    if window == "header":
        raise DataError(
            f"window='header' applies to MONOCHROME images; this one is {photometric}; use window=None",
            path=where,
        )
    meta["window"] = None
    return np.clip(values / float(2**bits - 1), 0.0, 1.0)
