"""Audio and video uploads to /v1/classify: prepared exactly as the training dataset prepares the same files,
fused with the image (a missing modality is masked), held to their limits, refused clearly when bad, and
never left on disk (a DICOM clip never reaches a file with its patient attributes)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("av")
pytest.importorskip("pydicom")

from fastapi.testclient import TestClient  # noqa: E402

from medfuse.serve import ServeConfig, create_app  # noqa: E402
from tests.deploy_fixtures import (  # noqa: E402
    AUDIO_PREP,
    MEDIA_CLASSES,
    VIDEO_FRAMES,
    clip_frames,
    diagnosis_checkpoint,
    dicom_bytes,
    dicom_cine_bytes,
    media_checkpoint,
    png_bytes,
    sound_bytes,
    video_file,
)

SECRETS = ("Doe", "Jane", "MRN-55501234", "19610203", "Elsewhere")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The checkpoint, the media files (bytes and on disk) and a manifest naming them, row by row."""
    root = tmp_path_factory.mktemp("media")
    files = root / "files"
    files.mkdir()
    frames = clip_frames(12)
    blobs = {
        "study.png": png_bytes(seed=3, size=(40, 48)),
        "heart.wav": sound_bytes(3.0, 4000, seed=1),
        "heart.flac": sound_bytes(3.0, 4000, seed=1, fmt="FLAC"),
        "short.wav": sound_bytes(1.2, 2000, seed=2),
        "cine.dcm": dicom_cine_bytes(clip_frames(9, seed=4)),
    }
    for name, data in blobs.items():
        (files / name).write_bytes(data)
    for name in ("echo.mp4", "echo.avi"):
        blobs[name] = video_file(files / name, frames).read_bytes()
    rows = [("study.png", "heart.wav", "echo.mp4"), ("", "heart.wav", ""), ("", "", "echo.avi"), ("", "", "cine.dcm"),
            ("study.png", "heart.flac", ""), ("", "short.wav", "echo.avi")]
    lines = ["image_path,audio_path,video_path,label"]
    lines += [",".join([*(f"files/{name}" if name else "" for name in row), "normal"]) for row in rows]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    (root / "scratch").mkdir()  # the server's scratch root: private folders come and go inside it
    return {"ckpt": media_checkpoint(root / "ckpt"), "blobs": blobs, "rows": rows, "manifest": root / "manifest.csv",
            "scratch": root / "scratch"}


@pytest.fixture(scope="module")
def client(media: dict[str, Any]) -> Iterator[TestClient]:
    app = create_app(ServeConfig(checkpoint=media["ckpt"], max_wait_ms=0, scratch_dir=media["scratch"]))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def expected(media: dict[str, Any]) -> list[np.ndarray]:
    """Per manifest row: the probabilities of the model on the training dataset's sample of that row."""
    from medfuse.data import ManifestDataset
    from medfuse.index import open_checkpoint

    ckpt = open_checkpoint(media["ckpt"])
    dataset = ManifestDataset(media["manifest"], ckpt.extra["data"])  # as training builds it: audio_prep inside
    out = []
    for i in range(len(dataset)):
        sample = dataset[i]
        assert "failed" not in sample, sample
        with torch.no_grad():
            logits = ckpt.model(dataset.collate_fn([sample])).logits
        out.append(torch.softmax(logits, dim=-1)[0].numpy())
    return out


MIME = {".png": "image/png", ".wav": "audio/wav", ".flac": "audio/flac", ".mp4": "video/mp4", ".avi": "video/x-msvideo",
        ".dcm": "application/dicom"}


def _files(media: dict[str, Any], row: tuple[str, str, str]) -> dict[str, tuple[str, bytes, str]]:
    out = {}
    for field, name in zip(("image", "audio", "video"), row):
        if name:
            out[field] = (f"upload{Path(name).suffix}", media["blobs"][name], MIME[Path(name).suffix])
    return out


def _probabilities(body: dict[str, Any]) -> np.ndarray:
    return np.array([body["probabilities"][c] for c in MEDIA_CLASSES])


