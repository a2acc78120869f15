"""The serving load benchmark's arithmetic: memory trend and flatness, and counters over the measured window."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def serve_load() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import serve_load as module
    finally:
        sys.path.remove(str(BENCHMARKS))
    yield module


def test_memory_trend_is_the_least_squares_slope_per_minute(serve_load: ModuleType) -> None:
    rng = np.random.default_rng(0)
    times = np.arange(61.0)  # one sample a second for a minute
    growing = 1000.0 + 0.5 * times + rng.normal(0, 0.2, times.size)  # 30 MB/min
    trend = serve_load.memory_trend(times, growing, flat_pct=1.0)
    expected = np.polyfit(times / 60.0, growing, 1)[0]
    assert trend["slope_mb_per_min"] == pytest.approx(expected, abs=1e-3)
    assert trend["slope_mb_per_min"] == pytest.approx(30.0, abs=0.5)
    assert trend["flat_threshold_mb_per_min"] == pytest.approx(growing[0] / 100, abs=0.01)
    assert trend["flat"] is False and trend["samples"] == 61 and trend["peak_mb"] == pytest.approx(growing.max(), abs=0.05)


def test_noise_and_a_one_off_step_are_flat_but_a_slow_leak_is_not(serve_load: ModuleType) -> None:
    rng = np.random.default_rng(1)
    times = np.arange(61.0)
    noisy = 900.0 + rng.normal(0, 1.0, times.size)
    assert serve_load.memory_trend(times, noisy)["flat"] is True
    # 6 MB/min on 900 MB is under 1% per minute, 12 MB/min is over it
    assert serve_load.memory_trend(times, 900.0 + 0.1 * times)["flat"] is True
    assert serve_load.memory_trend(times, 900.0 + 0.2 * times)["flat"] is False
    assert serve_load.memory_trend(times, 900.0 + 0.2 * times, flat_pct=2.0)["flat"] is True


def test_too_few_samples_give_no_verdict(serve_load: ModuleType) -> None:
    short = serve_load.memory_trend([0.0, 1.0], [900.0, 950.0])
    assert short["slope_mb_per_min"] is None and short["flat"] is None and short["peak_mb"] == 950.0
    assert serve_load.memory_trend([], [])["samples"] == 0
    with pytest.raises(ValueError, match="shape"):
        serve_load.memory_trend([0.0, 1.0, 2.0], [1.0, 2.0])


def test_batching_counters_cover_only_the_measured_window(serve_load: ModuleType) -> None:
    before = {"requests": 100, "batches": 90, "dropped": 1, "failed_batches": 0, "batches_over_one": 5,
              "busy_seconds": 2.5, "largest_batch": 3}
    after = {"requests": 700, "batches": 640, "dropped": 1, "failed_batches": 2, "batches_over_one": 30,
             "busy_seconds": 20.0, "largest_batch": 4}
    delta = serve_load.batching_delta(before, after)
    assert delta == {"requests": 600, "batches": 550, "dropped": 0, "failed_batches": 2, "batches_over_one": 25,
                     "busy_seconds": 17.5, "mean_batch_size": round(600 / 550, 3), "largest_batch_since_start": 4}


@pytest.mark.slow
def test_a_short_run_reports_latency_cpu_and_memory_of_a_real_server() -> None:
    import json
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "serve_load.py"), "--seconds", "3", "--warmup", "1",
                           "--rate", "5", "--max-batch", "1"], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["warmup"] == {"seconds": 1.0, "requests": 5, "ok": 5}
    assert doc["requests"] == 15 and doc["ok"] == 15 and doc["errors"] == 0 and doc["statuses"] == {"200": 15}
    assert doc["server_batching"]["requests"] == 15  # the warm-up is not counted
    assert 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p95"] <= doc["latency_ms"]["max"]
    assert doc["cpu_ms_per_request"]["server"] > 0 and doc["cpu_ms_per_request"]["client"] > 0
    rss = doc["server_rss_mb"]
    assert rss["before"] > 0 and rss["samples"] >= 3 and rss["peak"] >= max(rss["before"], rss["after"])
    assert isinstance(doc["memory_flat"], bool) and len(doc["load_average"]["before"]) == 3
