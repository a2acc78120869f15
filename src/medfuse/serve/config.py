"""Settings of the HTTP service: what to serve, where, and the limits every request is held to."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medfuse.core.errors import ConfigError


@dataclass
class GenerationRequest:
    """What a generative model is asked: ``answer`` a question about an image, or draft a ``report``.

    image: decoded pixels, float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)`` (None when not given).
    text: the question (``answer``) or clinical context (``report``, may be empty).
    """

    task: Literal["answer", "report"]
    image: np.ndarray | None
    text: str
    max_new_tokens: int = 256


GeneratorFn = Callable[[GenerationRequest], str]
"""A generator: request -> text. One that also has a ``stream(request) -> Iterable[str]`` method streams
its text in pieces on ``/v1/answer/stream`` and ``/v1/report/stream`` (the pieces join to what the call
returns); without it, a stream carries the whole text as one piece."""


@dataclass
class ServeConfig:
    """The service's settings.

    checkpoint: a checkpoint folder, or the folder of ``medfuse train --out DIR`` (its ``model/`` is used).
    host, port: where :func:`medfuse.serve.run_server` listens (127.0.0.1: this machine only).
    index: a folder written by ``medfuse index build`` for ``/v1/retrieve`` and retrieval-drafted reports.
    api_key: when set, every ``/v1`` request must carry it in the ``X-API-Key`` header.
    generator: a generative model for ``/v1/answer`` and ``/v1/report``: a callable taking a
      :class:`GenerationRequest`, or a path that ``medfuse.models.generation.load_generator`` loads.
    device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    max_batch, max_wait_ms: dynamic batching of ``/v1/classify``: requests waiting for the model share one
      forward pass, up to ``max_batch``; a batch waits up to ``max_wait_ms`` after its first request for
      requests still being read or decoded, and not at all when none is on its way.
    max_queue: requests waiting for the model beyond this are refused with 503 (overload).
    max_upload_bytes: largest request body; max_pixels: largest image (width x height x frames), checked
      from the header before any pixel is decoded (decompression bombs); max_text_chars: longest text.
    request_timeout_s: a request waiting longer than this for the model gets 504; a streamed answer is
      cut with a ``timeout`` error event when it has not finished within this time.
    max_audio_bytes, max_audio_seconds: largest ``audio`` upload (WAV/FLAC) and longest recording, the
      duration read from the header before any sample is decoded.
    max_video_bytes, max_video_frames: largest ``video`` upload (MP4/AVI/DICOM cine) and most frames in the
      clip, read from the header before decoding; each frame is also held to ``max_pixels``.
    scratch_dir: where a decoder that needs a file (video) gets a private folder, removed as soon as the
      clip is read; default ``/dev/shm`` (memory) when writable, else the system temporary folder.
    redact_texts: de-identify indexed case texts before returning them (``medfuse.text.deid``).
    log_level: the server's log level.
    threads: CPU threads torch uses for the model, set by :func:`medfuse.serve.run_server` for its process.
      Default: ``OMP_NUM_THREADS`` when set, else one fewer than the CPUs the process may run on (at least
      one), leaving a core to read requests and decode uploads; a model given every core competes with them
      (its worker threads spin while waiting), which on a two-core machine costs more than it gains.
    """

    checkpoint: str | Path
    host: str = "127.0.0.1"
    port: int = 8000
    index: str | Path | None = None
    api_key: str | None = None
    generator: str | Path | GeneratorFn | None = None
    device: str = "auto"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 256
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 30_000_000
    max_text_chars: int = 20_000
    request_timeout_s: float = 30.0
    max_audio_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 300.0
    max_video_bytes: int = 20 * 1024 * 1024
    max_video_frames: int = 1000
    scratch_dir: str | Path | None = None
    redact_texts: bool = True
    log_level: str = "info"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not str(self.checkpoint):
            raise ConfigError("checkpoint: name a checkpoint folder")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port: expected 0..65535, got {self.port!r}")
        for name, low in (("max_batch", 1), ("max_queue", 1), ("max_upload_bytes", 1024), ("max_pixels", 64),
                          ("max_text_chars", 1), ("max_audio_bytes", 1024), ("max_video_bytes", 1024),
                          ("max_video_frames", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"threads: expected an integer >= 1 (or unset for the default), got {self.threads!r}")
        if not 0 <= float(self.max_wait_ms) <= 10_000:
            raise ConfigError(f"max_wait_ms: expected 0..10000, got {self.max_wait_ms!r}")
        if not float(self.max_audio_seconds) > 0:
            raise ConfigError(f"max_audio_seconds: expected > 0, got {self.max_audio_seconds!r}")
        if not float(self.request_timeout_s) > 0:
            raise ConfigError(f"request_timeout_s: expected > 0, got {self.request_timeout_s!r}")
        if self.api_key is not None and not str(self.api_key).strip():
            raise ConfigError("api_key: must not be empty (leave it unset to serve without a key)")
        device = str(self.device)
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")

    def resolved_device(self) -> str:
        """Return the torch device to load the model on."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def model_threads(self) -> int:
        """Return the torch intra-op thread count for serving (see ``threads``)."""
        if self.threads is not None:
            return int(self.threads)
        configured = os.environ.get("OMP_NUM_THREADS", "").strip()
        if configured.isdigit() and int(configured) > 0:
            return int(configured)
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cpus = os.cpu_count() or 1
        return max(1, cpus - 1)

    def public(self) -> dict[str, Any]:
        """Return the limits a client may see (no paths, no key)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_text_chars": self.max_text_chars,
            "max_batch": self.max_batch,
            "request_timeout_s": self.request_timeout_s,
            "max_audio_bytes": self.max_audio_bytes,
            "max_audio_seconds": self.max_audio_seconds,
            "max_video_bytes": self.max_video_bytes,
            "max_video_frames": self.max_video_frames,
        }
