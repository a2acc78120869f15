"""The clinician page in headless Chromium: upload an image, classify, see probabilities, the overlay and
similar cases; errors appear in the page. With a model that hears and watches: a recording and a clip are
played and scrubbed; with a generator, answers and drafts appear piece by piece. The API docs render offline."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.deploy_fixtures import (
    clip_frames,
    diagnosis_checkpoint,
    dicom_cine_bytes,
    media_checkpoint,
    png_bytes,
    sound_bytes,
    video_file,
)

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MEDFUSE_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 30_000  # a loaded machine can be slow; the expectations poll until then
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _needs_browser() -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed ({CHROMIUM}); apt-get install chromium to run the browser tests")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def _serve(config: object) -> Iterator[str]:
    """Run the app of ``config`` (a ServeConfig) with uvicorn in a thread; yield its address."""
    import uvicorn

    from medfuse.serve import create_app

    port = _free_port()
    config.port = port  # type: ignore[attr-defined]
    srv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _needs_browser()
    pytest.importorskip("uvicorn")
    pytest.importorskip("faiss")
    from medfuse.data.synth import generate_synthetic
    from medfuse.index import build_index_from_manifest
    from medfuse.serve import ServeConfig

    root = tmp_path_factory.mktemp("browser")
    checkpoint = diagnosis_checkpoint(root / "run", training_folder=True)
    generate_synthetic(root / "synth", n=16, image_size=32)
    build_index_from_manifest(checkpoint, root / "synth" / "manifest.csv", root / "index", modality="image")
    yield from _serve(ServeConfig(checkpoint=checkpoint, index=root / "index"))


class GatedGenerator:
    """Writes "Small right effusion." in three pieces, holding after the first until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, request: object) -> str:
        return "Small right effusion."

    def stream(self, request: object) -> Iterator[str]:
        yield "Small"
        self.gate.wait(timeout=60)
        yield " right"
        yield " effusion."


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, GatedGenerator]]:
    _needs_browser()
    pytest.importorskip("uvicorn")
    pytest.importorskip("av")
    from medfuse.serve import ServeConfig

    generator = GatedGenerator()
    root = tmp_path_factory.mktemp("browser-media")
    for address in _serve(ServeConfig(checkpoint=media_checkpoint(root / "media"), generator=generator)):
        yield address, generator


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chrome = play.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                      headless=True, args=CHROMIUM_ARGS)
        yield chrome
        chrome.close()


def _study_image(tmp_path: Path) -> Path:
    """A real chest X-ray from ../shared/data when present, else a synthetic PNG."""
    folder = SHARED_DATA / "pneumoniamnist" / "images"
    if folder.is_dir():
        first = next(iter(sorted(folder.glob("*.png"))), None)
        if first is not None:
            return first
    path = tmp_path / "study.png"
    path.write_bytes(png_bytes(seed=3, size=(64, 64)))
    return path


def test_page_classifies_an_upload(server: str, browser: object, tmp_path: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text) if msg.type == "error" else None)
    page.goto(server + "/")
    page.wait_for_selector("#vitals input[data-vital='heart_rate']")
    assert page.locator("#model-name").inner_text() == "tiny chest fusion"
    page.set_input_files("#file", str(_study_image(tmp_path)))
    page.fill("#report", "Small right pleural effusion. No pneumothorax.")
    page.fill("#vitals input[data-vital='heart_rate']", "104")
    page.click("#classify")
    page.wait_for_selector("#probabilities .bar-row")
    page.wait_for_selector("#overlay-figure:not([hidden])")
    page.wait_for_selector("#similar .case")
    labels = page.locator(".bar-label").all_inner_texts()
    assert labels == ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]
    values = [float(v.rstrip("%")) for v in page.locator(".bar-value").all_inner_texts()]
    assert all(0.0 <= v <= 100.0 for v in values)
    assert "temperature-scaled" in page.locator("#calibration").inner_text()
    assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
    assert page.locator("#similar .case").count() == 5
    assert page.locator("#error").is_hidden()
    assert page.locator("#qa-section").is_hidden()  # no question answering without a VQA model or generator
    page.click("#draft")
    page.wait_for_selector("#draft-text:not([hidden])")
    nearest = page.locator("#similar .case-text").first.inner_text()
    assert page.input_value("#draft-text") == nearest  # drafted from the most similar case
    assert "review" in page.locator("#draft-note").inner_text()
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert not messages, messages
    page.close()


