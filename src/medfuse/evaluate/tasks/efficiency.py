"""Efficiency: parameters, FLOPs, latency at batch 1, throughput at batch 32 and peak memory.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (matrix products
and convolutions; element-wise operations are not counted) and given per sample. Latency is the wall
time of a forward pass at batch size 1 (median and 95th percentile over ``repeats`` runs after
``warmup`` runs); throughput is samples per second at ``throughput_batch``. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU and, on a CPU, the rise of the process's resident memory
during a forward pass (sampled with psutil when installed, else the ``ru_maxrss`` high-water mark).
Timings depend on the machine and its load: they are reported with the device, not reproduced exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from medfuse.evaluate.results import TaskResult, metric_entry
from medfuse.evaluate.tasks.base import EVAL_TASKS, EvalContext, TaskSkipped
from medfuse.evaluate.tasks.batches import batch_length, take_rows
from medfuse.models.inference import to_device, unwrap

log = logging.getLogger(__name__)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Return total and trainable parameter counts (tied weights counted once)."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    return {"parameters": sum(p.numel() for p in seen.values()),
            "trainable_parameters": sum(p.numel() for p in seen.values() if p.requires_grad)}


def count_flops(forward: Callable[[], Any]) -> int:
    """Return the FLOPs of one call of ``forward`` counted by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        forward()
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(forward: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> np.ndarray:
    """Return the wall times in seconds of ``repeats`` calls after ``warmup`` untimed calls."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            forward()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return np.asarray(times)


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def peak_memory(forward: Callable[[], Any], device: torch.device) -> tuple[float, str]:
    """Return the peak memory of one call in MiB and how it was measured."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            forward()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda max_memory_allocated"
    start = _rss()
    if start is None:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            forward()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, after - before) / 1024, "ru_maxrss high-water rise (a lower bound)"
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            value = _rss()
            if value is not None and value > peak[0]:
                peak[0] = value
            done.wait(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        with torch.no_grad():
            forward()
    finally:
        done.set()
        watcher.join()
    return max(0, peak[0] - start) / 2**20, "resident memory rise (psutil, sampled every 2 ms)"


def _batch_of(ctx: EvalContext, size: int) -> dict[str, Any]:
    """Return a batch of exactly ``size`` rows of the split (rows repeated when the split is smaller)."""
    first = next(iter(ctx.batches(batch_size=size)), None)
    if first is None:
        raise TaskSkipped("no sample of the split could be loaded")
    n = batch_length(first)
    return first if n == size else take_rows(first, np.arange(size) % n)


def _forward(ctx: EvalContext, batch: Mapping[str, Any]) -> Callable[[], Any]:
    model = unwrap(ctx.model).eval()
    # repeated rows must cost what distinct requests cost: no encoding shared between rows of one file
    on_device = to_device({k: v for k, v in batch.items() if not k.endswith("_key")}, ctx.device)
    return lambda: model(on_device)


@EVAL_TASKS.register("efficiency")
def efficiency(
    ctx: EvalContext, *, repeats: int = 10, warmup: int = 2, throughput_batch: int = 32, throughput_repeats: int = 3,
) -> TaskResult:
    """Parameters, FLOPs per sample, latency p50/p95 at batch 1, throughput and peak memory."""
    model = unwrap(ctx.model)
    counts = parameter_counts(model)
    single = _forward(ctx, _batch_of(ctx, 1))
    many_batch = _batch_of(ctx, throughput_batch)
    many = _forward(ctx, many_batch)
    flops = count_flops(many) / throughput_batch
    latency = timed(single, ctx.device, repeats, warmup)
    bulk = timed(many, ctx.device, throughput_repeats, 1)
    memory, how = peak_memory(many, ctx.device)
    metrics = {
        "parameters": metric_entry(counts["parameters"]),
        "trainable_parameters": metric_entry(counts["trainable_parameters"]),
        "gflops_per_sample": metric_entry(flops / 1e9),
        "latency_ms_p50": metric_entry(float(np.percentile(latency, 50)) * 1e3),
        "latency_ms_p95": metric_entry(float(np.percentile(latency, 95)) * 1e3),
        "throughput_per_s": metric_entry(throughput_batch / float(np.median(bulk))),
        "peak_memory_mb": metric_entry(memory),
    }
    artifacts = {
        "device": str(ctx.device), "threads": torch.get_num_threads(), "repeats": repeats, "warmup": warmup,
        "throughput_batch": throughput_batch, "latency_ms": (latency * 1e3).tolist(),
        "throughput_batch_ms": (bulk * 1e3).tolist(), "memory_method": how, "flops_per_batch": flops * throughput_batch,
        "gpu": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
    }
    return TaskResult(metrics=metrics, artifacts=artifacts, n=throughput_batch)