def test_info_lists_the_audio_and_video_inputs(client: TestClient) -> None:
    info = client.get("/v1/info").json()
    model = info["model"]
    assert model["inputs"] == {"image": True, "text": False, "vitals": False, "audio": True, "video": True}
    assert model["audio"]["sample_rate"] == AUDIO_PREP["sample_rate"] and model["audio"]["window_s"] == 1.0
    assert model["video"]["frames"] == VIDEO_FRAMES and model["video"]["size"] == 32
    assert info["limits"]["max_audio_seconds"] == 300.0 and info["limits"]["max_video_frames"] == 1000
    schema = client.get("/openapi.json").json()
    form = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["audio"]["format"] == "binary" and form["properties"]["video"]["format"] == "binary"


@pytest.mark.parametrize("row", range(6))
def test_uploads_are_prepared_as_the_training_dataset_prepares_them(client: TestClient, media: dict[str, Any],
                                                                    expected: list[np.ndarray], row: int) -> None:
    names = media["rows"][row]
    r = client.post("/v1/classify", files=_files(media, names))
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(_probabilities(body), expected[row], atol=1e-5)
    inputs = body["inputs"]
    assert inputs["image"] == bool(names[0])
    if names[1]:
        seconds = 1.2 if names[1] == "short.wav" else 3.0
        assert inputs["audio"]["format"] == names[1].split(".")[1] and inputs["audio"]["seconds"] == pytest.approx(seconds)
        # 1 s windows every 0.5 s at 2 kHz: 5 windows in 3 s, 2 in 1.2 s (the last aligned to the end)
        assert inputs["audio"]["windows"] == (5 if seconds == 3.0 else 2)
    else:
        assert inputs["audio"] is None
    if names[2]:
        video = inputs["video"]
        assert video["sampled"] == VIDEO_FRAMES and video["format"] == {"mp4": "mp4", "avi": "avi", "dcm": "dicom"}[
            names[2].split(".")[1]]
        assert (video["frames"], video["width"], video["height"]) == ((9, 48, 32) if names[2] == "cine.dcm" else (12, 48, 32))
    else:
        assert inputs["video"] is None
    assert list(media["scratch"].iterdir()) == []  # the clip's private folder is gone


def test_each_modality_changes_the_fused_answer(client: TestClient, media: dict[str, Any]) -> None:
    """Missing modalities are masked: adding a recording or a clip to the image changes the prediction."""
    image = _files(media, ("study.png", "", ""))
    alone = _probabilities(client.post("/v1/classify", files=image).json())
    with_audio = _probabilities(client.post("/v1/classify", files=_files(media, ("study.png", "heart.wav", ""))).json())
    with_video = _probabilities(client.post("/v1/classify", files=_files(media, ("study.png", "", "echo.mp4"))).json())
    assert not np.allclose(alone, with_audio, atol=1e-4) and not np.allclose(alone, with_video, atol=1e-4)
    flac = client.post("/v1/classify", files=_files(media, ("study.png", "heart.flac", ""))).json()
    np.testing.assert_allclose(_probabilities(flac), with_audio, atol=1e-6)  # lossless: the same samples


