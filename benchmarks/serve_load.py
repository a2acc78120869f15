"""Load test of ``medfuse serve``: a fixed request rate against ``/v1/classify`` for a bounded time.

Starts the server in a subprocess on 127.0.0.1 (a free port), sends classify requests (a PNG, a report and
vitals) at ``--rate`` per second for ``--seconds`` (open loop: requests leave on schedule whether or not
earlier ones have returned), waits for the stragglers, stops the server and prints one JSON document:
latency percentiles of successful requests, throughput, errors, the server's resident memory before and
after the load, and the server's batching counters.

    python benchmarks/serve_load.py                      # a fresh tiny model, 60 s at 20 requests/s
    python benchmarks/serve_load.py runs/demo --rate 50  # a trained checkpoint
    python benchmarks/serve_load.py --quick              # 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit

SERVER = """
import sys
from medfuse.serve import ServeConfig, run_server
checkpoint, port, max_batch, max_wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
run_server(ServeConfig(checkpoint=checkpoint, port=port, max_batch=max_batch, max_wait_ms=max_wait, log_level="warning"))
"""


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


def study_png(seed: int, side: int = 224) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


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


async def load(base: str, seconds: float, rate: float, timeout: float) -> dict[str, Any]:
    """Send ``rate`` requests per second for ``seconds``; return latencies and outcomes."""
    import httpx

    images = [study_png(i) for i in range(8)]
    text = "Portable AP chest radiograph. Small right pleural effusion. No pneumothorax."
    vitals = json.dumps({"heart_rate": 96, "spo2": 93, "temperature": 38.1})
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        files = {"image": ("study.png", images[i % len(images)], "image/png")}
        start = time.perf_counter()
        try:
            response = await client.post("/v1/classify", files=files, data={"text": text, "vitals": vitals})
            key = str(response.status_code)
            if response.status_code == 200:
                latencies.append((time.perf_counter() - start) * 1000)
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        statuses[key] = statuses.get(key, 0) + 1

    total = max(1, int(round(seconds * rate)))
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
        started = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, i)))
        sent = time.perf_counter() - started
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
        stats = (await client.get("/v1/stats")).json()
    ok = statuses.get("200", 0)
    data = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "requests": total, "ok": ok, "errors": total - ok, "statuses": statuses,
        "offered_rate": round(total / sent, 2) if sent > 0 else None,
        "throughput_rps": round(ok / wall, 2), "wall_s": round(wall, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(data, q)), 2) for q in (50, 95, 99)}
        | {"mean": round(float(np.mean(data)), 2), "max": round(float(np.max(data)), 2)},
        "server_batching": stats.get("batching"), "server_latency_ms": stats.get("latency_ms"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint folder (default: a fresh tiny model)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--quick", action="store_true", help="5 seconds")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout (s)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the server's torch (default: torch's)")
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else args.seconds
    if seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    with tempfile.TemporaryDirectory(prefix="medfuse-load-") as scratch:
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(scratch) / "model")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                             os.environ.get("PYTHONPATH", "")])}
        if args.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        command = [sys.executable, "-c", SERVER, str(checkpoint), str(port), str(args.max_batch), str(args.max_wait_ms)]
        log_path = Path(scratch) / "server.log"
        log_file = log_path.open("wb")  # a file, not a pipe: a chatty server never blocks on a full pipe
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(wait_ready(base, process, timeout=300))
            before = rss_mb(process.pid)
            result = asyncio.run(load(base, seconds, args.rate, args.timeout))
            after = rss_mb(process.pid)
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
          "server_threads": args.threads or "torch default",
          "cpu_count": os.cpu_count(), **result, "server_rss_mb": {"before": before, "after": after}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
