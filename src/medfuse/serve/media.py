"""Audio and video uploads: held to the limits their headers state, then prepared as the training dataset does.

Audio (WAV, FLAC) is decoded from memory and cut into windows by
:func:`medfuse.data.audio.prepare_audio_windows`, the dataset's own preparation. Video (MP4, AVI,
Matroska, multi-frame DICOM) is first probed in memory (frame count and frame size against the limits,
before any frame is decoded); the clip is then read by :func:`medfuse.data.dataset.prepare_video`, which
reads files, from a private folder (mode 0700, in memory under ``/dev/shm`` when available) that is
removed as soon as the clip is read, whether it decoded or not. A DICOM clip is de-identified (PS3.15
basic profile) before it is written, so no patient attribute reaches a file, and of its header only
modality, rows, columns and frame count are echoed. Upload file names are never used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from medfuse.core import require
from medfuse.core.errors import ConfigError, DataError
from medfuse.serve.errors import ApiError
from medfuse.serve.inputs import UploadedFile

AUDIO_TYPES = frozenset({"", "application/octet-stream", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
                         "audio/flac", "audio/x-flac"})
VIDEO_TYPES = frozenset({"", "application/octet-stream", "application/dicom", "video/mp4", "video/quicktime",
                         "video/x-msvideo", "video/avi", "video/msvideo", "video/x-matroska", "video/webm"})
VIDEO_SUFFIX = {"mp4": ".mp4", "avi": ".avi", "mkv": ".mkv", "dicom": ".dcm"}

log = logging.getLogger(__name__)


@dataclass
class PreparedAudio:
    """An audio upload as the model reads it: ``windows`` ``(W, T)`` float32, and what the service echoes."""

    windows: Tensor
    echo: dict[str, Any]


@dataclass
class PreparedVideo:
    """A video upload as the model reads it: ``frames`` ``(T, C, S, S)`` normalised, and what the service echoes."""

    frames: Tensor
    echo: dict[str, Any]


def sniff_audio(data: bytes) -> str | None:
    """Return ``wav`` or ``flac`` from the leading bytes, or None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"fLaC"):
        return "flac"
    return None


