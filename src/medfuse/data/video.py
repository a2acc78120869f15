"""Video clips (echocardiography, endoscopy, ultrasound cine) from MP4/AVI and DICOM multi-frame files.

:func:`load_video` streams the file and keeps only the sampled frames, so a long clip never sits in
memory whole. Container video goes through PyAV (FFmpeg); DICOM cine loops through pydicom, frame by
frame, with the Modality LUT applied. :func:`write_video` writes MP4 (H.264, or MPEG-4 Part 2) and AVI
(Motion JPEG) files.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError, DataError
from medfuse.core.optional import require

__all__ = ["load_video", "sample_frame_indices", "write_video"]

log = logging.getLogger(__name__)

Sampling = Literal["uniform", "strided"]
_DICOM_SUFFIXES = {".dcm", ".dicom"}
# A frame count read from a container header may be off by a frame or two (edit lists, a dropped
# trailing frame); beyond this the file is treated as truncated.
_COUNT_SLACK = 0.02


def sample_frame_indices(
    n_total: int, num_frames: int | None, sampling: Sampling = "uniform", stride: int = 2, offset: int = 0
) -> np.ndarray:
    """Return the source frame indices to keep, ``(num_frames,)`` int64, sorted (repeats allowed).

    ``uniform``: ``num_frames`` indices evenly spaced from the first to the last frame; a clip with
    fewer frames repeats frames. ``strided``: every ``stride``-th frame from ``offset``; past the end
    the last frame is repeated, so the result always has ``num_frames`` entries. ``num_frames=None``
    keeps every frame (``uniform``) or every ``stride``-th frame from ``offset`` (``strided``).
    """
    check_choice("sampling", sampling, ["uniform", "strided"])
    if n_total < 1:
        raise ConfigError("sample_frame_indices: the clip has no frames")
    if stride < 1 or offset < 0:
        raise ConfigError(f"stride must be >= 1 and offset >= 0, got stride={stride}, offset={offset}")
    if num_frames is not None and num_frames < 1:
        raise ConfigError(f"num_frames must be at least 1 or None, got {num_frames}")
    if sampling == "uniform":
        if num_frames is None:
            return np.arange(n_total, dtype=np.int64)
        return np.round(np.linspace(0, n_total - 1, num_frames)).astype(np.int64)
    if num_frames is None:
        idx = np.arange(min(offset, n_total - 1), n_total, stride, dtype=np.int64)
        return idx
    return np.minimum(offset + stride * np.arange(num_frames, dtype=np.int64), n_total - 1)


def load_video(
    path: str | Path,
    *,
    num_frames: int | None = 16,
    sampling: Sampling = "uniform",
    stride: int = 2,
    offset: int = 0,
    size: int | tuple[int, int] | None = None,
    channels: int = 1,
) -> np.ndarray:
    """Return sampled frames as float32 in [0, 1]: ``(T, H, W)`` when ``channels=1``, ``(T, H, W, 3)`` when 3.

    ``T = num_frames`` (see :func:`sample_frame_indices` for ``sampling``, ``stride``, ``offset``).
    ``size``: output ``(H, W)`` (an int gives a square); None keeps the source size. MP4/AVI/MOV/MKV
    are decoded with PyAV; DICOM (``.dcm`` or a ``DICM`` preamble) with pydicom, where frames are
    scaled by the Modality LUT, then min-max over the sampled frames (MONOCHROME1 inverted).
    A missing, corrupt or truncated file raises :class:`DataError` naming the file.
    """
    path = Path(path)
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    out_size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    if out_size is not None and (len(out_size) != 2 or min(out_size) < 1):
        raise ConfigError(f"size must be a positive int or (H, W), got {size}")
    if not path.is_file():
        raise DataError(
            "video file not found; check the path (relative paths are resolved from the manifest's folder)", path=path
        )
    if _is_dicom(path):
        return _load_dicom_cine(path, num_frames, sampling, stride, offset, out_size, channels)  # type: ignore[arg-type]
    return _load_container(path, num_frames, sampling, stride, offset, out_size, channels)  # type: ignore[arg-type]


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    with path.open("rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _corrupt(path: Path, detail: object) -> DataError:
    return DataError(
        f"cannot decode video ({detail}); the file is corrupt, truncated or in an unsupported codec: "
        "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4",
        path=path,
    )


def _load_container(
    path: Path, num_frames: int | None, sampling: Sampling, stride: int, offset: int,
    out_size: tuple[int, int] | None, channels: int,
) -> np.ndarray:
    av = require("av", extra="video", purpose="reading MP4/AVI video")
    errors = (av.FFmpegError, OSError, ValueError, EOFError, IndexError)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError("file holds no video stream; give a video file (MP4, AVI) or a DICOM cine loop", path=path)
            declared = int(container.streams.video[0].frames or 0)
            counted = declared if declared > 0 else _count_packets(container)
    except DataError:
        raise
    except errors as exc:
        raise _corrupt(path, exc) from None
    if counted < 1:
        raise DataError("video holds no frames; re-export the clip", path=path)
    indices = sample_frame_indices(counted, num_frames, sampling, stride, offset)
    try:
        frames, decoded = _decode_selected(av, path, indices, out_size, channels)
        if frames is None:
            # Fewer frames than the header said. A small shortfall is a miscount: sample again from
            # what is really there; a large one is a cut-off file.
            if decoded < 1 or counted - decoded > max(2, _COUNT_SLACK * counted):
                raise DataError(
                    f"video ends after {decoded} frames but its header declares {counted}: the file is truncated "
                    "or corrupt; re-copy or re-encode it",
                    path=path,
                )
            log.debug("%s: header declares %d frames, decoded %d; resampling", path, counted, decoded)
            indices = sample_frame_indices(decoded, num_frames, sampling, stride, offset)
            frames, _ = _decode_selected(av, path, indices, out_size, channels)
    except DataError:
        raise
    except errors as exc:
        raise _corrupt(path, exc) from None
    if frames is None:
        raise DataError("video frame count changes between reads: the file is corrupt; re-encode it", path=path)
    return frames


def _count_packets(container: Any) -> int:
    """Return the number of video packets (one per frame), read without decoding."""
    stream = container.streams.video[0]
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _decode_selected(
    av: Any, path: Path, indices: np.ndarray, out_size: tuple[int, int] | None, channels: int
) -> tuple[np.ndarray | None, int]:
    """Decode up to the last index in ``indices``, converting only the frames kept.

    Intra-only codecs (Motion JPEG, raw) decode just the kept packets; other codecs decode every frame
    up to the last kept one (later frames depend on earlier ones). Returns ``(frames, seen)``;
    ``frames`` is None when the stream ended before the last index.
    """
    wanted: dict[int, list[int]] = {}
    for pos, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(pos)
    last = int(indices.max())
    out: np.ndarray | None = None
    filled = 0
    seen = 0
    fmt = "gray" if channels == 1 else "rgb24"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        intra_only = bool(getattr(stream.codec_context.codec, "intra_only", False))
        # Frame threading delays output by a few packets, which breaks one packet -> one frame.
        stream.thread_type = "SLICE" if intra_only else "AUTO"
        frames = _intra_frames(container, stream, wanted) if intra_only else enumerate(container.decode(stream))
        for index, frame in frames:
            seen = index + 1
            positions = wanted.get(index)
            if positions is None:
                continue
            if out_size is not None:
                image = frame.to_ndarray(format=fmt, width=out_size[1], height=out_size[0], interpolation="AREA")
            else:
                image = frame.to_ndarray(format=fmt)
            if out is None:
                out = np.empty((len(indices), *image.shape), dtype=np.float32)
            out[positions] = image.astype(np.float32) * (1.0 / 255.0)
            filled += 1
            if index >= last:
                break
    if filled < len(wanted):
        if seen > last:  # the stream went on, but a kept frame did not decode
            raise DataError(
                f"{len(wanted) - filled} sampled frame(s) could not be decoded: the file is corrupt; re-encode it",
                path=path,
            )
        return None, seen
    return out, seen


def _intra_frames(container: Any, stream: Any, wanted: dict[int, list[int]]) -> Any:
    """Yield ``(index, frame)`` for kept packets of an intra-only stream; other packets are skipped undecoded."""
    index = 0
    last = max(wanted)
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if index in wanted:
            for frame in packet.decode():
                yield index, frame
        else:
            yield index, None
        index += 1
        if index > last:
            return


def _load_dicom_cine(
    path: Path, num_frames: int | None, sampling: Sampling, stride: int, offset: int,
    out_size: tuple[int, int] | None, channels: int,
) -> np.ndarray:
    pydicom = require("pydicom", extra="dicom", purpose="reading DICOM cine loops")
    from pydicom.pixels import apply_modality_lut, iter_pixels

    try:
        meta = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"cannot read DICOM header ({exc}); the file is corrupt or not DICOM", path=path) from None
    n_total = int(getattr(meta, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(meta, "PhotometricInterpretation", "MONOCHROME2"))
    indices = sample_frame_indices(n_total, num_frames, sampling, stride, offset)
    unique = sorted(set(indices.tolist()))
    decoded: dict[int, np.ndarray] = {}
    try:
        for idx, frame in zip(unique, iter_pixels(str(path), indices=unique)):
            frame = np.asarray(frame)
            if frame.ndim == 2:
                frame = apply_modality_lut(frame, meta)
            decoded[idx] = np.asarray(frame, dtype=np.float32)
    except (RuntimeError, ValueError, AttributeError, KeyError, OSError, EOFError, NotImplementedError) as exc:
        raise DataError(
            f"cannot decode DICOM pixel data ({exc}); the file is truncated, or compressed with a codec whose "
            "pydicom plugin is missing (pip install pylibjpeg pylibjpeg-libjpeg)",
            path=path,
        ) from None
    if len(decoded) != len(unique):
        raise DataError(f"DICOM declares {n_total} frames but fewer could be read: truncated file", path=path)
    clip = np.stack([decoded[i] for i in indices.tolist()])  # (T, H, W) or (T, H, W, 3)
    lo, hi = float(clip.min()), float(clip.max())
    clip = (clip - lo) / (hi - lo) if hi > lo else np.zeros_like(clip)
    if photometric == "MONOCHROME1":
        clip = 1.0 - clip
    clip = _match_channels(clip, channels)
    if out_size is not None and clip.shape[1:3] != out_size:
        clip = np.stack([_resize(f, out_size) for f in clip])
    return np.ascontiguousarray(clip, dtype=np.float32)


def _match_channels(clip: np.ndarray, channels: int) -> np.ndarray:
    """Return ``clip`` as ``(T, H, W)`` (luminance, ITU-R BT.601 weights) or ``(T, H, W, 3)``."""
    if channels == 1 and clip.ndim == 4:
        return clip @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if channels == 3 and clip.ndim == 3:
        return np.repeat(clip[..., None], 3, axis=-1)
    return clip


def _resize(frame: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Return ``frame`` ``(H, W)`` or ``(H, W, 3)`` float32 resized to ``out_size`` with box filtering."""
    height, width = out_size
    if frame.ndim == 2:
        return np.asarray(Image.fromarray(frame, mode="F").resize((width, height), Image.Resampling.BOX))
    return np.stack([_resize(frame[..., c], out_size) for c in range(frame.shape[-1])], axis=-1)


