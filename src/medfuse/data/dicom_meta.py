"""Header facts of a DICOM dataset: per-frame attributes, the header window and de-identified metadata.

Enhanced (multi-frame) objects keep rescale, window and spacing in functional groups; the helpers
here look there first (the frame's own group, then the shared group) and then at the top level.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# Ages above this are reported as this value (HIPAA Safe Harbor groups ages over 89).
MAX_REPORTED_AGE = 90.0

_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def _first(value: Any) -> Any:
    """Return the first value of a multi-valued element, the value itself otherwise."""
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def frame_attribute(ds: Any, index: int, sequence: str, attribute: str, *, first: bool = True) -> Any:
    """Return ``attribute`` for frame ``index``: per-frame group, shared group, then top level.

    With ``first`` (the default) a multi-valued element gives its first value.
    """
    pick_value = _first if first else (lambda v: v)
    for groups, pick in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is None or len(seq) <= pick:
            continue
        inner = seq[pick].get(sequence)
        if inner is not None and len(inner) and attribute in inner[0]:
            return pick_value(inner[0].get(attribute))
    return pick_value(ds.get(attribute))


def header_window(ds: Any, index: int = 0) -> tuple[float, float, str] | None:
    """Return ``(center, width, function)`` of the header's first window for frame ``index``, or None."""
    center = frame_attribute(ds, index, "FrameVOILUTSequence", "WindowCenter")
    width = frame_attribute(ds, index, "FrameVOILUTSequence", "WindowWidth")
    if center is None or width is None:
        return None
    function = frame_attribute(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR"
    try:
        center_f, width_f = float(center), float(width)
    except (TypeError, ValueError):
        log.warning("ignoring a malformed header window (center=%r, width=%r)", center, width)
        return None
    function = str(function).strip().upper()
    if width_f < 1 and function == "LINEAR" or width_f <= 0:
        log.warning("ignoring a header window with width %s (invalid for %s)", width_f, function)
        return None
    return center_f, width_f, function


def parse_age(value: Any) -> float | None:
    """Return a DICOM Age String (``"045Y"``, ``"006M"``) in years, capped at 90; None if unreadable."""
    text = str(value or "").strip().upper()
    if len(text) < 2 or text[-1] not in _AGE_UNITS or not text[:-1].isdigit():
        return None
    return min(MAX_REPORTED_AGE, round(int(text[:-1]) * _AGE_UNITS[text[-1]], 2))


def _spacing(ds: Any, index: int) -> tuple[float, float] | None:
    """Return (row, column) pixel spacing in mm from the header, or None."""
    value = frame_attribute(ds, index, "PixelMeasuresSequence", "PixelSpacing", first=False)
    if value is None:
        value = ds.get("ImagerPixelSpacing")
    try:
        return (float(value[0]), float(value[1])) if value is not None and len(value) >= 2 else None
    except (TypeError, ValueError):
        return None


def _text(ds: Any, keyword: str) -> str | None:
    value = _first(ds.get(keyword))
    text = str(value).strip() if value is not None else ""
    return text or None


def public_meta(ds: Any, *, n_frames: int, frame: int | str) -> dict[str, Any]:
    """Return de-identified facts about the image: no names, identifiers, dates or institutions."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    sex = (_text(ds, "PatientSex") or "").upper()
    index = frame if isinstance(frame, int) else 0
    return {
        "modality": _text(ds, "Modality"),
        "photometric": _text(ds, "PhotometricInterpretation"),
        "rows": int(ds.get("Rows") or 0),
        "columns": int(ds.get("Columns") or 0),
        "frames": n_frames,
        "frame": frame,
        "spacing": _spacing(ds, index),
        "bits_stored": int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0),
        "transfer_syntax": getattr(tsyntax, "name", None) if tsyntax is not None else None,
        "body_part": _text(ds, "BodyPartExamined"),
        "view": _text(ds, "ViewPosition"),
        "laterality": _text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        "sex": sex if sex in ("F", "M", "O") else None,
        "age": parse_age(ds.get("PatientAge")),
    }
