"""Data: manifests read as they are, column roles, validation with quarantine, splits, datasets, loaders.

>>> report = validate_manifest("manifest.csv", "synthetic")            # doctest: +SKIP
>>> train = ManifestDataset(report, split="train", train=True)        # doctest: +SKIP
>>> loader = build_loader(train, batch_size=32, shuffle=True, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from medfuse.data.cache import ImageCache, cache_key
from medfuse.data.columns import CellError, LabelEncoder, band_label, infer_classes
from medfuse.data.config import MODALITIES, TASKS, DataConfig
from medfuse.data.dataset import ManifestDataset
from medfuse.data.loader import Collate, build_loader, collate, finish_images, seed_worker
from medfuse.data.manifest import BadRow, Manifest, is_missing, parse_number, read_manifest, text_value
from medfuse.data.presets import (
    PRESETS,
    detect_preset,
    guess_config,
    load_data_config,
    preset,
    resolve_config,
)
from medfuse.data.splits import (
    SPLIT_ALIASES,
    assign_splits,
    canonical_split,
    check_leakage,
    find_leaks,
    resolve_split,
)
from medfuse.data.transforms import Augment, ImagePipeline, prepare_image
from medfuse.data.validate import (
    Issue,
    ValidationReport,
    default_quarantine_path,
    validate_manifest,
    write_quarantine,
)

__all__ = [
    "MODALITIES",
    "PRESETS",
    "SPLIT_ALIASES",
    "TASKS",
    "Augment",
    "BadRow",
    "CellError",
    "Collate",
    "DataConfig",
    "ImageCache",
    "ImagePipeline",
    "Issue",
    "LabelEncoder",
    "Manifest",
    "ManifestDataset",
    "ValidationReport",
    "assign_splits",
    "band_label",
    "build_loader",
    "cache_key",
    "canonical_split",
    "check_leakage",
    "collate",
    "default_quarantine_path",
    "detect_preset",
    "find_leaks",
    "finish_images",
    "guess_config",
    "infer_classes",
    "is_missing",
    "load_data_config",
    "load_image",
    "parse_number",
    "prepare_image",
    "preset",
    "read_manifest",
    "resolve_config",
    "resolve_split",
    "seed_worker",
    "text_value",
    "validate_manifest",
    "write_quarantine",
]


def __getattr__(name: str) -> Any:
    """Expose the image decoder lazily (``medfuse.data.load_image``) without importing it at package import."""
    if name == "load_image":
        from medfuse.data.images import load_image

        return load_image
    raise AttributeError(f"module 'medfuse.data' has no attribute {name!r}")
