"""Answers and drafted reports: ``/v1/answer`` and ``/v1/report``, whole or streamed as Server-Sent Events.

A streamed endpoint validates exactly as its whole counterpart (the same checks, in the same order, with
the same errors) and answers what it would: a generator's text token by token, an answer classifier's
answer or a retrieval-drafted report in one piece.

Annotations are evaluated (no ``from __future__ import annotations``): FastAPI reads the route functions'
parameter types.
"""

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from medfuse.serve.engine import ModelInput
from medfuse.serve.errors import ApiError
from medfuse.serve.inputs import Form
from medfuse.serve.state import IMAGE_FIELD, ServiceState, form_schema, model_input
from medfuse.serve.streaming import stream_openapi, stream_response

FormReader = Callable[..., Awaitable[Form]]

ANSWER_FORM = form_schema({"image": IMAGE_FIELD, "question": {"type": "string"}}, ("question",))
REPORT_FORM = form_schema({"image": IMAGE_FIELD, "text": {"type": "string", "description": "clinical context (generator only)"},
                           "k": {"type": "integer", "minimum": 1, "maximum": 10}}, ("image",))


def index_drafts(state: ServiceState) -> bool:
    """Whether the loaded index can draft reports: it holds case texts and is searchable by image."""
    index = state.index
    return index is not None and bool(index.has_texts) and "image" in index.query_modalities()


async def answer_request(state: ServiceState, request: Any, form_of: FormReader) -> tuple[ModelInput, str]:
    """Return the prepared image and the question of an answer request, or raise why it is refused."""
    form = await form_of(request, ("image", "question"))
    question = form.text("question", min(state.cfg.max_text_chars, 2000))
    if not question:
        raise ApiError("missing_field", "ask a question", "question")
    service = state.ready_service()
    if service.kind != "vqa" and service.generator is None:
        raise ApiError("not_implemented", f"this {service.kind} model does not answer questions, and "
                       f"{service.generator_reason}")
    item, _ = await model_input(state, form, text_field="question")
    return item, question


async def report_request(state: ServiceState, request: Any, form_of: FormReader) -> tuple[ModelInput, str, int]:
    """Return the prepared image, the clinical context and ``k`` of a report request, or raise why it is refused."""
    form = await form_of(request, ("image", "text", "k"))
    service = state.ready_service()
    k = form.integer("k", 3, 1, 10)
    if "image" not in form.files:
        raise ApiError("missing_field", "upload the image to report on", "image")
    if service.generator is None and not index_drafts(state):
        raise ApiError("not_implemented", "report drafting needs a generative model (--generator) or an index of "
                       f"cases with texts searchable by image (--index); {service.generator_reason}")
    context = (form.text("text", state.cfg.max_text_chars) or "") if service.generator is not None else ""
    item, _ = await model_input(state, Form(files=form.files))
    return item, context, k


def add_answer_routes(router: Any, state: ServiceState, form_of: FormReader, rid: Callable[[Any], str]) -> None:
    """Add ``/answer``, ``/report`` and their ``/stream`` forms to ``router``."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse

    from medfuse.serve import schemas as s

    @router.post("/answer", response_model=s.AnswerResponse, openapi_extra=ANSWER_FORM)
    async def answer(request: Request) -> dict[str, Any]:
        item, question = await answer_request(state, request, form_of)
        out = await state.run_model(state.ready_service().answer, item, question)
        return {"request_id": rid(request), "question": question, **out}

    @router.post("/answer/stream", response_class=StreamingResponse, openapi_extra=ANSWER_FORM,
                 responses=stream_openapi("the answer as Server-Sent Events: a data event per piece "
                                          '({"text"}), then event done with the /v1/answer body'))
    async def answer_stream(request: Request) -> Any:
        item, question = await answer_request(state, request, form_of)
        service = state.ready_service()
        return await stream_response(state, lambda: service.answer_pieces(item, question), text_key="answer",
                                     body={"request_id": rid(request), "question": question},
                                     finish=lambda out: s.AnswerResponse.model_validate(out).model_dump())

    @router.post("/report", response_model=s.ReportResponse, openapi_extra=REPORT_FORM)
    async def report(request: Request) -> dict[str, Any]:
        item, context, k = await report_request(state, request, form_of)
        service = state.ready_service()
        if service.generator is not None:
            out = await state.run_model(service.draft, item, context)
        else:
            out = await state.run_model(state.index.draft, item, k)
        return {"request_id": rid(request), **out}

    @router.post("/report/stream", response_class=StreamingResponse, openapi_extra=REPORT_FORM,
                 responses=stream_openapi("the draft as Server-Sent Events: a data event per piece "
                                          '({"text"}), then event done with the /v1/report body'))
    async def report_stream(request: Request) -> Any:
        item, context, k = await report_request(state, request, form_of)
        service = state.ready_service()

        def start() -> tuple[dict[str, Any], Iterator[str]]:
            if service.generator is not None:
                return service.draft_pieces(item, context)
            out = dict(state.index.draft(item, k))
            return out, iter([str(out.pop("draft"))])

        return await stream_response(state, start, text_key="draft", body={"request_id": rid(request)},
                                     finish=lambda out: s.ReportResponse.model_validate(out).model_dump())
