"""The clinician page in headless Chromium: upload an image, classify, see probabilities, the overlay and
similar cases; errors appear in the page."""

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
from tests.deploy_fixtures import diagnosis_checkpoint, png_bytes

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MEDFUSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed ({CHROMIUM}); apt-get install chromium to run the browser tests")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("faiss")
    from medfuse.data.synth import generate_synthetic
    from medfuse.index import build_index_from_manifest
    from medfuse.serve import ServeConfig, create_app

    root = tmp_path_factory.mktemp("browser")
    checkpoint = diagnosis_checkpoint(root / "run", training_folder=True)
    generate_synthetic(root / "synth", n=16, image_size=32)
    build_index_from_manifest(checkpoint, root / "synth" / "manifest.csv", root / "index", modality="image")
    port = _free_port()
    config = uvicorn.Config(create_app(ServeConfig(checkpoint=checkpoint, index=root / "index", port=port)),
                            host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
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