def test_clip_preview_and_dicom_cine_keep_phi_off_disk(client: TestClient, media: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from PIL import Image

    caplog.set_level(logging.DEBUG)

    import medfuse.data.dataset as dataset_module

    written: list[tuple[bytes, int]] = []
    original = dataset_module.prepare_video

    def spy(path: Path, config: Any, pipeline: Any) -> torch.Tensor:
        written.append((path.read_bytes(), stat.S_IMODE(path.parent.stat().st_mode)))
        return original(path, config, pipeline)

    monkeypatch.setattr(dataset_module, "prepare_video", spy)
    r = client.post("/v1/classify", files=_files(media, ("", "", "cine.dcm")), data={"preview": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["inputs"]["video"]["modality"] == "US"
    frames = [Image.open(io.BytesIO(base64.b64decode(png))) for png in body["video_frames_png"]]
    assert len(frames) == VIDEO_FRAMES and all(f.size == (32, 32) for f in frames)
    assert len({f.tobytes() for f in frames}) == VIDEO_FRAMES  # the disc moves: every sampled frame differs
    (data, mode), = written
    assert data[128:132] == b"DICM" and mode == 0o700
    for secret in SECRETS:
        assert secret.encode() not in data  # de-identified before it was written
        assert secret not in r.text and secret not in caplog.text
    assert list(media["scratch"].iterdir()) == []


def test_embeddings_include_the_recording(client: TestClient, media: dict[str, Any]) -> None:
    image = client.post("/v1/embed", files=_files(media, ("study.png", "", ""))).json()
    both = client.post("/v1/embed", files=_files(media, ("study.png", "heart.wav", ""))).json()
    assert both["dim"] == image["dim"] == 16
    assert np.linalg.norm(both["embeddings"]["fused"]) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(both["embeddings"]["fused"], image["embeddings"]["fused"], atol=1e-4)


def test_batched_clips_of_different_lengths_give_single_request_results(media: dict[str, Any]) -> None:
    import httpx

    app = create_app(ServeConfig(checkpoint=media["ckpt"], max_batch=8, max_wait_ms=300, scratch_dir=media["scratch"]))
    requests = [_files(media, row) for row in (("", "heart.wav", ""), ("", "short.wav", "echo.avi"),
                                               ("study.png", "", ""), ("study.png", "heart.wav", "echo.mp4"))]

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                singles = [(await http.post("/v1/classify", files=f)).json() for f in requests]
                together = await asyncio.gather(*(http.post("/v1/classify", files=f) for f in requests))
        return singles, [r.json() for r in together]

    singles, together = asyncio.run(run())
    assert max(t["batch_size"] for t in together) > 1
    for one, many in zip(singles, together):
        np.testing.assert_allclose(_probabilities(many), _probabilities(one), atol=1e-5)


def _bad_media() -> list[tuple[str, dict[str, Any], int, str, str]]:
    wav, frames = sound_bytes(3.0, 4000), clip_frames(12)
    flac = sound_bytes(1.0, 4000, fmt="FLAC")
    return [
        ("empty audio", {"files": {"audio": ("a.wav", b"", "audio/wav")}}, 422, "invalid_audio", "audio"),
        ("png as audio", {"files": {"audio": ("a.wav", png_bytes(), "audio/wav")}}, 415, "unsupported_media_type", "audio"),
        ("text type audio", {"files": {"audio": ("a.txt", wav, "text/plain")}}, 415, "unsupported_media_type", "audio"),
        ("truncated wav", {"files": {"audio": ("a.wav", wav[: len(wav) // 2], "audio/wav")}}, 422, "invalid_audio", "audio"),
        ("corrupt flac", {"files": {"audio": ("a.flac", flac[:42] + b"\x00" * 600, "audio/flac")}}, 422, "invalid_audio",
         "audio"),
        ("audio as text", {"data": {"audio": "heart.wav"}}, 422, "invalid_field", "audio"),
        ("empty video", {"files": {"video": ("v.mp4", b"", "video/mp4")}}, 422, "invalid_video", "video"),
        ("wav as video", {"files": {"video": ("v.mp4", wav, "video/mp4")}}, 415, "unsupported_media_type", "video"),
        ("image type video", {"files": {"video": ("v.png", png_bytes(), "image/png")}}, 415, "unsupported_media_type",
         "video"),
        ("garbage avi", {"files": {"video": ("v.avi", b"RIFF\x00\x10\x00\x00AVI LIST" + b"\xff" * 3000, "video/x-msvideo")}},
         422, "invalid_video", "video"),
        ("dicom without pixels", {"files": {"video": ("v.dcm", dicom_bytes(with_pixels=False), "application/dicom")}},
         422, "no_pixel_data", "video"),
        ("truncated dicom cine", {"files": {"video": ("v.dcm", dicom_cine_bytes(frames)[:-2000], "application/dicom")}},
         422, "invalid_video", "video"),
    ]


BAD_MEDIA = _bad_media()


@pytest.mark.parametrize(("name", "request_kw", "status", "code", "field"), BAD_MEDIA, ids=[b[0] for b in BAD_MEDIA])
def test_bad_media_get_a_json_4xx_naming_the_field(client: TestClient, media: dict[str, Any], name: str,
                                                   request_kw: dict[str, Any], status: int, code: str, field: str) -> None:
    r = client.post("/v1/classify", **request_kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert error["message"] and "Traceback" not in r.text and "medfuse-upload" not in r.text
    assert list(media["scratch"].iterdir()) == []


def test_limits_on_length_frames_size_and_bytes(media: dict[str, Any], tmp_path: Path) -> None:
    app = create_app(ServeConfig(checkpoint=media["ckpt"], max_wait_ms=0, max_audio_seconds=2.0, max_video_frames=10,
                                 max_audio_bytes=26_000, max_video_bytes=200_000, scratch_dir=tmp_path))
    blobs = media["blobs"]
    big_dicom = dicom_cine_bytes(clip_frames(2, size=(40, 40)))
    cases = [
        ({"audio": ("a.wav", blobs["heart.wav"], "audio/wav")}, 413, "audio_too_long", "audio"),  # 3 s > 2 s
        ({"audio": ("a.wav", sound_bytes(1.9, 8000), "audio/wav")}, 413, "payload_too_large", "audio"),  # 30 kB
        ({"video": ("v.mp4", blobs["echo.mp4"], "video/mp4")}, 413, "video_too_long", "video"),  # 12 frames > 10
        ({"video": ("v.dcm", dicom_cine_bytes(clip_frames(11)), "application/dicom")}, 413, "video_too_long", "video"),
        ({"video": ("v.dcm", big_dicom + b"\x00" * 200_000, "application/dicom")}, 413, "payload_too_large", "video"),
    ]
    with TestClient(app) as test_client:
        for files, status, code, field in cases:
            r = test_client.post("/v1/classify", files=files)
            assert r.status_code == status, r.text
            assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)
        assert test_client.post("/v1/classify", files=_files(media, ("", "short.wav", "cine.dcm"))).status_code == 200
    small = create_app(ServeConfig(checkpoint=media["ckpt"], max_wait_ms=0, max_pixels=1000, scratch_dir=tmp_path))
    with TestClient(small) as test_client:
        r = test_client.post("/v1/classify", files=_files(media, ("", "", "echo.avi")))  # 48 x 32 frames
    assert r.status_code == 413 and r.json()["error"]["code"] == "video_too_large"
    assert list(tmp_path.iterdir()) == []


def test_a_recording_preparation_stored_beside_the_data_config_is_used(tmp_path: Path, media: dict[str, Any]) -> None:
    app = create_app(ServeConfig(checkpoint=media_checkpoint(tmp_path / "legacy", prep_in_extra=True), max_wait_ms=0))
    with TestClient(app) as test_client:
        assert test_client.get("/v1/info").json()["model"]["audio"]["window_s"] == AUDIO_PREP["window_s"]
        r = test_client.post("/v1/classify", files=_files(media, ("", "heart.wav", "")))
    assert r.json()["inputs"]["audio"]["windows"] == 5  # 1 s windows every 0.5 s, not the 5 s default


def test_a_model_without_audio_or_video_refuses_them(tmp_path: Path, media: dict[str, Any]) -> None:
    app = create_app(ServeConfig(checkpoint=diagnosis_checkpoint(tmp_path / "plain"), max_wait_ms=0))
    with TestClient(app) as test_client:
        audio = test_client.post("/v1/classify", files=_files(media, ("", "heart.wav", "")))
        video = test_client.post("/v1/classify", files=_files(media, ("study.png", "", "echo.mp4")), data={"text": "x"})
        info = test_client.get("/v1/info").json()
    assert audio.status_code == 422 and audio.json()["error"] == {
        "code": "unsupported_input", "message": "this model reads no audio", "field": "audio"}
    assert video.status_code == 422 and video.json()["error"]["field"] == "video"
    assert info["model"]["audio"] is None and info["model"]["video"] is None
    assert json.dumps(info["model"]["inputs"]) == json.dumps(
        {"image": True, "text": True, "vitals": True, "audio": False, "video": False})


def test_serve_command_passes_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    import medfuse.serve
    from medfuse.cli import main

    seen: list[ServeConfig] = []
    monkeypatch.setattr(medfuse.serve, "run_server", seen.append)
    assert main(["serve", "--checkpoint", "runs/x", "--max-upload-mb", "64", "--max-video-mb", "60",
                 "--max-audio-seconds", "60", "--max-video-frames", "300", "--timeout", "90", "--threads", "3"]) == 0
    cfg = seen[0]
    assert (cfg.max_upload_bytes, cfg.max_video_bytes, cfg.max_audio_seconds, cfg.max_video_frames,
            cfg.request_timeout_s, cfg.threads) == (64 * 1024 * 1024, 60 * 1024 * 1024, 60.0, 300, 90.0, 3)
    assert main(["serve", "--checkpoint", "runs/x"]) == 0
    assert seen[1].max_audio_seconds == ServeConfig(checkpoint="x").max_audio_seconds  # defaults kept in one place
    assert seen[1].threads is None
