"""The HTTP service: versioned JSON endpoints, dynamic batching, limits, API keys and the clinician page.

Endpoints: ``POST /v1/classify`` (batched; image, text, vitals, audio and video), ``/v1/embed``,
``/v1/retrieve``, ``/v1/answer``, ``/v1/report`` and their Server-Sent Events forms ``/v1/answer/stream``,
``/v1/report/stream``; ``GET /v1/info``, ``/v1/stats``, ``/healthz``, ``/readyz``; the web page at ``/``;
the API's documentation at ``/docs``, served from this machine (:mod:`medfuse.serve.docs`).
Every refusal is ``{"error": {"code", "message", "field"}}`` with a 4xx status; an unexpected failure is
a 500 of the same shape without internals. Request bodies are never logged.

Annotations are evaluated (no ``from __future__ import annotations``): FastAPI reads the route
functions' parameter types, imported inside :func:`create_app` because FastAPI is optional.
"""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from medfuse.core import require
from medfuse.serve.batching import MicroBatcher
from medfuse.serve.config import ServeConfig
from medfuse.serve.engine import ModelService
from medfuse.serve.errors import ApiError, error_body
from medfuse.serve.inputs import Form, read_form
from medfuse.serve.middleware import RequestGuard
from medfuse.serve.state import (
    AUDIO_FIELD,
    FILE_FIELDS,
    IMAGE_FIELD,
    TEXT_FIELD,
    VIDEO_FIELD,
    VITALS_FIELD,
    ServiceState,
    form_schema,
    model_input,
)

log = logging.getLogger("medfuse.serve")

STATIC = Path(__file__).parent / "static"


