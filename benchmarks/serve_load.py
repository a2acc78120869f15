"""Load test of ``medfuse serve``: a fixed request rate against ``/v1/classify`` for a bounded time.

Starts the server in a subprocess on 127.0.0.1 (a free port), sends classify requests (a PNG, a report and
vitals) at ``--rate`` per second (open loop: requests leave on schedule whether or not earlier ones have
returned): first ``--warmup`` seconds whose requests are left out of every figure, then ``--seconds``
measured. Each latency runs from sending a request to having read its whole response, over one pool of
keep-alive connections (aiohttp when installed, else httpx: ``--client``), with the multipart bodies
encoded once beforehand (the same bytes each time), so the client's own work stays small; its CPU time
per request is reported next to the server's. The
server's resident memory is read when the measured window starts and ends and every ``--sample-s``
seconds in between; a least-squares slope over those samples (MB per minute) decides ``memory_flat``
(slope below ``--flat-pct`` percent of the starting memory per minute). Prints one JSON document, with
the machine's load average before and after (figures from a loaded machine are not comparable).

    python benchmarks/serve_load.py                      # a fresh tiny model, 60 s at 20 requests/s
    python benchmarks/serve_load.py runs/demo --rate 10 --max-batch 1
    python benchmarks/serve_load.py --quick              # 5 s after 2 s of warm-up
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit

SERVER = """
import sys
from medfuse.serve import ServeConfig, run_server
checkpoint, port, max_batch, max_wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
options = {"threads": int(sys.argv[5])} if sys.argv[5] else {}
run_server(ServeConfig(checkpoint=checkpoint, port=port, max_batch=max_batch, max_wait_ms=max_wait, log_level="warning",
                       **options))
