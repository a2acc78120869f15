"""Where evaluation inputs come from: checkpoints (directories or registry names) and their data configs.

A checkpoint written by the trainer stores the training :class:`~medfuse.data.DataConfig` in
``extra["data"]``; evaluation reads rows with the same roles and the same image preparation. Without
it, the roles come from the preset detected from the manifest's columns and the image preparation
from the checkpoint's ``preprocessing`` (flat, as the dataset writes it, or per encoder).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medfuse.core.config import to_dict
from medfuse.core.errors import ConfigError, DataError
from medfuse.data import DataConfig, resolve_config
from medfuse.models import LoadedCheckpoint, load_checkpoint

log = logging.getLogger(__name__)

# DataConfig fields that decide how a sample is prepared (they must match training).
PREPARATION = ("image_size", "channels", "window", "frame", "resize", "mean", "std", "max_text_chars", "audio_prep")


def resolve_checkpoint(checkpoint: str | Path | LoadedCheckpoint) -> LoadedCheckpoint:
    """Return a loaded checkpoint from a directory, a ``name@version`` registry entry, or as given."""
    if isinstance(checkpoint, LoadedCheckpoint):
        return checkpoint
    path = Path(checkpoint)
    if path.is_dir():
        return load_checkpoint(path)
    text = str(checkpoint)
    if "@" in text and not path.exists():
        try:
            from medfuse.tracking.registry import resolve_checkpoint as registry_lookup
        except ImportError:
            raise ConfigError(f"checkpoint '{text}': not a directory, and the model registry "
                              "(medfuse.tracking) is not available to resolve name@version") from None
        return load_checkpoint(Path(registry_lookup(text)))
    raise ConfigError(f"checkpoint '{text}': no such directory; give a checkpoint folder or name@version")


def image_settings(ckpt: LoadedCheckpoint | None) -> dict[str, Any]:
    """Return the image preparation recorded in a checkpoint's ``preprocessing`` as DataConfig fields."""
    if ckpt is None:
        return {}
    prep = dict(ckpt.preprocessing or {})
    if "image_size" in prep or "channels" in prep:  # the dataset's flat form
        return {k: prep[k] for k in PREPARATION if prep.get(k) is not None}
    image = prep.get("image")
    if not isinstance(image, Mapping):
        return {}
    out: dict[str, Any] = {}
    if image.get("size"):
        out["image_size"] = int(image["size"])
    if image.get("channels") in (1, 3):
        out["channels"] = int(image["channels"])
    for key in ("mean", "std"):
        if image.get(key) is not None:
            out[key] = [float(v) for v in image[key]]
    return out


def stored_classes(ckpt: LoadedCheckpoint | None) -> list[str] | None:
    """Return the label classes in output order the checkpoint records, if any."""
    if ckpt is None:
        return None
    data = ckpt.extra.get("data")
    if isinstance(data, Mapping) and data.get("classes"):
        return [str(c) for c in data["classes"]]
    prep = ckpt.preprocessing or {}
    if prep.get("classes"):
        return [str(c) for c in prep["classes"]]
    head = getattr(ckpt.config, "head", None)  # a vision-language model has none
    names = getattr(ckpt, "label_names", None)
    if head is not None and names and head.type in ("binary", "multiclass"):
        expected = 2 if head.type == "binary" else head.num_outputs
        if len(names) == expected:
            return [str(n) for n in names]
    return None


def _as_mapping(config: DataConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, DataConfig):
        return to_dict(config)
    return dict(config)


def data_config_for(
    ckpt: LoadedCheckpoint | None, columns: Sequence[str], overrides: Mapping[str, Any] | None = None,
    *, path: Any = None,
) -> DataConfig:
    """Return the data config to read a manifest with ``columns`` for ``ckpt``.

    The stored training config when the manifest has its columns; otherwise the preset detected from
    the columns with the stored (or recorded) image preparation. ``overrides`` (``data.*`` settings)
    win over both.
    """
    stored = ckpt.extra.get("data") if ckpt is not None else None
    preparation = image_settings(ckpt)
    base: dict[str, Any] = {}
    if isinstance(stored, Mapping):
        base = dict(stored)
        try:
            resolve_config(dict(base)).check_columns(columns, path=path)
        except DataError as exc:
            log.warning("the checkpoint's data config does not fit this manifest (%s); using the roles of the "
                        "preset detected from its columns with the stored image preparation", exc)
            preparation.update({k: base[k] for k in PREPARATION if base.get(k) is not None})
            base = {}
    if not base:
        base = _as_mapping(resolve_config(None, columns))
        base.update(preparation)
    base.update(dict(overrides or {}))
    cfg = resolve_config(base)
    classes = stored_classes(ckpt)
    if cfg.classes is None and classes and cfg.label and not cfg.label_sep:
        cfg = dataclasses.replace(cfg, classes=classes)
    return cfg


def inference_config(ckpt: LoadedCheckpoint) -> DataConfig:
    """Return a data config holding the checkpoint's input preparation (for one-off predictions)."""
    stored = ckpt.extra.get("data")
    if isinstance(stored, Mapping):
        return resolve_config(dict(stored))
    return DataConfig(**image_settings(ckpt))