def create_app(cfg: ServeConfig) -> Any:
    """Return the FastAPI app serving ``cfg.checkpoint`` (loaded once at start-up, on the GPU when present)."""
    require("fastapi", extra="serve", purpose="serving models over HTTP")
    from fastapi import APIRouter, Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.security import APIKeyHeader
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from medfuse.serve import schemas as s
    from medfuse.serve.answers import add_answer_routes, index_drafts
    from medfuse.serve.docs import add_docs

    state = ServiceState(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medfuse-model")
        loop = asyncio.get_running_loop()
        try:
            state.service = await loop.run_in_executor(state.executor, ModelService, cfg)
            if cfg.index is not None:
                from medfuse.serve.retrieval import CaseIndex

                index_dir = Path(cfg.index)
                state.index = await loop.run_in_executor(
                    state.executor, lambda: CaseIndex(index_dir, state.ready_service(), redact=cfg.redact_texts))
        except Exception:
            state.executor.shutdown(wait=False)
            raise
        state.batcher = MicroBatcher(state.service.classify_batch, state.executor, max_batch=cfg.max_batch,
                                     max_wait_ms=cfg.max_wait_ms, max_queue=cfg.max_queue)
        state.batcher.start()
        log.info("serving a %s model on %s", state.service.kind, state.service.device)
        yield
        for stop in list(state.streams):
            stop.set()  # generations still running end at their next piece
        await state.batcher.stop()
        state.executor.shutdown(wait=False)

    app = FastAPI(title="medfuse", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Multimodal medical models: classify, embed, retrieve, answer, draft reports. "
                              "Research use; not a medical device.")
    app.state.medfuse = state

    def reply(status: int, body: dict[str, Any], request: Request) -> JSONResponse:
        state.errors[body["error"]["code"]] += 1
        headers = {"X-Request-ID": getattr(request.state, "request_id", "")}
        if status == 401:
            headers["WWW-Authenticate"] = "ApiKey"
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.body(), request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return reply(422, error_body("invalid_field", str(first.get("msg", "invalid request")), where), request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return reply(exc.status_code, error_body(code, str(exc.detail)), request)

    app.add_middleware(RequestGuard, state=state)

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when the server has a key")

    async def check_key(key: str | None = Depends(key_header)) -> None:
        if cfg.api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), str(cfg.api_key).encode()):
            raise ApiError("unauthorized", "missing or wrong API key: send it in the X-API-Key header")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)], responses=s.ERROR_RESPONSES)

    async def form_of(request: Request, allowed: tuple[str, ...], files: tuple[str, ...] = ("image",)) -> Form:
        return await read_form(request, max_bytes=cfg.max_upload_bytes, allowed=allowed, files=files)

    def rid(request: Request) -> str:
        return str(request.state.request_id)

    @v1.get("/info", response_model=s.InfoResponse)
    async def info() -> dict[str, Any]:
        service = state.ready_service()
        model = service.info()
        index = state.index.info() if state.index is not None else None
        endpoints = {
            "classify": service.kind in ("diagnosis", "dual_encoder"),
            "embed": True,
            "retrieve": state.index is not None,
            "answer": service.kind == "vqa" or service.generator is not None,
            "report": service.generator is not None or index_drafts(state),
        }
        return {"model": model, "index": index, "endpoints": endpoints, "limits": cfg.public(),
                "auth": cfg.api_key is not None}

    @v1.get("/stats", response_model=s.StatsResponse)
    async def stats() -> dict[str, Any]:
        batcher = state.batcher
        return {"batching": batcher.stats.to_dict() if batcher else {}, "responses": dict(state.responses),
                "errors": dict(state.errors), "latency_ms": state.percentiles(), "pending": batcher.pending if batcher else 0}

    @v1.post("/classify", response_model=s.ClassifyResponse, openapi_extra=form_schema({
        "image": IMAGE_FIELD, "text": TEXT_FIELD, "vitals": VITALS_FIELD, "audio": AUDIO_FIELD, "video": VIDEO_FIELD,
        "explain": {"type": "boolean", "description": "add a Grad-CAM overlay"},
        "target": {"type": "string", "description": "label to explain (default: the top one)"},
        "preview": {"type": "boolean", "description": "add the model's view of the image and of the clip's frames as PNG"}}))
    async def classify(request: Request) -> dict[str, Any]:
        batcher = state.batcher
        if batcher is None:
            raise ApiError("not_ready", "the model is still loading; retry shortly")
        with batcher.expect() as arrival:  # a batch being collected may wait for this request while it is decoded
            form = await form_of(request, ("image", "text", "vitals", "audio", "video", "explain", "target", "preview"),
                                 FILE_FIELDS)
            service = state.ready_service()
            if service.kind == "vqa":
                raise ApiError("wrong_model", "this model answers questions: use /v1/answer")
            explain, preview = form.flag("explain"), form.flag("preview")
            target = form.text("target", 200)
            if target is not None and target not in service.outputs:
                raise ApiError("invalid_field", f"unknown label '{target}'; labels: {', '.join(service.outputs)}", "target")
            item, echo = await model_input(state, form)
            try:
                result, size = await asyncio.wait_for(arrival.submit(item), cfg.request_timeout_s)
            except TimeoutError:
                raise ApiError("timeout", f"no answer within {cfg.request_timeout_s:g}s; retry later") from None
        out = {"request_id": rid(request), "kind": service.kind, **result, "thresholds": service.thresholds,
               "calibration": service.calibration(), "inputs": echo, "batch_size": size}
        if explain:
            out["explanation"] = await state.run_model(service.explain, item, target)
        if preview and item.pixels is not None:
            out["image_png"] = await state.run_model(service.preview, item.pixels)
        if preview and item.video is not None:
            out["video_frames_png"] = await asyncio.get_running_loop().run_in_executor(None, service.video_preview,
                                                                                       item.video)
        return out

    @v1.post("/embed", response_model=s.EmbedResponse, openapi_extra=form_schema(
        {"image": IMAGE_FIELD, "text": TEXT_FIELD, "vitals": VITALS_FIELD, "audio": AUDIO_FIELD, "video": VIDEO_FIELD}))
    async def embed(request: Request) -> dict[str, Any]:
        fields = ("image", "text", "vitals", "audio", "video")
        item, _ = await model_input(state, await form_of(request, fields, FILE_FIELDS))
        out = await state.run_model(state.ready_service().embed, item)
        return {"request_id": rid(request), "normalized": True, **out}

    def need_index() -> Any:
        if state.index is None:
            raise ApiError("not_implemented", "no retrieval index is loaded; start the server with --index DIR")
        return state.index

    @v1.post("/retrieve", response_model=s.RetrieveResponse, openapi_extra=form_schema({
        "image": IMAGE_FIELD, "text": TEXT_FIELD, "k": {"type": "integer", "minimum": 1, "maximum": 50},
        "thumbnails": {"type": "boolean"}}))
    async def retrieve(request: Request) -> dict[str, Any]:
        index = need_index()
        form = await form_of(request, ("image", "text", "k", "thumbnails"))
        k, thumbnails = form.integer("k", 5, 1, 50), form.flag("thumbnails")
        item, _ = await model_input(state, form)
        if (item.image is None) == (not item.text):
            raise ApiError("missing_field", "give exactly one of an image or a text to search with", "image")
        hits = await state.run_model(lambda: index.search(item, k, thumbnails=thumbnails))
        return {"request_id": rid(request), "query": "image" if item.image is not None else "text", "hits": hits}

    add_answer_routes(v1, state, form_of, rid)
    app.include_router(v1)

    @app.get("/healthz", response_model=s.HealthResponse, tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=s.ReadyResponse, tags=["health"], responses={503: {"model": s.ReadyResponse}})
    async def readyz() -> Any:
        ready = state.service is not None and state.batcher is not None
        body = {"ready": ready, "model_loaded": state.service is not None, "index_loaded": state.index is not None,
                "batching": state.batcher.stats.to_dict() if state.batcher else {}}
        return body if ready else JSONResponse(body, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    add_docs(app, "medfuse")
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def run_server(cfg: ServeConfig) -> None:
    """Serve ``cfg`` with uvicorn until interrupted (the CLI's ``medfuse serve``).

    The server owns its process, so it sets torch's CPU threads here (``cfg.threads``, see
    :meth:`ServeConfig.model_threads`); :func:`create_app` alone leaves the embedding process's settings as
    they are. uvicorn picks ``httptools`` and ``uvloop`` when installed (``pip install 'uvicorn[standard]'``).
    """
    require("uvicorn", extra="serve", purpose="serving models over HTTP")
    import torch
    import uvicorn

    threads = cfg.model_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)  # inter-op parallelism (TorchScript forks) is unused in serving
    except RuntimeError:  # only possible before any parallel work has run in this process
        log.debug("torch inter-op threads were already fixed at %d", torch.get_num_interop_threads())
    log.info("torch CPU threads for the model: %d", threads)
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=False)