"""

TEXT = "Portable AP chest radiograph. Small right pleural effusion. No pneumothorax."
VITALS = {"heart_rate": 96, "spo2": 93, "temperature": 38.1}


def tiny_checkpoint(directory: Path) -> Path:
    """Write a small image + report + vitals diagnosis model (random weights) and return its folder."""
    import torch

    from medfuse.core.config import from_dict
    from medfuse.models import ModelConfig, build_model, save_checkpoint

    vitals = ["heart_rate", "resp_rate", "spo2", "temperature", "wbc", "crp"]
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1}},
            "text": {"type": "transformer_text", "params": {"width": 64, "layers": 2, "heads": 4, "max_length": 256}},
            "vitals": {"type": "vitals_mlp", "params": {"num_features": len(vitals), "hidden": [32], "dim": 32}},
        },
        "fusion": {"type": "gated", "dim": 64},
        "head": {"type": "multilabel", "num_outputs": 5},
    }, where="model")
    torch.manual_seed(0)
    labels = ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]
    data = {"image": "image_path", "text": "report", "labels": labels, "task": "multilabel", "vitals": vitals,
            "image_size": 64, "channels": 1, "split": "split"}
    return save_checkpoint(directory, build_model(cfg).eval(), cfg, label_names=labels, extra={"data": data})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    """Return the resident memory of process ``pid`` in MiB (Linux ``/proc``), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """Return the user + system CPU seconds process ``pid`` has used (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def memory_trend(times_s: Sequence[float], rss: Sequence[float], flat_pct: float = 1.0) -> dict[str, Any]:
    """Return the least-squares slope of resident memory (MB per minute) over samples ``(t seconds, MB)``,
    the peak, and ``flat``: the slope is below ``flat_pct`` percent of the first sample per minute.

    With fewer than 3 samples or under 1 s between the first and the last, slope and ``flat`` are None.
    """
    t = np.asarray(times_s, dtype=np.float64)
    y = np.asarray(rss, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"times and memory samples differ in shape: {t.shape} vs {y.shape}")
    out: dict[str, Any] = {"samples": int(y.size), "peak_mb": round(float(y.max()), 1) if y.size else None,
                           "slope_mb_per_min": None, "flat_threshold_mb_per_min": None, "flat": None}
    if y.size < 3 or t[-1] - t[0] < 1.0:
        return out
    minutes = (t - t[0]) / 60.0
    slope = float(np.polyfit(minutes, y, 1)[0])
    threshold = flat_pct / 100.0 * float(y[0])
    out.update(slope_mb_per_min=round(slope, 3), flat_threshold_mb_per_min=round(threshold, 2), flat=slope < threshold)
    return out


def study_png(seed: int, side: int = 224) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def classify_bodies(count: int = 8) -> list[tuple[bytes, dict[str, str]]]:
    """Return ``count`` encoded multipart bodies (a PNG, the report, vitals) with their headers, byte for byte
    what ``httpx`` sends for ``files=``/``data=``."""
    import httpx

    out = []
    for i in range(count):
        request = httpx.Request("POST", "http://server/v1/classify",
                                files={"image": ("study.png", study_png(i), "image/png")},
                                data={"text": TEXT, "vitals": json.dumps(VITALS)})
        out.append((request.read(), {"content-type": request.headers["content-type"]}))
    return out


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"the server was not ready within {timeout:.0f}s")


@dataclass
class Phase:
    """Outcomes of one stretch of load: latencies (ms) of successful requests and counts by status."""

    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    sent_s: float = 0.0
    wall_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)


class HttpClient:
    """A pool of keep-alive connections to the server: ``aiohttp`` when installed (about a quarter of
    ``httpx``'s CPU per request, which on a small machine competes with the server), else ``httpx``."""

    def __init__(self, base: str, timeout: float, prefer: str = "auto") -> None:
        self.base, self.timeout = base, timeout
        self.name = prefer
        if prefer == "auto":
            try:
                import aiohttp  # noqa: F401
            except ImportError:
                self.name = "httpx"
            else:
                self.name = "aiohttp"
        self._session: Any = None
        self.errors: tuple[type[BaseException], ...] = (TimeoutError,)

    async def __aenter__(self) -> HttpClient:
        if self.name == "aiohttp":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(self.base, connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
            self.errors = (aiohttp.ClientError, TimeoutError)
        else:
            import httpx

            limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
            self._session = httpx.AsyncClient(base_url=self.base, timeout=self.timeout, limits=limits)
            self.errors = (httpx.HTTPError,)
        await self._session.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.__aexit__(*exc)

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> int:
        """Send ``content`` and return the status once the whole response body has been read."""
        if self.name == "aiohttp":
            async with self._session.post(path, data=content, headers=headers) as response:
                await response.read()
                return int(response.status)
        response = await self._session.post(path, content=content, headers=headers)  # reads the body
        return int(response.status_code)

    async def get_json(self, path: str) -> Any:
        if self.name == "aiohttp":
            async with self._session.get(path) as response:
                return await response.json()
        return (await self._session.get(path)).json()


async def send_at_rate(client: HttpClient, bodies: Sequence[tuple[bytes, dict[str, str]]], seconds: float,
                       rate: float) -> Phase:
    """Send ``rate`` classify requests per second for ``seconds`` (open loop); return their outcomes."""
    phase = Phase(requests=max(1, int(round(seconds * rate))))

    async def one(i: int) -> None:
        content, headers = bodies[i % len(bodies)]
        start = time.perf_counter()
        try:
            status = await client.post("/v1/classify", content, headers)
            key = str(status)
            if status == 200:
                phase.latencies.append((time.perf_counter() - start) * 1000)
        except client.errors as exc:
            key = type(exc).__name__
        phase.statuses[key] = phase.statuses.get(key, 0) + 1

    started = time.perf_counter()
    tasks = []
    for i in range(phase.requests):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    phase.sent_s = time.perf_counter() - started
    await asyncio.gather(*tasks)
    phase.wall_s = time.perf_counter() - started
    return phase


async def sample_rss(pid: int, every_s: float, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Append ``(seconds since start, RSS MB)`` of ``pid`` to ``samples`` every ``every_s`` until ``stop``."""
    started = time.perf_counter()
    while not stop.is_set():
        value = rss_mb(pid)
        if value is not None:
            samples.append((time.perf_counter() - started, value))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def batching_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Return the server's batching counters over the measured window (after minus before)."""
    out: dict[str, Any] = {}
    for key in ("requests", "batches", "dropped", "failed_batches", "batches_over_one"):
        out[key] = int(after.get(key, 0)) - int(before.get(key, 0))
    out["busy_seconds"] = round(float(after.get("busy_seconds", 0.0)) - float(before.get("busy_seconds", 0.0)), 3)
    out["mean_batch_size"] = round(out["requests"] / out["batches"], 3) if out["batches"] else 0.0
    out["largest_batch_since_start"] = after.get("largest_batch")
    return out


async def load(base: str, pid: int, args: argparse.Namespace, seconds: float, warmup: float) -> dict[str, Any]:
    """Warm the server up, then measure ``seconds`` of load; return latencies, outcomes, CPU and memory."""
    bodies = classify_bodies()
    async with HttpClient(base, args.timeout, args.client) as client:
        warm = await send_at_rate(client, bodies, warmup, args.rate) if warmup > 0 else Phase()
        stats_before = await client.get_json("/v1/stats")
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()
        rss_before, cpu_before, client_cpu = rss_mb(pid), cpu_seconds(pid), time.process_time()
        sampler = asyncio.create_task(sample_rss(pid, args.sample_s, samples, stop))
        phase = await send_at_rate(client, bodies, seconds, args.rate)
        stop.set()
        await sampler
        rss_after, cpu_after, client_cpu = rss_mb(pid), cpu_seconds(pid), time.process_time() - client_cpu
        stats_after = await client.get_json("/v1/stats")
    data = np.asarray(phase.latencies) if phase.latencies else np.asarray([np.nan])
    trend = memory_trend([t for t, _ in samples], [m for _, m in samples], args.flat_pct)
    server_cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else None
    return {
        "client": client.name,
        "warmup": {"seconds": warmup, "requests": warm.requests, "ok": warm.ok},
        "requests": phase.requests, "ok": phase.ok, "errors": phase.requests - phase.ok, "statuses": phase.statuses,
        "offered_rate": round(phase.requests / phase.sent_s, 2) if phase.sent_s > 0 else None,
        "throughput_rps": round(phase.ok / phase.wall_s, 2), "wall_s": round(phase.wall_s, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(data, q)), 2) for q in (50, 95, 99)}
        | {"mean": round(float(np.mean(data)), 2), "max": round(float(np.max(data)), 2)},
        "cpu_ms_per_request": {
            "server": round(server_cpu * 1000 / phase.requests, 2) if server_cpu is not None else None,
            "client": round(client_cpu * 1000 / phase.requests, 2)},
        "server_batching": batching_delta(stats_before.get("batching") or {}, stats_after.get("batching") or {}),
        "server_latency_ms_incl_warmup": stats_after.get("latency_ms"),
        "server_rss_mb": {"before": rss_before, "after": rss_after,
                          "peak": max((v for v in (trend["peak_mb"], rss_before, rss_after) if v is not None), default=None),
                          "slope_mb_per_min": trend["slope_mb_per_min"], "samples": trend["samples"],
                          "flat_threshold_mb_per_min": trend["flat_threshold_mb_per_min"]},
        "memory_flat": trend["flat"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: a fresh tiny model)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds of load")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before measuring, left out of every figure (default 10, --quick 2)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--quick", action="store_true", help="5 measured seconds")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout (s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the server's model (default: the server's, one fewer than the CPUs)")
    parser.add_argument("--client", choices=("auto", "aiohttp", "httpx"), default="auto",
                        help="HTTP client of the load (auto: aiohttp when installed, else httpx)")
    parser.add_argument("--sample-s", type=float, default=1.0, help="seconds between server memory samples")
    parser.add_argument("--flat-pct", type=float, default=1.0,
                        help="memory is flat when it grows by less than this percent of its start per minute")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else args.seconds
    warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 10.0)
    if seconds <= 0 or args.rate <= 0 or warmup < 0 or args.sample_s <= 0:
        parser.error("--seconds, --rate and --sample-s must be positive and --warmup not negative")
    with tempfile.TemporaryDirectory(prefix="medfuse-load-") as scratch:
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(scratch) / "model")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                             os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-c", SERVER, str(checkpoint), str(port), str(args.max_batch), str(args.max_wait_ms),
                   str(args.threads or "")]
        log_path = Path(scratch) / "server.log"
        log_file = log_path.open("wb")  # a file, not a pipe: a chatty server never blocks on a full pipe
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        base = f"http://127.0.0.1:{port}"
        load_before = load_average()
        try:
            asyncio.run(wait_ready(base, process, timeout=300))
            result = asyncio.run(load(base, process.pid, args, seconds, warmup))
        except RuntimeError as exc:
            emit({"error": str(exc), "server_log": log_path.read_text(errors="replace")[-2000:]})
            return 1
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            log_file.close()
    emit({"benchmark": "serve_load", "checkpoint": args.checkpoint or "tiny random diagnosis model",
          "seconds": seconds, "rate": args.rate, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
          "server_threads": args.threads or "server default", "cpu_count": os.cpu_count(),
          "load_average": {"before": load_before, "after": load_average()}, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
