"""Facts a tracked run records: flattened parameters, git commit, data manifest hash and counts, system load."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_INVALID_KEY = re.compile(r"[^/\w.\- :]")
MAX_PARAM_CHARS = 500  # MLflow's oldest server limit; longer values are cut with an ellipsis


def metric_key(name: str) -> str:
    """Return ``name`` in the characters MLflow accepts for keys (``i2t_R@1`` -> ``i2t_R_at_1``)."""
    return _INVALID_KEY.sub("_", str(name).replace("@", "_at_"))


def flatten_params(value: Any, prefix: str = "") -> dict[str, str]:
    """Return a nested mapping as ``{"a.b.c": "text"}``; lists and empty mappings are JSON text."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            out.update(flatten_params(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if not prefix:
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_PARAM_CHARS:
        text = text[: MAX_PARAM_CHARS - 3] + "..."
    out[metric_key(prefix)] = text
    return out


def finite_metrics(values: Mapping[str, Any], prefix: str = "", skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Return the numeric entries of ``values`` as ``{prefix + key: float}`` (booleans and text left out)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if math.isfinite(number):
            out[metric_key(f"{prefix}{key}")] = number
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """Return the commit checked out in ``cwd`` (``git rev-parse HEAD``), or None outside a repository."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git commit unavailable: %s", exc)
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def sha256_file(path: str | Path | None) -> str | None:
    """Return the SHA-256 of a file's bytes, or None when there is no such file."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_facts(source: Any) -> dict[str, Any]:
    """Return the manifest path, its SHA-256 and the read/kept/quarantined counts of a training's data.

    ``source`` is the data ValidationReport (``to_dict()`` with the counts, ``manifest.path``) or,
    when validation was off, the manifest path itself.
    """
    counts: dict[str, Any] = {}
    path: Any = None
    if hasattr(source, "to_dict"):
        counts = dict(source.to_dict())
        manifest = getattr(source, "manifest", None)
        path = getattr(manifest, "path", None) or counts.get("manifest")
    elif isinstance(source, (str, Path)):
        path = source
    facts: dict[str, Any] = {"manifest": str(path) if path else None, "manifest_sha256": sha256_file(path)}
    for key in ("read", "kept", "quarantined"):
        if isinstance(counts.get(key), int):
            facts[key] = counts[key]
    return facts


class SystemSampler:
    """Reads CPU use and memory at log points: ``system/cpu_percent``, ``system/rss_mb``, ``system/gpu_mem_mb``."""

    def __init__(self) -> None:
        self._process: Any = None
        try:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)  # the first reading only starts the interval
        except Exception as exc:  # psutil is optional: RSS then comes from the resource module
            log.debug("psutil unavailable (%s); system metrics are limited", exc)

    def sample(self) -> dict[str, float]:
        """Return the current readings (whatever can be measured here)."""
        out: dict[str, float] = {}
        if self._process is not None:
            out["system/cpu_percent"] = float(self._process.cpu_percent(None))
            out["system/rss_mb"] = self._process.memory_info().rss / 2**20
        else:
            try:
                import resource

                out["system/max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            except (ImportError, OSError):
                pass
        try:
            import torch

            if torch.cuda.is_available():
                out["system/gpu_mem_mb"] = torch.cuda.memory_allocated() / 2**20
                out["system/gpu_max_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        except Exception as exc:  # a broken CUDA set-up must not stop the readings
            log.debug("GPU memory unavailable: %s", exc)
        return out
