"""What the service holds between requests, and how a request's form becomes the model's prepared inputs."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from medfuse.serve.batching import MicroBatcher
from medfuse.serve.config import ServeConfig
from medfuse.serve.engine import ModelInput, ModelService
from medfuse.serve.errors import ApiError
from medfuse.serve.inputs import Form, decode_upload, parse_vitals

T = TypeVar("T")
FILE_FIELDS = ("image", "audio", "video")


class ServiceState:
    """What the app holds between requests: the model service, index, batcher, counters and open streams."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.service: ModelService | None = None
        self.index: Any = None
        self.batcher: MicroBatcher[ModelInput, dict[str, Any]] | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.responses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, deque[float]] = {}
        self.streams: set[threading.Event] = set()  # the stop flags of the streams being generated

    def ready_service(self) -> ModelService:
        if self.service is None:
            raise ApiError("not_ready", "the model is still loading; retry shortly")
        return self.service

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the model thread (never alongside a batch), within the request timeout."""
        if self.executor is None:
            raise ApiError("not_ready", "the model is still loading; retry shortly")
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self.cfg.request_timeout_s)
        except TimeoutError:
            raise ApiError("timeout", f"no answer within {self.cfg.request_timeout_s:g}s; retry later") from None

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for path, values in self.latency.items():
            if values:
                data = np.asarray(values)
                out[path] = {f"p{q}": round(float(np.percentile(data, q)), 2) for q in (50, 95, 99)}
        return out


async def model_input(state: ServiceState, form: Form, *, text_field: str = "text") -> tuple[ModelInput, dict[str, Any]]:
    """Return the request's prepared inputs and what to echo about them (decoding off the event loop)."""
    service, cfg = state.ready_service(), state.cfg
    for name in FILE_FIELDS:
        if name in form.fields:
            raise ApiError("invalid_field", f"'{name}' must be a file upload", name)
    reads = service.reads()
    text = form.text(text_field, cfg.max_text_chars)
    if text and not reads["text"] and text_field == "text":
        raise ApiError("unsupported_input", "this model reads no text", text_field)
    vitals = parse_vitals(form.fields.get("vitals"), service.vitals_names)
    uploads = {name: form.files[name] for name in FILE_FIELDS if name in form.files}
    echo: dict[str, Any] = {"image": "image" in uploads, "text": bool(text), "format": None, "dicom": None,
                            "vitals": [] if vitals is None else
                            [n for n, v in zip(service.vitals_names, vitals) if np.isfinite(v)],
                            "audio": None, "video": None}
    for name in uploads:
        if not reads[name]:
            raise ApiError("unsupported_input", f"this model reads no {name}", name)
    if not uploads:
        return ModelInput(text=text, vitals=vitals), echo
    dc = service.config

    def decode() -> ModelInput:
        from medfuse.serve.media import prepare_audio_upload, prepare_video_upload, scratch_root

        item = ModelInput(text=text, vitals=vitals)
        if "image" in uploads:
            decoded = decode_upload(uploads["image"], channels=dc.channels, window=dc.window, frame=dc.frame,
                                    max_pixels=cfg.max_pixels)
            echo.update(format=decoded.format, dicom=decoded.dicom)
            item.image, item.pixels = service.embedder.prepare(decoded.pixels), decoded.pixels
        if "audio" in uploads:
            audio = prepare_audio_upload(uploads["audio"], service.audio_config, max_bytes=cfg.max_audio_bytes,
                                         max_seconds=cfg.max_audio_seconds)
            item.audio, echo["audio"] = audio.windows, audio.echo
        if "video" in uploads:
            video = prepare_video_upload(uploads["video"], dc, service.embedder.prepare.pipeline,
                                         max_bytes=cfg.max_video_bytes, max_frames=cfg.max_video_frames,
                                         max_pixels=cfg.max_pixels, scratch=scratch_root(cfg.scratch_dir))
            item.video, echo["video"] = video.frames, video.echo
        return item

    return await asyncio.get_running_loop().run_in_executor(None, decode), echo


def form_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the ``openapi_extra`` documenting a multipart form with ``properties``."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


IMAGE_FIELD = {"type": "string", "format": "binary", "description": "PNG, JPEG or DICOM file"}
TEXT_FIELD = {"type": "string", "description": "clinical text (the report)"}
VITALS_FIELD = {"type": "string", "description": 'JSON object of vital name -> number, e.g. {"heart_rate": 96}'}
AUDIO_FIELD = {"type": "string", "format": "binary", "description": "WAV or FLAC recording (heart or lung sounds)"}
VIDEO_FIELD = {"type": "string", "format": "binary", "description": "MP4, AVI or multi-frame DICOM clip"}
