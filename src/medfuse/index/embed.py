"""Embeddings of images and texts from a checkpoint, in the space a retrieval index holds.

A dual encoder projects both towers into one space, so an image index answers text queries and the
reverse. A diagnosis model has no shared space: its embedding is the fused representation the head
reads (``DiagnosisOutput.fused``), computed with only the queried modality present, and is comparable
only with embeddings of the same modality. Every embedding is L2-normalised, so inner products are
cosine similarities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.data import DataConfig, ImagePipeline, prepare_image
from medfuse.models import LoadedCheckpoint, load_checkpoint
from medfuse.models.inference import model_device, unwrap

__all__ = ["Embedder", "ImagePreparer", "open_checkpoint", "resolve_checkpoint_dir"]

MODEL_SUBDIR = "model"  # a training folder keeps its final checkpoint here
TEXT_KEYS = ("text", "question")


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Return the checkpoint directory for ``path``: a checkpoint itself, or a training folder holding ``model/``."""
    directory = Path(path)
    if (directory / "config.json").is_file():
        return directory
    if (directory / MODEL_SUBDIR / "config.json").is_file():
        return directory / MODEL_SUBDIR
    if not directory.exists():
        raise ConfigError(f"checkpoint '{directory}': no such directory")
    raise ConfigError(
        f"checkpoint '{directory}': no config.json here nor in '{MODEL_SUBDIR}/'; give the folder written by "
        "`medfuse train --out DIR` or its model/ subfolder"
    )


