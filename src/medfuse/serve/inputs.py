"""Request bodies and uploads, decoded in memory under limits; every bad input becomes an :class:`ApiError`.

Nothing a client sends is written to disk: the body is read into memory (refused past
``max_upload_bytes``, before parsing), multipart parts are collected in memory, and images are decoded
from bytes (video clips, whose decoder reads files, are the one exception: see :mod:`medfuse.serve.media`). Image dimensions are read from the header and checked against ``max_pixels`` before any
pixel is decoded. Upload file names are never echoed or logged (they often carry patient names), and
of a DICOM header only modality, rows, columns and the display window are returned.
"""

from __future__ import annotations

import io
import json
import logging
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from medfuse.core.errors import DataError
from medfuse.serve.errors import ApiError

log = logging.getLogger(__name__)

MAX_PARTS = 16
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
IMAGE_TYPES = frozenset({"", "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "application/dicom",
                         "application/octet-stream"})
TRUE, FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off", ""})


@dataclass
class UploadedFile:
    """One uploaded file, held in memory. ``content_type`` is as the client declared it (lower case)."""

    content_type: str
    data: bytes


@dataclass
class Form:
    """A request's fields (strings, or JSON values for a JSON body) and files, by name."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.fields or name in self.files

    def text(self, name: str, max_chars: int) -> str | None:
        """Return the field as stripped text (None when absent or blank); over ``max_chars`` is refused."""
        value = self.fields.get(name)
        if value is None:
            if name in self.files:
                raise ApiError("invalid_field", f"'{name}' must be a text field, not a file", name)
            return None
        if not isinstance(value, str):
            raise ApiError("invalid_field", f"'{name}' must be text", name)
        if len(value) > max_chars:
            raise ApiError("text_too_long", f"'{name}' has {len(value)} characters; the limit is {max_chars}", name)
        return value.strip() or None

    def flag(self, name: str, default: bool = False) -> bool:
        """Return a boolean field (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
        value = self.fields.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ApiError("invalid_field", f"'{name}' must be true or false", name)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """Return an integer field within ``[low, high]``."""
        value = self.fields.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ApiError("invalid_field", f"'{name}' must be an integer from {low} to {high}", name)
        return number


# ---------------------------------------------------------------- bodies
async def read_body(request: Any, max_bytes: int) -> bytes:
    """Return the request body, refusing (413) more than ``max_bytes`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise ApiError("payload_too_large", f"the request is {int(declared)} bytes; the limit is {max_bytes}")
        except ValueError:
            raise ApiError("bad_request", "Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError("payload_too_large", f"the request exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Any, *, max_bytes: int, allowed: Sequence[str], files: Sequence[str] = ()) -> Form:
    """Return the fields and files of a ``multipart/form-data``, url-encoded or JSON-object body.

    ``allowed`` lists the field names the endpoint reads (others are refused, so a misspelt field is not
    silently ignored); ``files`` the names that may carry a file.
    """
    from python_multipart.multipart import parse_options_header

    raw_type = request.headers.get("content-type", "")
    media, params = parse_options_header(raw_type)
    media_type = media.decode("latin-1").lower()
    body = await read_body(request, max_bytes)
    if media_type == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError("invalid_body", "multipart/form-data without a boundary")
        form = _parse_multipart(body, boundary)
    elif media_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARTS)
        except (UnicodeDecodeError, ValueError):
            raise ApiError("invalid_body", "the url-encoded body is malformed or has too many fields") from None
        form = Form()
        for name, value in pairs:
            _put(form.fields, name, value)
    elif media_type == "application/json":
        form = Form(fields=_parse_json(body))
    elif not body and not media_type:
        form = Form()
    else:
        raise ApiError("unsupported_media_type",
                       f"send multipart/form-data (files) or application/json, not '{media_type or 'no content type'}'")
    for name in form.fields:
        if name not in allowed:
            raise ApiError("unknown_field", f"unknown field '{name}'; this endpoint reads: {', '.join(allowed)}", name)
    for name in form.files:
        if name not in files:
            raise ApiError("unknown_field" if name not in allowed else "invalid_field",
                           f"'{name}' is not a file field" + (f"; files go in: {', '.join(files)}" if files else ""), name)
    return form


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    if name in target:
        raise ApiError("duplicate_field", f"field '{name}' is given more than once", name)
    target[name] = value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError("invalid_body", f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_body", "the JSON body must be an object of fields")
    return value


def _parse_multipart(body: bytes, boundary: bytes) -> Form:
    """Return the parts of a multipart body, all in memory."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    parts: list[dict[str, Any]] = []
    state: dict[str, Any] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise ApiError("invalid_body", f"more than {MAX_PARTS} parts in the form")
        parts.append({"headers": {}, "data": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].append(data[start:end])

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end, "on_part_data": on_part_data}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise ApiError("invalid_body", "the multipart body is malformed") from None
    form = Form()
    for part in parts:
        disposition, options = parse_options_header(part["headers"].get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise ApiError("invalid_body", "a multipart part has no form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        data = b"".join(part["data"])
        if b"filename" in options:
            if name in form.files or name in form.fields:
                raise ApiError("duplicate_field", f"field '{name}' is given more than once", name)
            content_type = part["headers"].get("content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            form.files[name] = UploadedFile(content_type=content_type, data=data)
            continue
        try:
            _put(form.fields, name, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ApiError("invalid_text", f"field '{name}' is not UTF-8 text", name) from None
    return form


# ---------------------------------------------------------------- vitals
def parse_vitals(raw: Any, names: Sequence[str], field_name: str = "vitals") -> np.ndarray | None:
    """Return vitals ``(F,)`` float32 in the checkpoint's column order (NaN = not given), from a JSON object.

    ``raw``: a JSON text or a mapping of name -> number (or null). Unknown names, non-numbers and
    non-finite numbers are refused naming the field (``vitals.<name>``).
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            raise ApiError("invalid_vitals", 'vitals must be a JSON object such as {"heart_rate": 88}', field_name) from None
    if not isinstance(raw, Mapping):
        raise ApiError("invalid_vitals", 'vitals must be a JSON object such as {"heart_rate": 88}', field_name)
    if not names:
        raise ApiError("unsupported_input", "this model reads no vitals", field_name)
    values = np.full(len(names), np.nan, dtype=np.float32)
    position = {n: i for i, n in enumerate(names)}
    for key, value in raw.items():
        where = f"{field_name}.{key}"
        if key not in position:
            raise ApiError("unknown_vitals", f"unknown vital '{key}'; known: {', '.join(names)}", where)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError("invalid_vitals", f"vital '{key}' must be a number or null", where)
        if not math.isfinite(float(value)) or abs(float(value)) > 1e9:
            raise ApiError("invalid_vitals", f"vital '{key}' must be a finite number", where)
        values[position[key]] = float(value)
    return values


# ---------------------------------------------------------------- images
@dataclass
class DecodedImage:
    """Decoded pixels (float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)``), the format, and for DICOM the
    echoed header facts (modality, rows, columns, window) only."""

    pixels: np.ndarray
    format: str
    dicom: dict[str, Any] | None = None


def sniff_format(data: bytes) -> str | None:
    """Return ``png``, ``jpeg`` or ``dicom`` from the leading bytes, or None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


def decode_upload(upload: UploadedFile, *, channels: int, window: Any, frame: Any, max_pixels: int,
                  field_name: str = "image") -> DecodedImage:
    """Return the decoded upload; refuse other types (415), oversize (413) and damaged files (422)."""
    if upload.content_type not in IMAGE_TYPES:
        raise ApiError("unsupported_media_type",
                       f"'{upload.content_type}' is not an accepted image type (PNG, JPEG or DICOM)", field_name)
    if not upload.data:
        raise ApiError("invalid_image", "the uploaded file is empty", field_name)
    kind = sniff_format(upload.data)
    if kind is None:
        raise ApiError("unsupported_media_type", "the file is not a PNG, JPEG or DICOM (Part 10) file", field_name)
    if kind == "dicom":
        return _decode_dicom(upload.data, channels=channels, window=window, frame=frame, max_pixels=max_pixels,
                             field_name=field_name)
    from PIL import Image

    from medfuse.data.images import decode_image_bytes

    try:
        with Image.open(io.BytesIO(upload.data)) as im:
            width, height = im.size
            frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # Pillow raises many types on a damaged header
        raise ApiError("invalid_image", f"the {kind.upper()} file is damaged and cannot be read", field_name) from None
    if width * height * frames > max_pixels:
        raise ApiError("image_too_large",
                       f"the image is {width}x{height} ({frames} frame(s)); the limit is {max_pixels} pixels", field_name)
    try:
        pixels = decode_image_bytes(upload.data, channels=channels, window=window, frame=frame, name="upload")
    except DataError as exc:
        raise ApiError("invalid_image", exc.reason, field_name) from None
    return DecodedImage(pixels=pixels, format=kind)


def _decode_dicom(data: bytes, *, channels: int, window: Any, frame: Any, max_pixels: int,
                  field_name: str) -> DecodedImage:
    from medfuse.core import require
    from medfuse.data.dicom import read_dicom
    from medfuse.data.images import to_channels

    pydicom = require("pydicom", extra="dicom", purpose="reading DICOM uploads")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # pydicom raises many types on a damaged header
        raise ApiError("invalid_dicom", "the DICOM header is damaged or truncated", field_name) from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ApiError("no_pixel_data", "the DICOM file holds no image (no pixel data)", field_name)
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        raise ApiError("invalid_dicom", "the DICOM header has malformed image dimensions", field_name) from None
    if rows * cols * frames > max_pixels:
        raise ApiError("image_too_large",
                       f"the DICOM image is {cols}x{rows} ({frames} frame(s)); the limit is {max_pixels} pixels", field_name)
    try:
        image = read_dicom(data, window=window, frame=frame if frame != "all" else "middle", name="upload")
    except DataError as exc:
        raise ApiError("invalid_dicom", exc.reason, field_name) from None
    return DecodedImage(pixels=to_channels(image.pixels, channels), format="dicom",
                        dicom=_echo_header(ds, image.meta.get("window")))


def _echo_header(ds: Any, window: Any) -> dict[str, Any]:
    """Return the header facts the service echoes, read after de-identification when it is available."""
    try:
        from medfuse.data.dicom_deid import UIDMap, deidentify_dicom
    except ImportError:
        log.debug("medfuse.data.dicom_deid is unavailable; echoing only allow-listed, non-identifying attributes")
    else:
        deidentify_dicom(ds, uid_map=UIDMap(secrets.token_bytes(32)))
    modality = str(ds.get("Modality", "") or "").strip() or None
    return {"modality": modality, "rows": int(ds.get("Rows") or 0), "columns": int(ds.get("Columns") or 0),
            "window": _window(window)}


def _window(window: Any) -> list[float] | None:
    if isinstance(window, Mapping):
        center, width = window.get("center"), window.get("width")
    elif isinstance(window, (list, tuple)) and len(window) >= 2:
        center, width = window[0], window[1]
    else:
        return None
    if center is None or width is None:
        return None
    try:
        return [float(center), float(width)]
    except (TypeError, ValueError):
        return None
