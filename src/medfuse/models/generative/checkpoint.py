"""Save and reload a vision-language model: ``model.safetensors`` + ``config.json`` + ``lm/`` (config, tokenizer).

Every weight (image tower, projector, LM) is in one safetensors file; ``lm/`` holds the LM's transformers
config and tokenizer files, so a checkpoint reloads without the original model directory. ``config.json``
has the :class:`VLMConfig` (its ``lm`` pointing at ``lm/``), preprocessing, library versions, the model card
and free ``extra`` data (for example the closed-question answer bank). Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from medfuse.core.config import from_dict, to_dict
from medfuse.core.errors import ConfigError
from medfuse.models.card import ModelCard, render_markdown
from medfuse.models.generative.config import VLMConfig, build_vlm
from medfuse.models.generative.lm import LanguageModelConfig

FORMAT = "medfuse-vlm"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
LM_DIR = "lm"


@dataclass
class LoadedVLM:
    """A reloaded vision-language model (eval mode) and what was saved with it."""

    model: Any
    config: VLMConfig
    preprocessing: dict[str, Any] = field(default_factory=dict)
    card: ModelCard | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def is_vlm_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint written by :func:`save_vlm`."""
    path = Path(directory) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_vlm(model: Any, directory: str | Path, *, preprocessing: Mapping[str, Any] | None = None,
             card: ModelCard | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (built by :func:`build_vlm`) to ``directory`` atomically; returns the directory.

    Files are staged beside the target first; an earlier save in ``directory`` is replaced entry by entry
    (``config.json`` last, both it and the weights carrying one ``checkpoint_id``); other files stay.

    LoRA adapters must be merged first (``medfuse.train.strategies.merge_lora``): the saved architecture is
    the plain one.
    """
    from safetensors.torch import save_model

    from medfuse.models.checkpoint import _fsync_dir, library_versions

    cfg = getattr(model, "vlm_config", None)
    if not isinstance(cfg, VLMConfig):
        raise ConfigError("save_vlm: the model has no VLMConfig; build it with build_vlm(config)")
    if any("lora_" in name for name, _ in model.named_parameters()):
        raise ConfigError("save_vlm: the model still has LoRA adapters; merge them first (medfuse.train.strategies.merge_lora)")
    assert cfg.lm is not None  # VLMConfig requires one
    directory = Path(directory)
    checkpoint_id = uuid.uuid4().hex
    staging = directory.parent / f".{directory.name}.{checkpoint_id[:12]}.tmp"
    staging.mkdir(parents=True)
    try:
        model.lm.config.save_pretrained(str(staging / LM_DIR))
        model.tokenizer.save(staging / LM_DIR)
        saved_lm = LanguageModelConfig(dir=LM_DIR, dtype=cfg.lm.dtype, attn_implementation=cfg.lm.attn_implementation)
        stored = replace(cfg, lm=saved_lm)
        if preprocessing is None:
            preprocessing = dict(getattr(model.image_encoder, "preprocessing", {}) or {})
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoint_id": checkpoint_id,
               "model": to_dict(stored), "preprocessing": to_dict(dict(preprocessing)), "versions": library_versions(),
               "card": card.to_dict() if card is not None else None, "extra": to_dict(dict(extra or {}))}
        save_model(model, str(staging / WEIGHTS_FILE), metadata={"format": "pt", "medfuse_format": FORMAT,
                                                                  "checkpoint_id": checkpoint_id})
        (staging / CONFIG_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        facts = {"kind": "vision-language model", "image encoder": cfg.image.type if cfg.image else "",
                 "language model": type(model.lm).__name__, "projector": cfg.projector,
                 "parameters": f"{sum(p.numel() for p in model.parameters()):,}"}
        (staging / CARD_FILE).write_text(render_markdown(card, facts), encoding="utf-8")
        _fsync_dir(staging)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Move the staged save into ``directory``: whole when new, else entry by entry with config.json last."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    for name in (WEIGHTS_FILE, LM_DIR, CARD_FILE, CONFIG_FILE):  # other files in the folder are left alone
        target = directory / name
        retired = directory / f".{name}.old-{uuid.uuid4().hex[:8]}" if target.is_dir() else None
        if retired is not None:
            os.replace(target, retired)
        os.replace(staging / name, target)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def load_vlm(directory: str | Path, map_location: str = "cpu") -> LoadedVLM:
    """Return the model rebuilt from ``config.json`` with every weight from ``model.safetensors`` (strict)."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    from medfuse.models.encoders.pretrained import describe_mismatch

    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not is_vlm_checkpoint(directory):
        raise ConfigError(f"{directory}: not a vision-language checkpoint (no {CONFIG_FILE} with format '{FORMAT}')")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise ConfigError(f"{path}: format_version {doc['format_version']} is newer than this medfuse reads ({FORMAT_VERSION})")
    raw = dict(doc["model"])
    raw["lm"] = {**raw["lm"], "dir": str(directory / LM_DIR)}
    cfg = from_dict(VLMConfig, raw, where="model")
    model: nn.Module = build_vlm(cfg, load_weights=False)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{directory}: no {WEIGHTS_FILE}")
    with safe_open(str(weights), framework="pt") as handle:
        stored_id = (handle.metadata() or {}).get("checkpoint_id")
    if doc.get("checkpoint_id") and stored_id != doc["checkpoint_id"]:
        raise ConfigError(f"{directory}: {WEIGHTS_FILE} and {CONFIG_FILE} come from different saves; save again")
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise ConfigError(describe_mismatch(str(weights), sorted(missing), sorted(unexpected), []))
    model.to(map_location).eval()
    card = ModelCard.from_dict(doc["card"]) if doc.get("card") else None
    return LoadedVLM(model, cfg, doc.get("preprocessing") or {}, card, doc.get("extra") or {}, doc.get("versions") or {},
                     directory)


__all__ = ["FORMAT", "LoadedVLM", "is_vlm_checkpoint", "load_vlm", "save_vlm"]