def sniff_video(data: bytes) -> str | None:
    """Return ``mp4`` (MP4/QuickTime), ``avi``, ``mkv`` (Matroska/WebM) or ``dicom`` from the leading bytes, or None."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mp4"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"
    return None


def _check_upload(upload: UploadedFile, accepted: frozenset[str], max_bytes: int, what: str, field_name: str) -> None:
    if upload.content_type not in accepted:
        raise ApiError("unsupported_media_type", f"'{upload.content_type}' is not an accepted {what} type", field_name)
    if not upload.data:
        raise ApiError(f"invalid_{what}", "the uploaded file is empty", field_name)
    if len(upload.data) > max_bytes:
        raise ApiError("payload_too_large", f"the {field_name} file is {len(upload.data)} bytes; the limit is {max_bytes}",
                       field_name)


# ---------------------------------------------------------------- audio
def prepare_audio_upload(upload: UploadedFile, config: Any, *, max_bytes: int, max_seconds: float,
                         field_name: str = "audio") -> PreparedAudio:
    """Return the recording as windows ``(W, T)`` prepared by ``config`` (an ``AudioConfig``), as the dataset does.

    Refuses other types (415), files over ``max_bytes`` or ``max_seconds`` (413, read from the header before
    decoding) and damaged recordings (422), each naming ``field_name``.
    """
    import numpy as np
    import soundfile as sf
    import torch

    from medfuse.data.audio import decode_audio_bytes, prepare_audio_windows

    _check_upload(upload, AUDIO_TYPES, max_bytes, "audio", field_name)
    kind = sniff_audio(upload.data)
    if kind is None:
        raise ApiError("unsupported_media_type", "the file is not a WAV or FLAC recording", field_name)
    try:
        info = sf.info(io.BytesIO(upload.data))
        seconds, rate = float(info.frames) / float(info.samplerate), int(info.samplerate)
    except Exception:  # libsndfile raises several types on a damaged header
        raise ApiError("invalid_audio", f"the {kind.upper()} file is damaged and cannot be read", field_name) from None
    if seconds > max_seconds:
        raise ApiError("audio_too_long", f"the recording lasts {seconds:.1f} s; the limit is {max_seconds:g} s", field_name)
    try:
        samples, sr = decode_audio_bytes(upload.data, sample_rate=config.sample_rate, mono=True, name="upload")
        windows = prepare_audio_windows(samples, sr, config)
    except (DataError, ConfigError) as exc:
        raise ApiError("invalid_audio", getattr(exc, "reason", str(exc)), field_name) from None
    tensor = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    return PreparedAudio(tensor, {"format": kind, "seconds": round(seconds, 3), "sample_rate": rate,
                                  "windows": int(tensor.shape[0])})


# ---------------------------------------------------------------- video
def scratch_root(configured: str | Path | None) -> str | None:
    """Return the folder private scratch folders go in: ``configured``, else ``/dev/shm`` when writable, else
    None (the system temporary folder)."""
    if configured is not None:
        return str(configured)
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


@contextlib.contextmanager
def scratch_file(root: str | None, suffix: str) -> Iterator[Path]:
    """Yield a path in a new private folder under ``root``; the folder and all in it are removed on exit."""
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="medfuse-upload-", dir=root))  # mode 0700: this user only
    try:
        yield folder / f"upload{suffix}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def prepare_video_upload(upload: UploadedFile, config: Any, pipeline: Any, *, max_bytes: int, max_frames: int,
                         max_pixels: int, scratch: str | None, field_name: str = "video") -> PreparedVideo:
    """Return the clip as ``config.video_frames`` frames ``(T, C, S, S)`` prepared as the dataset does.

    ``config``: the checkpoint's ``DataConfig``; ``pipeline``: its ``ImagePipeline`` (mean, std). Refuses
    other types (415), files over ``max_bytes``, clips over ``max_frames`` or frames over ``max_pixels``
    (413, from the header) and damaged clips (422), each naming ``field_name``.
    """
    from medfuse.data.dataset import prepare_video

    _check_upload(upload, VIDEO_TYPES, max_bytes, "video", field_name)
    kind = sniff_video(upload.data)
    if kind is None:
        raise ApiError("unsupported_media_type", "the file is not an MP4, AVI, Matroska or DICOM clip", field_name)
    if kind == "dicom":
        payload, echo = _probe_dicom(upload.data, max_frames, max_pixels, field_name)
    else:
        payload, echo = upload.data, _probe_container(upload.data, kind, max_frames, max_pixels, field_name)
    with scratch_file(scratch, VIDEO_SUFFIX[kind]) as path:
        try:
            path.write_bytes(payload)
        except OSError as exc:  # e.g. a full /dev/shm: the server's condition, not the client's
            log.warning("no room to read a video upload (%s)", exc.strerror or type(exc).__name__)
            raise ApiError("overloaded", "the server has no room to read the clip now; retry shortly", field_name) from None
        try:
            frames = prepare_video(path, config, pipeline)
        except (DataError, ConfigError) as exc:
            reason = getattr(exc, "reason", str(exc)).replace(str(path), "the upload")
            raise ApiError("invalid_video", reason, field_name) from None
    return PreparedVideo(frames, {**echo, "sampled": int(frames.shape[0])})


def _limits(frames: int, width: int, height: int, max_frames: int, max_pixels: int, field_name: str) -> None:
    if frames < 1 or width < 1 or height < 1:
        raise ApiError("invalid_video", "the clip holds no decodable frames", field_name)
    if frames > max_frames:
        raise ApiError("video_too_long", f"the clip has {frames} frames; the limit is {max_frames}", field_name)
    if width * height > max_pixels:
        raise ApiError("video_too_large", f"the frames are {width}x{height}; the limit is {max_pixels} pixels a frame",
                       field_name)


def _probe_container(data: bytes, kind: str, max_frames: int, max_pixels: int, field_name: str) -> dict[str, Any]:
    """Return the clip's format, frame count and size, read from memory without decoding a frame."""
    av = require("av", extra="video", purpose="reading video uploads")
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ApiError("invalid_video", "the file holds no video stream", field_name)
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            frames = int(stream.frames or 0)
            if frames <= 0:  # a container that stores no count (Matroska): count packets, up to the limit
                for packet in container.demux(stream):
                    frames += packet.size > 0
                    if frames > max_frames:
                        break
    except ApiError:
        raise
    except Exception:  # FFmpeg raises many types on a damaged container
        raise ApiError("invalid_video", f"the {kind.upper()} file is damaged and cannot be read", field_name) from None
    _limits(frames, width, height, max_frames, max_pixels, field_name)
    return {"format": kind, "frames": frames, "width": width, "height": height, "modality": None}


def _probe_dicom(data: bytes, max_frames: int, max_pixels: int, field_name: str) -> tuple[bytes, dict[str, Any]]:
    """Return the DICOM file de-identified (its pixels unchanged) and what is echoed of it, after the limits."""
    pydicom = require("pydicom", extra="dicom", purpose="reading DICOM cine uploads")
    from medfuse.data.dicom_deid import UIDMap, deidentify_dicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # pydicom raises many types on a damaged header
        raise ApiError("invalid_video", "the DICOM header is damaged or truncated", field_name) from None
    if "PixelData" not in dataset:
        raise ApiError("no_pixel_data", "the DICOM file holds no image frames (no pixel data)", field_name)
    try:
        rows, cols = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
        frames = max(1, int(dataset.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        raise ApiError("invalid_video", "the DICOM header has malformed frame dimensions", field_name) from None
    _limits(frames, cols, rows, max_frames, max_pixels, field_name)
    deidentify_dicom(dataset, uid_map=UIDMap(secrets.token_bytes(32)))
    modality = str(dataset.get("Modality", "") or "").strip() or None
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue(), {"format": "dicom", "frames": frames, "width": cols, "height": rows, "modality": modality}
