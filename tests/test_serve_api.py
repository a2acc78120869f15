"""The HTTP API: outputs against the model itself, dynamic batching, limits, errors, PHI, keys, generators."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from medfuse.serve import GenerationRequest, ServeConfig, create_app  # noqa: E402
from tests.deploy_fixtures import (  # noqa: E402
    FINDINGS,
    VITALS,
    diagnosis_checkpoint,
    dicom_bytes,
    dual_encoder_checkpoint,
    png_bytes,
    vqa_checkpoint,
)

LIMITS = {"max_upload_bytes": 300_000, "max_pixels": 2_000_000, "max_text_chars": 500}


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from medfuse.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("serve")
    out = {"run": diagnosis_checkpoint(root / "run", training_folder=True), "synth": root / "synth"}
    generate_synthetic(out["synth"], n=12, image_size=32)
    return out


@pytest.fixture(scope="module")
def client(folders: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(ServeConfig(checkpoint=folders["run"], max_wait_ms=0, **LIMITS))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _blank_png(side: int) -> bytes:
    """A uniform PNG: large in pixels, a few kilobytes on the wire (how decompression bombs look)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png(**kw: Any) -> dict[str, Any]:
    return {"image": ("study.png", png_bytes(**kw), "image/png")}


def _expected(folder: Path, image: bytes | None, text: str | None, vitals: dict[str, float] | None,
              temperature: float = 1.5) -> np.ndarray:
    """Calibrated probabilities computed directly with the checkpoint."""
    from medfuse.data.images import decode_image_bytes
    from medfuse.index import Embedder, open_checkpoint

    embedder = Embedder(open_checkpoint(folder))
    batch: dict[str, Any] = {"index": torch.zeros(1), "present": {}}
    if image is not None:
        batch["image"] = embedder.prepare(decode_image_bytes(image, channels=1))[None]
        batch["present"]["image"] = torch.tensor([True])
    if text is not None:
        batch["text"], batch["present"]["text"] = [text], torch.tensor([True])
    if vitals is not None:
        row = torch.tensor([[vitals.get(n, float("nan")) for n in VITALS]], dtype=torch.float32)
        batch["vitals"], batch["present"]["vitals"] = row, torch.tensor([True])
    with torch.no_grad():
        logits = embedder.model(batch).logits
    return torch.sigmoid(logits / temperature)[0].numpy()


def test_health_info_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] and ready.json()["model_loaded"]
    info = client.get("/v1/info").json()
    assert info["model"]["labels"] == FINDINGS
    assert info["model"]["vitals"] == VITALS
    assert info["model"]["calibration"]["temperature"] == 1.5
    assert info["model"]["calibration"]["validation_ece"] == pytest.approx(0.0421)
    assert info["endpoints"] == {"classify": True, "embed": True, "retrieve": False, "answer": False, "report": False}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["image"]["format"] == "binary"
    assert "text/html" in client.get("/").headers["content-type"]
    assert client.get("/static/app.js").status_code == 200


def test_classify_matches_the_model_with_temperature(client: TestClient, folders: dict[str, Path]) -> None:
    vitals = {"heart_rate": 104.0, "spo2": 91.0}
    text = "Small right pleural effusion."
    r = client.post("/v1/classify", files=_png(seed=5), data={"text": text, "vitals": json.dumps(vitals)})
    assert r.status_code == 200, r.text
    body = r.json()
    got = np.array([body["probabilities"][n] for n in FINDINGS])
    np.testing.assert_allclose(got, _expected(folders["run"], png_bytes(seed=5), text, vitals), atol=1e-5)
    cuts = body["thresholds"]
    assert cuts == dict(zip(FINDINGS, [0.5, 0.4, 0.5, 0.6, 0.5]))
    assert body["predictions"] == [n for n in FINDINGS if body["probabilities"][n] >= cuts[n]]
    assert body["inputs"] == {"image": True, "format": "png", "dicom": None, "text": True, "vitals": ["heart_rate", "spo2"],
                              "audio": None, "video": None}
    assert "T = 1.5" in body["calibration"]["note"] and "0.042" in body["calibration"]["note"]
    # a text-only request uses the model's robustness to a missing image
    alone = client.post("/v1/classify", data={"text": text}).json()
    np.testing.assert_allclose([alone["probabilities"][n] for n in FINDINGS],
                               _expected(folders["run"], None, text, None), atol=1e-5)


