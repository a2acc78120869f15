"""How the service runs: the request guard's headers and per-route latency table, batches that do not wait for a
lone request, and the torch threads a served process gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from medfuse.core.errors import ConfigError  # noqa: E402
from medfuse.serve import ServeConfig, create_app  # noqa: E402
from tests.deploy_fixtures import diagnosis_checkpoint, png_bytes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return diagnosis_checkpoint(tmp_path_factory.mktemp("runtime") / "model")


@pytest.fixture(scope="module")
def client(checkpoint: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ServeConfig(checkpoint=checkpoint, max_wait_ms=0)), raise_server_exceptions=False) as c:
        yield c


def test_every_response_carries_the_guard_headers(client: TestClient) -> None:
    ok = client.post("/v1/classify", files={"image": ("s.png", png_bytes(), "image/png")})
    missing = client.get("/v1/no-such-endpoint")
    page = client.get("/healthz")
    assert ok.status_code == 200 and missing.status_code == 404 and page.status_code == 200
    ids = {r.headers["x-request-id"] for r in (ok, missing, page)}
    assert len(ids) == 3 and all(len(i) == 16 for i in ids)
    assert ok.json()["request_id"] == ok.headers["x-request-id"]
    assert missing.json()["error"]["code"] == "not_found"
    for response in (ok, missing, page):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
    assert ok.headers["cache-control"] == "no-store" and missing.headers["cache-control"] == "no-store"
    assert "cache-control" not in page.headers


def test_latency_is_kept_per_route_so_unknown_paths_cannot_grow_it(client: TestClient) -> None:
    for i in range(5):
        assert client.get(f"/v1/unknown-{i}").status_code == 404
    client.post("/v1/classify", data={"text": "small effusion"})
    stats = client.get("/v1/stats").json()
    assert "/v1/classify" in stats["latency_ms"]
    assert not any(path.startswith("/v1/unknown") for path in stats["latency_ms"])
    assert stats["responses"]["404"] >= 5


def test_a_lone_request_is_not_held_for_the_batching_window(checkpoint: Path) -> None:
    """With a 10 s window, a request with no other on its way still runs at once (alone); requests sent
    together are announced while they are decoded and share a batch."""
    import httpx

    app = create_app(ServeConfig(checkpoint=checkpoint, max_batch=8, max_wait_ms=10_000))
    files = [{"image": (f"s{i}.png", png_bytes(seed=i), "image/png")} for i in range(4)]

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                # waiting out the 10 s window would time out here
                alone = (await asyncio.wait_for(http.post("/v1/classify", files=files[0]), 8.0)).json()
                together = await asyncio.wait_for(asyncio.gather(*(http.post("/v1/classify", files=f) for f in files)), 8.0)
                expected = app.state.medfuse.batcher.expected
        return alone, [r.json() for r in together], expected

    alone, together, expected = asyncio.run(run())
    assert alone["batch_size"] == 1
    assert max(t["batch_size"] for t in together) > 1
    assert expected == 0


def test_threads_setting_defaults_to_one_core_fewer(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert ServeConfig(checkpoint=checkpoint).model_threads() == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert ServeConfig(checkpoint=checkpoint).model_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert ServeConfig(checkpoint=checkpoint).model_threads() == 2
    assert ServeConfig(checkpoint=checkpoint, threads=5).model_threads() == 5
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="threads"):
            ServeConfig(checkpoint=checkpoint, threads=bad)  # type: ignore[arg-type]


def test_run_server_sets_the_model_threads_of_its_process(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from medfuse.serve import run_server

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, threads=torch.get_num_threads())

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: seen.setdefault("interop", n))
    previous = torch.get_num_threads()
    try:
        run_server(ServeConfig(checkpoint=checkpoint, threads=2, port=0))
    finally:
        torch.set_num_threads(previous)
    assert seen["threads"] == 2 and seen["interop"] == 1 and seen["access_log"] is False
    assert seen["port"] == 0