def test_page_shows_server_errors(server: str, browser: object, tmp_path: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(server + "/")
    page.wait_for_selector("#vitals input[data-vital='spo2']")
    broken = tmp_path / "broken.png"
    broken.write_bytes(png_bytes()[:60])  # a PNG signature and a cut-off header
    page.set_input_files("#file", str(broken))
    page.click("#classify")
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error").inner_text()
    assert "corrupt or truncated" in message and message.endswith("(image)")  # the server's message, its field
    page.close()


def test_page_plays_and_scrubs_a_recording_and_a_clip(media_server: tuple[str, GatedGenerator], browser: object,
                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    address, _ = media_server
    sound, clip = tmp_path / "heart.wav", video_file(tmp_path / "echo.mp4", clip_frames(12))
    sound.write_bytes(sound_bytes(3.0, 4000))
    cine = tmp_path / "cine.dcm"
    cine.write_bytes(dicom_cine_bytes(clip_frames(9, seed=4)))
    page = browser.new_page()  # type: ignore[attr-defined]
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text) if msg.type == "error" else None)
    page.goto(address + "/")
    page.wait_for_selector("#audio-block:not([hidden])")
    assert page.locator("#video-block").is_visible() and page.locator("#vitals-block").is_hidden()
    page.set_input_files("#audio-file", str(sound))
    # the browser decoded the recording
    expect(page.locator("#audio-player")).to_have_js_property("duration", 3, timeout=WAIT_MS)
    assert page.get_attribute("#audio-player", "src").startswith("blob:")
    page.set_input_files("#video-file", str(video_file(tmp_path / "echo.avi", clip_frames(12))))
    # Motion JPEG AVI does not play in a browser: the frames come after classification
    expect(page.locator("#video-player")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#video-info")).to_contain_text("cannot play", timeout=WAIT_MS)
    page.set_input_files("#video-file", str(clip))
    expect(page.locator("#video-player")).to_have_js_property("videoWidth", 48, timeout=WAIT_MS)  # it plays
    assert page.get_attribute("#video-player", "src").startswith("blob:")
    page.click("#classify")  # no image: the recording and the clip alone
    page.wait_for_selector("#probabilities .bar-row")
    assert page.locator(".bar-label").all_inner_texts() == ["normal", "murmur", "effusion"]
    page.wait_for_selector("#frames-figure:not([hidden])")
    assert page.get_attribute("#frame-slider", "max") == "3"
    first = page.get_attribute("#frame-view", "src")
    page.locator("#frame-slider").fill("3")
    assert page.get_attribute("#frame-view", "src") != first and "4 of 4" in page.locator("#frame-caption").inner_text()
    page.set_input_files("#video-file", str(cine))  # DICOM cine: no player, frames after classification
    assert page.locator("#video-player").is_hidden() and "DICOM cine" in page.locator("#video-info").inner_text()
    assert page.locator("#frames-figure").is_hidden()
    page.click("#classify")
    page.wait_for_selector("#frames-figure:not([hidden])")
    assert page.locator("#error").is_hidden()
    assert not messages, messages
    page.close()


def test_page_shows_generated_text_piece_by_piece(media_server: tuple[str, GatedGenerator], browser: object,
                                                  tmp_path: Path) -> None:
    from playwright.sync_api import expect

    address, generator = media_server
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(address + "/")
    page.wait_for_selector("#qa-section:not([hidden])")
    page.set_input_files("#file", str(_study_image(tmp_path)))
    page.fill("#question", "Where is the effusion?")
    page.click("#qa-form button")
    # the first piece, alone while the generator holds the rest
    expect(page.locator("#answer")).to_have_text("Small", timeout=WAIT_MS)
    assert "streaming" in (page.get_attribute("#answer", "class") or "")
    generator.gate.set()
    expect(page.locator("#answer")).to_have_text("Small right effusion.", timeout=WAIT_MS)
    assert "streaming" not in (page.get_attribute("#answer", "class") or "")
    page.click("#draft")
    expect(page.locator("#draft-text")).to_have_value("Small right effusion.", timeout=WAIT_MS)
    expect(page.locator("#draft-note")).to_contain_text("review", timeout=WAIT_MS)
    assert page.locator("#error").is_hidden()
    page.close()


def test_api_docs_render_offline(server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    requested: list[str] = []
    messages: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda msg: messages.append(msg.text) if msg.type == "error" else None)
    page.goto(server + "/docs")
    page.wait_for_selector("#endpoints .endpoint")
    paths = page.locator("#endpoints .path").all_inner_texts()
    assert "/v1/classify" in paths and "/v1/answer/stream" in paths
    page.locator("details[id='post-/v1/classify'] summary").click()
    assert "audio" in page.locator("details[id='post-/v1/classify'] .fields").first.inner_text()
    assert page.locator("#schema-ClassifyResponse").count() == 1
    assert all(url.startswith(server) or url.startswith("data:") for url in requested), requested
    assert not messages, messages
    page.close()