def test_classify_explains_with_an_overlay(client: TestClient) -> None:
    from PIL import Image

    body = client.post("/v1/classify", files=_png(seed=2), data={"explain": "true", "target": "nodule", "preview": "1"}).json()
    explanation = body["explanation"]
    assert explanation["available"] and explanation["method"] == "grad-cam" and explanation["target"] == "nodule"
    assert explanation["probability"] == pytest.approx(body["probabilities"]["nodule"], abs=1e-5)
    overlay = Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png"])))
    assert overlay.mode == "RGB" and overlay.size == (40, 40)  # the centre crop the model saw, at display size
    assert Image.open(io.BytesIO(base64.b64decode(body["image_png"]))).size == (40, 40)


def test_concurrent_requests_form_batches_with_single_request_results(folders: dict[str, Path]) -> None:
    import httpx

    app = create_app(ServeConfig(checkpoint=folders["run"], max_batch=8, max_wait_ms=300))
    requests = [({"image": ("s.png", png_bytes(seed=i), "image/png")} if i % 3 else None,
                 {"text": f"report {i}: effusion"} if i % 2 else {"vitals": json.dumps({"crp": 3.0 * i})})
                for i in range(6)]

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                singles = [(await http.post("/v1/classify", files=f, data=d)).json() for f, d in requests]
                together = await asyncio.gather(*(http.post("/v1/classify", files=f, data=d) for f, d in requests))
                stats = (await http.get("/v1/stats")).json()
        return singles, [r.json() for r in together], stats

    singles, together, stats = asyncio.run(run())
    assert all(s["batch_size"] == 1 for s in singles)
    assert max(t["batch_size"] for t in together) > 1
    assert stats["batching"]["largest_batch"] > 1 and stats["batching"]["requests"] == 12
    for one, many in zip(singles, together):
        np.testing.assert_allclose([many["probabilities"][n] for n in FINDINGS],
                                   [one["probabilities"][n] for n in FINDINGS], atol=1e-5)