def open_checkpoint(path: str | Path | LoadedCheckpoint, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Return the loaded checkpoint at ``path`` (a checkpoint or a training folder), in eval mode on ``device``."""
    if isinstance(path, LoadedCheckpoint):
        return path
    return load_checkpoint(resolve_checkpoint_dir(path), map_location=device)


def inference_data_config(ckpt: LoadedCheckpoint) -> DataConfig:
    """Return the data config holding the checkpoint's input preparation (roles, image size, window, ...)."""
    from medfuse.evaluate.tasks.sources import inference_config

    return inference_config(ckpt)


class ImagePreparer:
    """Decoded pixels (float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)``) -> normalised ``(C, S, S)`` tensors.

    The same resize/crop, channel count and normalisation as at training (``config``).
    """

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        mean, std = config.norm_stats()
        self.pipeline = ImagePipeline(mean, std)

    def __call__(self, pixels: np.ndarray) -> Tensor:
        """Return the model input ``(C, S, S)`` float32 for decoded ``pixels``."""
        cfg = self.config
        prepared = prepare_image(pixels, cfg.image_size, channels=cfg.channels, resize=cfg.resize)
        return self.pipeline(torch.from_numpy(np.require(prepared, requirements=["W"])))

    def display(self, pixels: np.ndarray, max_side: int = 448) -> np.ndarray:
        """Return the region the model sees, ``(S', S')`` float in [0, 1], at up to ``max_side`` pixels for viewing."""
        cfg = self.config
        side = int(min(max_side, max(cfg.image_size, min(pixels.shape[:2]))))
        prepared = prepare_image(pixels, side, channels=1, resize=cfg.resize)
        return prepared[0].astype(np.float32) / 255.0


def _text_key(model: Any) -> str | None:
    inputs = dict(getattr(model, "inputs", {}) or {})
    for key in TEXT_KEYS:
        if key in inputs.values():
            return key
    return None


def _image_key(model: Any) -> str | None:
    from medfuse.models.encoders.image import TimmImageEncoder

    inputs = dict(getattr(model, "inputs", {}) or {})
    if "image" in inputs.values():
        return "image"
    for name, encoder in getattr(model, "encoders", {}).items():
        if isinstance(encoder, TimmImageEncoder):
            return inputs.get(name, name)
    return None


class Embedder:
    """L2-normalised embeddings ``(B, D)`` of images and texts from a loaded checkpoint.

    ``kind`` is ``dual_encoder``, ``diagnosis`` or ``vqa`` (an answer classifier reading a question);
    ``image_key`` / ``text_key`` are the batch keys the model reads (None when it reads no such input).
    """

    def __init__(self, ckpt: LoadedCheckpoint) -> None:
        from medfuse.evaluate.tasks.base import model_kind

        self.ckpt = ckpt
        self.model: Any = unwrap(ckpt.model).eval()
        self.kind = model_kind(self.model, ckpt)
        if self.kind != "dual_encoder" and str(ckpt.extra.get("train_task", "")).lower() == "vqa":
            self.kind = "vqa"
        self.config = inference_data_config(ckpt)
        self.prepare = ImagePreparer(self.config)
        if self.kind == "dual_encoder":
            self.image_key: str | None = str(getattr(self.model, "image_key", "image"))
            self.text_key: str | None = str(getattr(self.model, "text_key", "text"))
        else:
            self.image_key, self.text_key = _image_key(self.model), _text_key(self.model)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def dim(self) -> int:
        """Return the embedding size: the projection size of a dual encoder, the fused size otherwise."""
        if self.kind == "dual_encoder":
            return int(self.model.embed_dim)
        return int(self.model.fusion.output_dim)

    @property
    def space(self) -> str:
        """``dual_encoder`` (one space for images and texts) or ``fused`` (per-modality fused features)."""
        return "dual_encoder" if self.kind == "dual_encoder" else "fused"

    def reads(self, modality: str) -> bool:
        """Whether the model reads ``modality`` (``image`` or ``text``)."""
        return (self.image_key if modality == "image" else self.text_key) is not None

    def _require(self, modality: str) -> str:
        key = self.image_key if modality == "image" else self.text_key
        if key is None:
            raise ConfigError(f"this {self.kind} model reads no {modality}; embed a modality it reads")
        return key

    @torch.no_grad()
    def images(self, images: Tensor) -> Tensor:
        """Return embeddings ``(B, D)`` (CPU float32) of normalised images ``(B, C, S, S)``."""
        key = self._require("image")
        images = images.to(self.device)
        if self.kind == "dual_encoder":
            out = self.model.encode_image(images)
        else:
            present = {key: torch.ones(images.shape[0], dtype=torch.bool, device=self.device)}
            out = self.model({key: images, "present": present}).fused
        return F.normalize(out.float(), dim=-1).cpu()

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> Tensor:
        """Return embeddings ``(B, D)`` (CPU float32) of ``texts``."""
        key = self._require("text")
        texts = [str(t) for t in texts]
        if self.kind == "dual_encoder":
            out = self.model.encode_text(texts)
        else:
            present = {key: torch.ones(len(texts), dtype=torch.bool, device=self.device)}
            out = self.model({key: texts, "present": present}).fused
        return F.normalize(out.float(), dim=-1).cpu()

    def pixels(self, pixels: np.ndarray) -> Tensor:
        """Return the embedding ``(1, D)`` of one decoded image (float32 in [0, 1])."""
        return self.images(self.prepare(pixels).unsqueeze(0))

    def batch(self, batch: Mapping[str, Any], modality: str) -> tuple[Tensor, list[int]]:
        """Return embeddings of a loader batch's ``modality`` and the positions (in the batch) they belong to.

        Samples where the modality is absent (``batch["present"]``) or its text is empty are left out.
        """
        size = len(batch["index"])
        present = batch.get("present", {}).get(modality)
        keep = torch.ones(size, dtype=torch.bool) if present is None else present.bool().cpu()
        if modality == "text":
            texts = list(batch.get("text") or [])
            if not texts:
                return torch.zeros(0, 1), []
            keep &= torch.tensor([bool(t.strip()) for t in texts])
            rows = torch.nonzero(keep).flatten().tolist()
            return (self.texts([texts[i] for i in rows]) if rows else torch.zeros(0, 1)), rows
        if "image" not in batch:
            return torch.zeros(0, 1), []
        rows = torch.nonzero(keep).flatten().tolist()
        return (self.images(batch["image"][rows]) if rows else torch.zeros(0, 1)), rows