def write_video(
    path: str | Path, frames: np.ndarray, fps: float = 25.0, *, codec: str | None = None, quality: int | None = None
) -> Path:
    """Write ``frames`` ``(T, H, W)`` or ``(T, H, W, 3)`` (float in [0, 1] or uint8) to MP4 or AVI; return the path.

    ``.mp4``/``.mov``/``.mkv``: H.264 (``libx264``, CRF ``quality``, default 17) when FFmpeg has it, else
    MPEG-4 Part 2 (``mpeg4``, qscale ``quality``, default 2); both use 4:2:0 chroma, so H and W must be
    even. ``.avi``: Motion JPEG (``mjpeg``, 4:4:4, qscale ``quality``, default 2), any size.
    ``codec`` overrides the choice.
    """
    av = require("av", extra="video", purpose="writing video")
    path = Path(path)
    arr = np.asarray(frames)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3) or arr.shape[0] < 1:
        raise ConfigError(f"write_video: frames must be (T, H, W) or (T, H, W, 3) with T >= 1, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".mov", ".mkv", ".m4v", ".avi"):
        raise ConfigError(f"write_video: unknown container '{suffix}'; use .mp4, .mov, .mkv or .avi")
    if codec is None:
        codec = "mjpeg" if suffix == ".avi" else ("libx264" if _has_encoder(av, "libx264") else "mpeg4")
    height, width = arr.shape[1:3]
    pix_fmt = "yuvj444p" if codec == "mjpeg" else "yuv420p"
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ConfigError(f"write_video: {codec} with 4:2:0 chroma needs even height and width, got {height}x{width}; "
                          "crop or pad the frames, or write .avi")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "gray" if arr.ndim == 3 else "rgb24"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": str(17 if quality is None else quality), "preset": "fast"}
        else:
            stream.codec_context.qscale = 2 if quality is None else quality
        for image in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _has_encoder(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises different types across versions for an unknown codec
        return False
    return True