def test_dicom_phi_never_leaves_the_server(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.post("/v1/classify", files={"image": ("Doe^Jane.dcm", dicom_bytes(), "application/dicom")},
                    data={"explain": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["inputs"]["dicom"] == {"modality": "DX", "rows": 24, "columns": 20, "window": [2048.0, 4096.0]}
    assert caplog.records  # the request was logged, without its content
    for secret in ("Doe", "Jane", "MRN-55501234", "19610203", "Elsewhere"):
        assert secret not in r.text
        assert secret not in caplog.text


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("corrupt png", {"files": {"image": ("x.png", png_bytes()[:60], "image/png")}}, 422, "invalid_image", "image"),
    ("text declared", {"files": {"image": ("x.txt", b"hello", "text/plain")}}, 415, "unsupported_media_type", "image"),
    ("pdf bytes", {"files": {"image": ("x.bin", b"%PDF-1.4 " * 20, "application/octet-stream")}}, 415,
     "unsupported_media_type", "image"),
    ("empty file", {"files": {"image": ("x.png", b"", "image/png")}}, 422, "invalid_image", "image"),
    ("dicom without pixels", {"files": {"image": ("x.dcm", dicom_bytes(with_pixels=False), "application/dicom")}},
     422, "no_pixel_data", "image"),
    ("truncated dicom", {"files": {"image": ("x.dcm", dicom_bytes()[:-100], "application/dicom")}}, 422, "invalid_dicom", "image"),
    ("nothing", {"data": {"explain": "false"}}, 422, "missing_field", "image"),
    ("vitals not numeric", {"data": {"vitals": '{"heart_rate": "fast"}'}}, 422, "invalid_vitals", "vitals.heart_rate"),
    ("vitals not json", {"data": {"vitals": "heart_rate=90"}}, 422, "invalid_vitals", "vitals"),
    ("vitals nan", {"data": {"vitals": '{"spo2": NaN}'}}, 422, "invalid_vitals", "vitals"),
    ("vitals list", {"data": {"vitals": "[90, 18]"}}, 422, "invalid_vitals", "vitals"),
    ("unknown vital", {"data": {"vitals": '{"pulse": 80}'}}, 422, "unknown_vitals", "vitals.pulse"),
    ("text too long", {"data": {"text": "x" * 501}}, 413, "text_too_long", "text"),
    ("oversize upload", {"files": {"image": ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(400_000), "image/png")}}, 413,
     "payload_too_large", None),
    ("pixel bomb", {"files": {"image": ("x.png", _blank_png(3000), "image/png")}}, 413, "image_too_large",
     "image"),
    ("unknown field", {"data": {"txt": "typo"}}, 422, "unknown_field", "txt"),
    ("bad flag", {"data": {"text": "a", "explain": "maybe"}}, 422, "invalid_field", "explain"),
    ("unknown target", {"data": {"text": "a", "target": "fracture"}}, 422, "invalid_field", "target"),
    ("image as text", {"data": {"image": "not a file"}}, 422, "invalid_field", "image"),
    ("plain text body", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type", None),
    ("broken multipart", {"content": b"--zz\r\nnonsense", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
     400, "invalid_body", None),
    ("json array", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "invalid_body", None),
]


@pytest.mark.parametrize(("name", "request_kw", "status", "code", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_inputs_get_a_json_4xx(client: TestClient, name: str, request_kw: dict[str, Any], status: int, code: str,
                                   field: str | None) -> None:
    r = client.post("/v1/classify", **request_kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"] and "Traceback" not in r.text


def test_other_endpoints_refuse_bad_requests(client: TestClient) -> None:
    cases = [
        (client.get("/nowhere"), 404, "not_found"),
        (client.get("/v1/classify"), 405, "method_not_allowed"),
        (client.post("/v1/answer", data={"question": " "}), 422, "missing_field"),
        (client.post("/v1/answer", data={"question": "effusion?"}), 501, "not_implemented"),
        (client.post("/v1/retrieve", data={"text": "effusion"}), 501, "not_implemented"),
        (client.post("/v1/report", files=_png()), 501, "not_implemented"),
        (client.post("/v1/embed", data={"k": "3"}), 422, "unknown_field"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert "no generative model is configured" in cases[3][0].json()["error"]["message"]
    stats = client.get("/v1/stats").json()
    assert stats["responses"].get("500", 0) == 0 and stats["errors"]["not_implemented"] >= 3


def test_unexpected_errors_are_json_500_without_internals(folders: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ServeConfig(checkpoint=folders["run"], max_wait_ms=0))

    def broken(items: Any) -> Any:
        raise RuntimeError("secret internal state 0xdeadbeef")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        app.state.medfuse.batcher.process = broken
        r = test_client.post("/v1/classify", files=_png())
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "0xdeadbeef" not in r.text and "Traceback" not in r.text
    assert "RuntimeError" in caplog.text  # the server log keeps what happened


def test_timeouts_and_overload_are_refused_cleanly(folders: dict[str, Path]) -> None:
    import time

    import httpx

    app = create_app(ServeConfig(checkpoint=folders["run"], max_wait_ms=0, max_queue=1, request_timeout_s=0.5))

    def slow(items: Any) -> Any:
        time.sleep(1.5)
        return [{"task": "multilabel", "probabilities": {}} for _ in items]

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            app.state.medfuse.batcher.process = slow
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                first = asyncio.create_task(http.post("/v1/classify", data={"text": "a"}))
                await asyncio.sleep(0.3)  # the first request is in the model; the queue holds one more
                rest = [http.post("/v1/classify", data={"text": t}) for t in ("b", "c")]
                return [await first, *await asyncio.gather(*rest)]

    responses = asyncio.run(run())
    codes = sorted((r.status_code, r.json()["error"]["code"]) for r in responses)
    assert codes == [(503, "overloaded"), (504, "timeout"), (504, "timeout")]


def test_api_key_and_in_memory_uploads(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    app = create_app(ServeConfig(checkpoint=folders["run"], api_key="s3cret", max_wait_ms=0))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert test_client.get("/healthz").status_code == 200
        assert test_client.get("/v1/info").json()["error"]["code"] == "unauthorized"
        assert test_client.get("/v1/info", headers={"X-API-Key": "wrong"}).status_code == 401
        assert test_client.get("/v1/info", headers={"X-API-Key": "s3cret"}).json()["auth"] is True

        def no_disk(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("an upload was spooled to disk")

        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
            monkeypatch.setattr(tempfile, name, no_disk)
        big = png_bytes(size=(1200, 1200))  # over Starlette's 1 MiB in-memory spool
        assert len(big) > 1024 * 1024
        r = test_client.post("/v1/classify", headers={"X-API-Key": "s3cret"}, files={"image": ("b.png", big, "image/png")})
        assert r.status_code == 200, r.text


def test_generator_answers_and_drafts(folders: dict[str, Path]) -> None:
    asked: list[GenerationRequest] = []

    def generator(request: GenerationRequest) -> str:
        asked.append(request)
        return f"{request.task}: {request.text or 'no context'}"

    app = create_app(ServeConfig(checkpoint=folders["run"], generator=generator, max_wait_ms=0))
    with TestClient(app) as test_client:
        assert test_client.get("/v1/info").json()["endpoints"]["answer"] is True
        answer = test_client.post("/v1/answer", files=_png(), data={"question": "Is there an effusion?"}).json()
        report = test_client.post("/v1/report", files=_png(), data={"text": "cough"}).json()
    assert answer["method"] == "generator" and answer["answer"] == "answer: Is there an effusion?"
    assert report["method"] == "generator" and report["draft"] == "report: cough"
    assert asked[0].image is not None and asked[0].image.shape == (40, 48)


def test_vision_language_checkpoint_as_generator(folders: dict[str, Path], tmp_path: Path) -> None:
    generative = pytest.importorskip("medfuse.models.generative")
    torch.manual_seed(0)
    vlm = generative.build_vlm({"image": {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1}},
                                "projector": "mlp", "num_queries": 2,
                                "lm": {"config": {"arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2,
                                                  "max_positions": 256}, "tokenizer": "byte"}}).eval()
    generative.save_vlm(vlm, tmp_path / "vlm" / "model", preprocessing={"image_size": 32, "channels": 1, "mean": [0.45],
                                                                          "std": [0.23]},
                        extra={"generation": {"prompt": "Write the report.", "max_new_tokens": 4}})
    app = create_app(ServeConfig(checkpoint=folders["run"], generator=tmp_path / "vlm", max_wait_ms=0))
    with TestClient(app) as test_client:
        closed = test_client.post("/v1/answer", files=_png(), data={"question": "Is there an effusion?"}).json()
        opened = test_client.post("/v1/answer", files=_png(), data={"question": "Where is the opacity?"}).json()
        drafted = test_client.post("/v1/report", files=_png()).json()
        no_image = test_client.post("/v1/answer", data={"question": "Where is the opacity?"})
    assert closed["method"] == "generator" and closed["answer"] in ("yes", "no")  # closed: the likelier candidate
    assert opened["method"] == "generator" and isinstance(opened["answer"], str)
    assert drafted["method"] == "generator" and isinstance(drafted["draft"], str)
    assert no_image.status_code == 422 and no_image.json()["error"] == {
        "code": "missing_field", "message": "the generative model needs an image", "field": "image"}


def test_retrieval_and_drafted_reports_from_an_index(folders: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    from medfuse.index import build_index_from_manifest

    ckpt = dual_encoder_checkpoint(tmp_path / "clip")
    build_index_from_manifest(ckpt, folders["synth"] / "manifest.csv", tmp_path / "index", modality="image")
    app = create_app(ServeConfig(checkpoint=ckpt, index=tmp_path / "index", max_wait_ms=0))
    with TestClient(app) as test_client:
        info = test_client.get("/v1/info").json()
        assert info["endpoints"]["retrieve"] and info["endpoints"]["report"] and info["index"]["count"] == 12
        by_text = test_client.post("/v1/retrieve", data={"text": "effusion", "k": "3"}).json()
        by_image = test_client.post("/v1/retrieve", files=_png(seed=9), data={"thumbnails": "true"}).json()
        draft = test_client.post("/v1/report", files=_png(seed=9)).json()
        embedded = test_client.post("/v1/embed", files=_png(seed=9), data={"text": "effusion"}).json()
        nearest = (folders["synth"] / by_image["hits"][0]["image"]).read_bytes()
        indexed = test_client.post("/v1/embed", files={"image": ("n.png", nearest, "image/png")}).json()
    assert [h["rank"] for h in by_text["hits"]] == [1, 2, 3]
    scores = [h["score"] for h in by_image["hits"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert by_image["hits"][0]["thumbnail_png"]
    assert draft["method"] == "retrieval" and draft["draft"] == by_image["hits"][0]["text"]
    assert draft["sources"][0]["case_id"] == by_image["hits"][0]["case_id"]
    image_vec, text_vec = np.array(embedded["embeddings"]["image"]), np.array(embedded["embeddings"]["text"])
    assert embedded["dim"] == 16 and len(text_vec) == 16
    assert np.linalg.norm(image_vec) == pytest.approx(1.0, abs=1e-5) and np.linalg.norm(text_vec) == pytest.approx(1.0, abs=1e-5)
    # the score of a hit is the cosine between the query and that case's image embedding
    assert float(image_vec @ np.array(indexed["embeddings"]["image"])) == pytest.approx(scores[0], abs=1e-4)


def test_uncalibrated_model_without_thresholds(tmp_path: Path) -> None:
    ckpt = diagnosis_checkpoint(tmp_path / "plain", temperature=None, thresholds=None)
    with TestClient(create_app(ServeConfig(checkpoint=ckpt, max_wait_ms=0))) as test_client:
        body = test_client.post("/v1/classify", files=_png(seed=4)).json()
    assert body["thresholds"] == dict.fromkeys(FINDINGS, 0.5)
    assert body["predictions"] == [n for n in FINDINGS if body["probabilities"][n] >= 0.5]
    assert body["calibration"]["calibrated"] is False and body["calibration"]["temperature"] == 1.0
    assert "No calibration temperature" in body["calibration"]["note"]
    np.testing.assert_allclose([body["probabilities"][n] for n in FINDINGS],
                               _expected(ckpt, png_bytes(seed=4), None, None, temperature=1.0), atol=1e-5)


def test_answer_classifier(tmp_path: Path) -> None:
    answers = ["yes", "no", "left lung", "right lung"]
    app = create_app(ServeConfig(checkpoint=vqa_checkpoint(tmp_path / "vqa", answers), max_wait_ms=0))
    with TestClient(app) as test_client:
        info = test_client.get("/v1/info").json()
        assert info["model"]["kind"] == "vqa" and info["endpoints"]["answer"] and not info["endpoints"]["classify"]
        body = test_client.post("/v1/answer", files=_png(), data={"question": "Where is the lesion?"}).json()
        wrong = test_client.post("/v1/classify", files=_png())
    assert body["method"] == "answer_classifier" and body["answer"] in answers
    assert body["answer"] == max(body["candidates"], key=body["candidates"].get)
    assert 0.99 < sum(body["candidates"].values()) <= 1.0 + 1e-6  # four answers: all of them are listed
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_model"


def _assets(html: str) -> list[str]:
    import re

    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "http://" not in docs.text and "https://" not in docs.text
    assets = [a for a in _assets(docs.text) if not a.startswith("data:")]
    assert "/static/docs.js" in assets and "/openapi.json" in assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200, asset
        if asset.startswith("/static/"):
            assert "http://" not in r.text and "https://" not in r.text, asset
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not served


def test_docs_use_swagger_ui_from_the_installed_bundle(folders: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    bundle = tmp_path / "swagger"
    bundle.mkdir()
    for name, body in (("swagger-ui-bundle.js", b"window.SwaggerUIBundle = function () {};"),
                       ("swagger-ui.css", b".swagger-ui {}"), ("favicon-32x32.png", png_bytes(size=(32, 32)))):
        (bundle / name).write_bytes(body)
    module = types.ModuleType("swagger_ui_bundle")
    module.swagger_ui_path = str(bundle)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", module)
    with TestClient(create_app(ServeConfig(checkpoint=folders["run"], max_wait_ms=0))) as test_client:
        docs = test_client.get("/docs")
        assert "SwaggerUIBundle" in docs.text and "http://" not in docs.text and "https://" not in docs.text
        assets = [a for a in _assets(docs.text) if not a.startswith("data:")]
        assert sorted(assets) == ["/docs-assets/favicon-32x32.png", "/docs-assets/swagger-ui-bundle.js",
                                  "/docs-assets/swagger-ui.css"]
        for asset in assets:
            assert test_client.get(asset).content == (bundle / asset.split("/")[-1]).read_bytes()
        assert "url: '/openapi.json'" in docs.text and test_client.get("/openapi.json").status_code == 200
