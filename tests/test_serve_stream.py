"""Streamed answers and drafts (Server-Sent Events): the pieces of a tiny saved vision-language model join to
the whole answer, refusals are ordinary JSON before the stream starts, failures and timeouts after it are
error events, and a stopped stream frees the model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("medfuse.models.generative")

from fastapi.testclient import TestClient  # noqa: E402

from medfuse.serve import GenerationRequest, ServeConfig, create_app  # noqa: E402
from medfuse.serve.errors import ApiError  # noqa: E402
from tests.deploy_fixtures import diagnosis_checkpoint, png_bytes, vlm_checkpoint, vqa_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    return {"run": diagnosis_checkpoint(root / "run"), "vlm": vlm_checkpoint(root / "vlm")}


@pytest.fixture(scope="module")
def client(folders: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(ServeConfig(checkpoint=folders["run"], generator=folders["vlm"], max_wait_ms=0, max_text_chars=300))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Return the ``(event, data)`` pairs of a Server-Sent Events body (``message`` when no event is named)."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        out.append((name, json.loads("\n".join(data))))
    return out


def _png() -> dict[str, Any]:
    return {"image": ("study.png", png_bytes(seed=1), "image/png")}


def _stream(client: TestClient, path: str, **kw: Any) -> tuple[list[str], dict[str, Any]]:
    r = client.post(path, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["cache-control"] == "no-store"
    got = events(r.text)
    assert [name for name, _ in got[:-1]] == ["message"] * (len(got) - 1) and got[-1][0] == "done", got
    return [data["text"] for _, data in got[:-1]], got[-1][1]


def test_streamed_pieces_join_to_the_whole_answer_and_draft(client: TestClient) -> None:
    question = {"question": "Where is the opacity?"}
    whole = client.post("/v1/answer", files=_png(), data=question).json()
    pieces, done = _stream(client, "/v1/answer/stream", files=_png(), data=question)
    assert len(pieces) >= 2 and "".join(pieces) == whole["answer"] and whole["answer"]
    assert {**done, "request_id": ""} == {**whole, "request_id": ""}
    context = {"text": "cough for two weeks"}
    drafted = client.post("/v1/report", files=_png(), data=context).json()
    pieces, done = _stream(client, "/v1/report/stream", files=_png(), data=context)
    assert len(pieces) >= 2 and "".join(pieces) == drafted["draft"] and drafted["method"] == "generator"
    assert {**done, "request_id": ""} == {**drafted, "request_id": ""}
    assert "review" in done["note"]


def test_a_closed_question_is_answered_in_one_event(client: TestClient) -> None:
    question = {"question": "Is there an effusion?"}
    whole = client.post("/v1/answer", files=_png(), data=question).json()
    pieces, done = _stream(client, "/v1/answer/stream", files=_png(), data=question)
    assert pieces == [whole["answer"]] and whole["answer"] in ("yes", "no") and done["answer"] == whole["answer"]


def _refusals(path: str) -> list[tuple[dict[str, Any], int, str, str]]:
    field = "question" if path == "/v1/answer/stream" else "text"
    broken = {"image": ("x.png", png_bytes()[:60], "image/png")}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"files": broken, "data": {field: "Which side?"}}, 422, "invalid_image", "image"),
        ({"files": _png(), "data": {field: "x" * 400}}, 413, "text_too_long", field),
        ({"data": {"colour": "red"}}, 422, "unknown_field", "colour"),
    ]
    if field == "question":
        cases += [({"data": {"question": " "}}, 422, "missing_field", "question"),
                  ({"data": {"question": "Where is the opacity?"}}, 422, "missing_field", "image")]  # the model's refusal
    else:
        cases += [({"data": {"text": "cough"}}, 422, "missing_field", "image")]
    return cases


@pytest.mark.parametrize("path", ["/v1/answer/stream", "/v1/report/stream"])
def test_refusals_are_json_before_the_stream_starts(client: TestClient, path: str) -> None:
    for kw, status, code, field in _refusals(path):
        r = client.post(path, **kw)
        assert r.status_code == status, (kw, r.text)
        assert r.headers["content-type"] == "application/json"
        assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)
    r = client.post(path, content=b"[1]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_body"


def test_without_a_generator_the_stream_endpoints_refuse_or_answer_in_one_piece(folders: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    with TestClient(create_app(ServeConfig(checkpoint=folders["run"], max_wait_ms=0))) as test_client:
        answer = test_client.post("/v1/answer/stream", files=_png(), data={"question": "Where?"})
        report = test_client.post("/v1/report/stream", files=_png())
    for r in (answer, report):
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented"
        assert "no generative model is configured" in r.json()["error"]["message"]
    answers = ["yes", "no", "left lung", "right lung"]
    app = create_app(ServeConfig(checkpoint=vqa_checkpoint(tmp_path / "vqa", answers), max_wait_ms=0))
    with TestClient(app) as test_client:
        whole = test_client.post("/v1/answer", files=_png(), data={"question": "Where is the lesion?"}).json()
        pieces, done = _stream(test_client, "/v1/answer/stream", files=_png(), data={"question": "Where is the lesion?"})
    assert pieces == [whole["answer"]] and done["method"] == "answer_classifier"
    assert done["candidates"] == pytest.approx(whole["candidates"])


class Scripted:
    """A generator that streams scripted pieces: ``fail`` raises after the first, ``hold`` is waited for before
    each later one; it records the pieces it produced and whether its stream was closed."""

    def __init__(self, pieces: list[str], *, fail: Exception | None = None, hold: threading.Event | None = None) -> None:
        self.pieces, self.fail, self.hold = pieces, fail, hold
        self.produced: list[str] = []
        self.closed = threading.Event()
        self.requests: list[GenerationRequest] = []

    def __call__(self, request: GenerationRequest) -> str:
        return "".join(self.pieces)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        try:
            for i, piece in enumerate(self.pieces):
                if i and self.fail is not None:
                    raise self.fail
                if i and self.hold is not None:
                    self.hold.wait(timeout=60)
                self.produced.append(piece)
                yield piece
        finally:
            self.closed.set()


def test_callable_generators_stream_or_answer_whole(folders: dict[str, Path]) -> None:
    scripted = Scripted(["Small", " right", " effusion."])

    def plain(request: GenerationRequest) -> str:
        return f"{request.task}: {request.text or 'no context'}"

    with TestClient(create_app(ServeConfig(checkpoint=folders["run"], generator=scripted, max_wait_ms=0))) as test_client:
        info = test_client.get("/v1/info").json()["model"]
        pieces, done = _stream(test_client, "/v1/report/stream", files=_png(), data={"text": "cough"})
    assert info["generator"] and info["streaming"]
    assert pieces == ["Small", " right", " effusion."] and done["draft"] == "Small right effusion."
    assert scripted.requests[0].task == "report" and scripted.requests[0].text == "cough"
    assert scripted.requests[0].image is not None and scripted.requests[0].image.shape == (40, 48)
    with TestClient(create_app(ServeConfig(checkpoint=folders["run"], generator=plain, max_wait_ms=0))) as test_client:
        assert test_client.get("/v1/info").json()["model"]["streaming"] is False
        pieces, done = _stream(test_client, "/v1/answer/stream", data={"question": "Is it?"})
    assert pieces == ["answer: Is it?"] and done["answer"] == "answer: Is it?" and done["method"] == "generator"


def test_failures_after_the_first_piece_are_error_events_without_internals(folders: dict[str, Path]) -> None:
    for error, code in ((ApiError("invalid_field", "the context is not usable", "text"), "invalid_field"),
                        (RuntimeError("secret internal state 0xdeadbeef"), "internal_error")):
        scripted = Scripted(["Small", " right"], fail=error)
        app = create_app(ServeConfig(checkpoint=folders["run"], generator=scripted, max_wait_ms=0))
        with TestClient(app) as test_client:
            r = test_client.post("/v1/answer/stream", files=_png(), data={"question": "Which side?"})
            stats = test_client.get("/v1/stats").json()
        assert r.status_code == 200
        got = events(r.text)
        assert got[0] == ("message", {"text": "Small"}) and got[-1][0] == "error" and len(got) == 2
        assert got[-1][1]["error"]["code"] == code and "0xdeadbeef" not in r.text and "Traceback" not in r.text
        assert stats["errors"][code] == 1


def test_a_timed_out_stream_stops_generating_and_frees_the_model(folders: dict[str, Path]) -> None:
    hold = threading.Event()
    scripted = Scripted(["Small", " right", " effusion", " and", " more"], hold=hold)
    app = create_app(ServeConfig(checkpoint=folders["run"], generator=scripted, max_wait_ms=0, request_timeout_s=2.0))
    with TestClient(app) as test_client:
        r = test_client.post("/v1/answer/stream", files=_png(), data={"question": "Which side?"})
        hold.set()  # the generator goes on to its next piece, where the stopped stream ends it
        after = test_client.post("/v1/classify", data={"text": "effusion"})  # waits for the model thread
    got = events(r.text)
    assert got == [("message", {"text": "Small"}), ("error", got[-1][1])] and got[-1][1]["error"]["code"] == "timeout"
    assert after.status_code == 200
    assert scripted.closed.is_set() and scripted.produced == ["Small", " right"]
    assert not app.state.medfuse.streams  # no stop flag left behind


def test_nothing_within_the_timeout_is_a_json_504(folders: dict[str, Path]) -> None:
    def stalled(request: GenerationRequest) -> str:
        time.sleep(1.0)
        return "late"

    app = create_app(ServeConfig(checkpoint=folders["run"], generator=stalled, max_wait_ms=0, request_timeout_s=0.3))
    with TestClient(app) as test_client:
        r = test_client.post("/v1/answer/stream", data={"question": "Which side?"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


def test_the_stream_endpoints_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/answer/stream", "/v1/report/stream"):
        operation = paths[path]["post"]
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        assert "multipart/form-data" in operation["requestBody"]["content"]
