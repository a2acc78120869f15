"""Helpers shared by the speed benchmarks: JSON output, device facts, timing and memory readings.

Every benchmark prints one JSON document on stdout (and nothing else there), so a test or a script can
``json.loads`` it. Figures come from measurements taken in the same run; nothing here is a stored result.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, used as the MFU denominator.
# Longer names first: the first substring found in the device name wins. ``--peak-tflops`` overrides.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
)


def emit(doc: Mapping[str, Any]) -> None:
    """Print ``doc`` as one JSON document on stdout (non-finite floats become null)."""
    json.dump(_finite(doc), sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def pick_device(name: str = "auto") -> torch.device:
    """Return ``cuda`` when available (``auto``), else ``cpu``; or the device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_info(device: torch.device) -> dict[str, Any]:
    """Return what the figures were measured on: device kind and name, threads, torch version."""
    info: dict[str, Any] = {
        "device": device.type,
        "gpu": device.type == "cuda",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": _load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_name"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    else:
        info["device_name"] = platform.processor() or platform.machine()
        info["note"] = "no GPU: CPU figures only (GPU-only settings and figures are not measured)"
    return info


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def peak_tflops(device: torch.device, override: float | None = None) -> float | None:
    """Return the bf16 dense peak TFLOP/s of a CUDA device (None on CPU or for an unknown GPU)."""
    if override is not None:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU), so wall times cover the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> float:
    """Return the wall seconds of ``repeats`` calls of ``fn``, with the device synchronised at both ends."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    """Return the median of ``values`` (NaN when empty)."""
    items = list(values)
    return statistics.median(items) if items else float("nan")


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Return ``{"median", "min", "max", "rounds"}`` of per-round figures, rounded to ``digits``."""
    return {
        "median": round(median(values), digits),
        "min": round(min(values), digits) if values else None,
        "max": round(max(values), digits) if values else None,
        "rounds": [round(v, digits) for v in values],
    }


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (since start, or since :func:`reset_peak_rss`)."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"] / 1024.0
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024.0 * 1024.0) if sys.platform == "darwin" else usage / 1024.0


def current_rss_mb() -> float:
    """Return this process's resident set size now, in MiB."""
    status = _proc_status()
    if "VmRSS" in status:
        return status["VmRSS"] / 1024.0
    return peak_rss_mb()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _proc_status() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = float(rest.split()[0])  # kB
    except OSError:
        pass
    return out


def cuda_peak_mb(device: torch.device) -> float | None:
    """Return ``torch.cuda.max_memory_allocated`` in MiB since the last reset (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_memory(device: torch.device) -> None:
    """Reset the peak-memory mark: CUDA's allocator statistics on a GPU, the peak RSS on a CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def peak_memory_mb(device: torch.device) -> float:
    """Return the peak memory since :func:`reset_peak_memory`: CUDA max allocated, else the peak RSS."""
    value = cuda_peak_mb(device)
    return value if value is not None else peak_rss_mb()


def add_json_out(parser: Any) -> None:
    """Add ``--json-out PATH`` (also write the JSON document to a file)."""
    parser.add_argument("--json-out", default=None, help="also write the JSON document to this file")


def write_json(doc: Mapping[str, Any], path: str | None) -> None:
    """Print ``doc`` and, when ``path`` is set, write it there too."""
    emit(doc)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_finite(doc), fh, indent=2)
            fh.write("\n")
