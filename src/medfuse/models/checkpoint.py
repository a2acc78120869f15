"""Checkpoints that explain themselves: ``model.safetensors`` + ``config.json`` (+ ``MODEL_CARD.md``, ``assets/``).

``config.json`` holds the model config, preprocessing, label names, thresholds, library versions and the
model card; ``assets/<encoder>/`` holds the files an encoder needs besides weights (tokenizer, HF config).
A checkpoint therefore reloads without the original pretrained weight files or model directories.
Weights are read with safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.config import from_dict, to_dict
from medfuse.core.errors import ConfigError
from medfuse.models.builder import build_model
from medfuse.models.card import ModelCard, render_markdown
from medfuse.models.config import ModelConfig
from medfuse.models.encoders.pretrained import describe_mismatch

log = logging.getLogger(__name__)

FORMAT = "medfuse-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
ASSETS_DIR = "assets"

Thresholds = float | Sequence[float] | Mapping[str, float] | None


@dataclass
class LoadedCheckpoint:
    """A reloaded checkpoint: the model (eval mode) and everything saved next to it."""

    model: nn.Module
    config: ModelConfig
    label_names: list[str] | None = None
    thresholds: Any = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    card: ModelCard | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def library_versions() -> dict[str, str]:
    """Return the versions of medfuse and the libraries whose behaviour the weights depend on."""
    import medfuse

    out = {"medfuse": medfuse.__version__, "torch": torch.__version__}
    for dist in ("timm", "transformers", "safetensors", "open_clip_torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _named_encoders(model: nn.Module) -> dict[str, nn.Module]:
    getter = getattr(model, "named_encoders", None)
    return dict(getter()) if callable(getter) else {}


def _check_labels(cfg: ModelConfig, label_names: Sequence[str] | None) -> list[str] | None:
    if label_names is None:
        return None
    names = [str(n) for n in label_names]
    if cfg.kind == "diagnosis" and cfg.head is not None:
        # a binary head may name just the positive class or both classes
        expected = (1, 2) if cfg.head.type == "binary" else (cfg.head.num_outputs,)
        if len(names) not in expected:
            raise ConfigError(
                f"label_names: {len(names)} names for a {cfg.head.type} head with {cfg.head.num_outputs} "
                f"output(s); expected {' or '.join(map(str, expected))}"
            )
    return names


def _json_ready(name: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot be stored in config.json ({exc}); use plain numbers, strings, lists, dicts") from None
    return value


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    cfg: ModelConfig,
    *,
    label_names: Sequence[str] | None = None,
    thresholds: Thresholds = None,
    preprocessing: Mapping[str, Any] | None = None,
    card: ModelCard | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its config to ``directory`` atomically and return the directory.

    Everything is first written to a temporary directory beside the target. A new ``directory`` is then
    renamed into place in one step. In an existing directory (a run directory with logs, or an older
    checkpoint) only the checkpoint's own entries are replaced, each by a rename, ``config.json`` last;
    both files carry one ``checkpoint_id``, so :func:`load_checkpoint` detects weights and config from
    different saves. Other files in the directory are left alone. ``preprocessing`` defaults to the
    encoders' own ``preprocessing`` (size, mean, std, ...).
    """
    directory = Path(directory)
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"cfg: expected a ModelConfig, got {type(cfg).__name__}")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    checkpoint_id = uuid.uuid4().hex
    names = _check_labels(cfg, label_names)
    encoders = _named_encoders(model)
    if preprocessing is None:
        preprocessing = {n: dict(e.preprocessing) for n, e in encoders.items() if hasattr(e, "preprocessing")}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.{checkpoint_id[:12]}.tmp"
    staging.mkdir()  # default permissions (mkdtemp's would be owner-only)
    try:
        assets: dict[str, dict[str, str]] = {}
        for name, encoder in encoders.items():
            export = getattr(encoder, "export_assets", None)
            if callable(export):
                written = export(staging / ASSETS_DIR / name)
                if written:
                    assets[name] = {k: Path(os.path.relpath(v, staging)).as_posix() for k, v in written.items()}
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "checkpoint_id": checkpoint_id,
            "model": _json_ready("cfg", to_dict(cfg)),
            "assets": assets,
            "preprocessing": _json_ready("preprocessing", to_dict(dict(preprocessing))),
            "label_names": names,
            "thresholds": _json_ready("thresholds", to_dict(thresholds)),
            "versions": library_versions(),
            "card": card.to_dict() if card is not None else None,
            "extra": _json_ready("extra", to_dict(dict(extra or {}))),
        }
        from safetensors.torch import save_model

        metadata = {"format": "pt", "medfuse_format": FORMAT, "checkpoint_id": checkpoint_id}
        save_model(model, str(staging / WEIGHTS_FILE), metadata=metadata)
        (staging / CONFIG_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        facts = {"kind": cfg.kind, "encoders": ", ".join(f"{n} ({e.type})" for n, e in cfg.encoders.items())}
        if cfg.kind == "diagnosis" and cfg.head is not None:
            facts.update({"fusion": cfg.fusion.type, "head": f"{cfg.head.type} ({cfg.head.num_outputs})"})
        facts["parameters"] = f"{sum(p.numel() for p in model.parameters()):,}"
        if names:
            facts["labels"] = ", ".join(names)
        facts["versions"] = ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
        (staging / CARD_FILE).write_text(render_markdown(card, facts), encoding="utf-8")
        _fsync_dir(staging)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _fsync_dir(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def _swap_into_place(staging: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(staging, directory)
        return
    # config.json goes last: until it is replaced, the old config names the old checkpoint_id
    for name in (WEIGHTS_FILE, ASSETS_DIR, CARD_FILE, CONFIG_FILE):
        source, target = staging / name, directory / name
        retired = None
        if target.is_dir():
            retired = directory / f".{name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, retired)
        if source.exists():
            os.replace(source, target)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def checkpoint_dir(directory: str | Path) -> Path:
    """The checkpoint folder for ``directory``: itself, or its ``model/`` subfolder (a training run's output)."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() and (directory / "model" / CONFIG_FILE).is_file():
        return directory / "model"
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """Return the parsed ``config.json`` of a checkpoint directory; errors name the file."""
    directory = checkpoint_dir(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{directory}: not a medfuse checkpoint (no {CONFIG_FILE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a medfuse checkpoint config (format is {doc.get('format')!r})")
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise ConfigError(f"{path}: format_version {doc['format_version']} is newer than this medfuse reads ({FORMAT_VERSION})")
    return doc


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """Return state-dict name -> the other names sharing its storage (tied weights)."""
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for name, tensor in model.state_dict().items():
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        groups.setdefault(key, []).append(name)
    return {n: [m for m in names if m != n] for names in groups.values() for n in names}


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Return the model rebuilt from ``config.json`` with every weight from ``model.safetensors`` (strict).

    The architecture is built without pretrained weights; a mismatch raises :class:`ConfigError` listing
    missing, unexpected and shape-mismatched keys.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    directory = checkpoint_dir(directory)
    doc = read_checkpoint_config(directory)
    model_dict = doc.get("model") or {}
    for name, params in (doc.get("assets") or {}).items():
        encoder = (model_dict.get("encoders") or {}).get(name)
        if encoder is None:
            raise ConfigError(f"{directory / CONFIG_FILE}: assets name an unknown encoder '{name}'")
        encoder.setdefault("params", {}).update({k: str(directory / v) for k, v in params.items()})
    cfg = from_dict(ModelConfig, model_dict, where="model")
    model = build_model(cfg, load_weights=False)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{directory}: no {WEIGHTS_FILE}")
    with safe_open(str(weights), framework="pt") as handle:
        stored_id = (handle.metadata() or {}).get("checkpoint_id")
    if doc.get("checkpoint_id") and stored_id != doc["checkpoint_id"]:
        raise ConfigError(
            f"{directory}: {WEIGHTS_FILE} and {CONFIG_FILE} come from different saves (an interrupted save?); "
            "save the checkpoint again"
        )
    state = load_file(str(weights), device="cpu")
    target = model.state_dict()
    aliases = _aliases(model)
    missing = sorted(k for k in target if k not in state and not any(a in state for a in aliases.get(k, [])))
    unexpected = sorted(k for k in state if k not in target)
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in state
        if k in target and state[k].shape != target[k].shape
    )
    if missing or unexpected or mismatched:
        raise ConfigError(describe_mismatch(str(weights), missing, unexpected, mismatched))
    full: dict[str, Tensor] = dict(state)
    for name in target:
        if name not in full:
            full[name] = next(state[a] for a in aliases[name] if a in state)
    model.load_state_dict(full, strict=True)
    model.to(map_location).eval()
    card = ModelCard.from_dict(doc["card"]) if doc.get("card") else None
    return LoadedCheckpoint(
        model=model,
        config=cfg,
        label_names=doc.get("label_names"),
        thresholds=doc.get("thresholds"),
        preprocessing=doc.get("preprocessing") or {},
        card=card,
        extra=doc.get("extra") or {},
        versions=doc.get("versions") or {},
        path=directory,
    )
