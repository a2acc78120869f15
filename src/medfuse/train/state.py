"""Resumable training state: atomic, safetensors + JSON, never pickle.

Layout under ``<out>/checkpoints/``::

    step-00000120/   model.safetensors  train_state.safetensors  train_state.json
    LATEST           the name of the newest complete step directory (replaced atomically)

A step directory is written under a temporary name and renamed when complete; ``LATEST`` is written to a
temporary file and ``os.replace``-d. A SIGKILL at any moment leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medfuse.core.errors import ConfigError


@dataclass
class Position:
    """Where training stands: optimizer steps done, epoch, batches consumed within that epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        plain_state[str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{pid}/{k}"] = v.detach().cpu().contiguous()
            else:
                plain_state[str(pid)][k] = v
    return tensors, {"state": plain_state, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in meta["state"].items()}
    for key, t in tensors.items():
        if key.startswith("optim/"):
            _, pid, k = key.split("/", 2)
            state.setdefault(int(pid), {})[k] = t
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    np_state = np.random.get_state()
    plain = {
        "python": _jsonable_random_state(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    return tensors, plain


def _jsonable_random_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng/cuda"))]
        if states:
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    n = plain["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of the state dict, shared storage broken (safetensors refuses aliasing)."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu", copy=True)  # a snapshot: on CPU, .cpu() would alias the live weights
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        out[k] = t.clone().contiguous() if ptr in seen else t.contiguous()
        if ptr != -1:
            seen[ptr] = k
    return out


def save_train_state(
    ckpt_root: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    ema: nn.Module | None,
    position: Position,
    keep: int = 2,
) -> Path:
    """Write one complete step checkpoint atomically and point ``LATEST`` at it; returns its directory."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{position.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpt_root))
    try:
        save_file(model_state(model), str(tmp / "model.safetensors"))
        tensors, opt_meta = _flatten_optimizer(optimizer)
        rng_t, rng_plain = _rng_state()
        tensors.update(rng_t)
        if ema is not None:
            tensors.update({f"ema/{k}": v for k, v in model_state(ema).items()})
        save_file(tensors, str(tmp / "train_state.safetensors"))
        meta = {
            "position": position.__dict__,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "rng": rng_plain,
        }
        (tmp / "train_state.json").write_text(json.dumps(meta, default=_json_default), encoding="utf-8")
        _fsync_dir(tmp)
        final = ckpt_root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest_tmp = ckpt_root / ".LATEST.tmp"
    latest_tmp.write_text(name, encoding="utf-8")
    os.replace(latest_tmp, ckpt_root / "LATEST")
    _fsync_dir(ckpt_root)
    _prune(ckpt_root, keep=keep, current=name)
    return final


def _json_default(o: Any) -> Any:
    if torch.is_tensor(o):
        return o.item() if o.numel() == 1 else o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune(root: Path, *, keep: int, current: str) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in steps[: max(0, len(steps) - max(keep, 1))]:
        if p.name != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".step-*"):  # leftovers of a killed write
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete step directory, or None."""
    pointer = ckpt_root / "LATEST"
    if not pointer.is_file():
        return None
    d = ckpt_root / pointer.read_text(encoding="utf-8").strip()
    return d if (d / "train_state.json").is_file() else None


def load_train_state(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    ema: nn.Module | None,
) -> Position:
    """Restore everything saved by :func:`save_train_state`; returns the position to continue from."""
    weights = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{directory}: checkpoint does not fit the model built from the config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); resume with the same recipe"
        )
    tensors = load_file(str(directory / "train_state.safetensors"))
    meta = json.loads((directory / "train_state.json").read_text(encoding="utf-8"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta["scaler"] is not None:
        scaler.load_state_dict(meta["scaler"])
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
    _set_rng_state(tensors, meta["rng"])
    return Position(**meta["position"])
