"""Import CLIP models made elsewhere: a local Hugging Face ``CLIPModel`` directory or an open_clip state dict.

Each import returns the medfuse :class:`DualEncoder` and the :class:`ModelConfig` that rebuilds its
architecture, so the result saves and reloads as any medfuse checkpoint. The towers keep their own
projections (HF's ``*ModelWithProjection``, open_clip's ``proj``/``text_projection``), so the dual encoder
uses ``projection="none"``; ``encode_image``/``encode_text`` equal the source's features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.core.optional import require
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput
from medfuse.models.config import EncoderConfig, ModelConfig
from medfuse.models.dual_encoder import DualEncoder
from medfuse.models.encoders.pretrained import describe_mismatch, read_state_dict
from medfuse.models.encoders.text import quiet_hf_loading

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass
class ImportedModel:
    """An imported dual encoder and the config that rebuilds its architecture."""

    model: DualEncoder
    config: ModelConfig


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError(f"texts must be a list of strings or a tokenised mapping, got {type(texts).__name__}")
    return list(texts)


@ENCODERS.register("hf_clip_vision")
class HFCLIPVisionEncoder(Encoder):
    """Hugging Face CLIP vision tower with its projection: ``(B, 3, H, W)`` -> ``(B, E)`` + tokens ``(B, N, W)``."""

    def __init__(self, config: dict[str, Any], *, modality: str = "image") -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        vision_config = CLIPVisionConfig.from_dict(dict(config))
        self.model = CLIPVisionModelWithProjection(vision_config)
        self.output_dim = int(vision_config.projection_dim)
        self.token_dim = int(vision_config.hidden_size)
        self.modality = modality
        self.preprocessing: dict[str, Any] = {
            "size": int(vision_config.image_size), "channels": 3, "mean": CLIP_MEAN, "std": CLIP_STD,
            "interpolation": "bicubic", "crop_pct": 1.0,
        }

    def forward(self, images: Tensor) -> EncoderOutput:
        """Return projected ``(B, E)`` image features and the last hidden states ``(B, N, W)``."""
        out = self.model(pixel_values=images)
        return EncoderOutput(pooled=out.image_embeds, tokens=out.last_hidden_state)


@ENCODERS.register("hf_clip_text")
class HFCLIPTextEncoder(Encoder):
    """Hugging Face CLIP text tower with its projection: tokens or strings -> ``(B, E)`` + tokens ``(B, L, W)``.

    Strings need ``tokenizer_dir`` (a directory with the CLIP tokenizer files); token mappings always work.
    """

    def __init__(
        self, config: dict[str, Any], *, tokenizer_dir: str | None = None, modality: str = "text"
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

        text_config = CLIPTextConfig.from_dict(dict(config))
        self.model = CLIPTextModelWithProjection(text_config)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True) if tokenizer_dir else None
        self.max_length = int(text_config.max_position_embeddings)
        self.output_dim = int(text_config.projection_dim)
        self.token_dim = int(text_config.hidden_size)
        self.modality = modality
        self.last_truncated = 0
        self.preprocessing: dict[str, Any] = {"max_length": self.max_length}

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Return ``input_ids``/``attention_mask`` ``(B, L)`` from the directory's tokenizer."""
        if self.tokenizer is None:
            raise ConfigError("tokenizer_dir: this CLIP text tower has no tokenizer; pass token tensors or set tokenizer_dir")
        texts = _texts(texts)
        lengths = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        self.last_truncated = sum(len(ids) > self.max_length for ids in lengths)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, texts: Any) -> EncoderOutput:
        """Return projected ``(B, E)`` text features and the last hidden states ``(B, L, W)`` with mask."""
        enc = dict(texts) if isinstance(texts, Mapping) else self.tokenize(texts)
        device = next(self.model.parameters()).device
        ids = enc["input_ids"].to(device)
        mask = enc.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask.to(device)
        out = self.model(input_ids=ids, attention_mask=mask)
        return EncoderOutput(pooled=out.text_embeds, tokens=out.last_hidden_state, token_mask=mask.bool())

    def export_assets(self, directory: Path) -> dict[str, str]:
        """Write the tokenizer (if any) to ``directory``; return ``{"tokenizer_dir": path}``."""
        if self.tokenizer is None:
            return {}
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        return {"tokenizer_dir": str(directory)}


def load_hf_clip(model_dir: str | Path) -> ImportedModel:
    """Return a :class:`DualEncoder` equal to the local Hugging Face ``CLIPModel`` in ``model_dir``.

    ``encode_image``/``encode_text`` give ``get_image_features``/``get_text_features`` (normalised unless
    ``normalize=False``); the logit scale is the model's. The tokenizer is used when the directory has one.
    """
    from transformers import CLIPModel

    directory = Path(model_dir)
    if not (directory / "config.json").is_file():
        raise ConfigError(f"model_dir: {directory} has no config.json; expected a saved Hugging Face CLIPModel")
    with quiet_hf_loading():
        clip = CLIPModel.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32)
    # the towers carry the projection, whose size is the top-level projection_dim
    vision_config = {**clip.config.vision_config.to_dict(), "projection_dim": int(clip.config.projection_dim)}
    text_config = {**clip.config.text_config.to_dict(), "projection_dim": int(clip.config.projection_dim)}
    has_tokenizer = any((directory / name).is_file() for name in ("tokenizer.json", "vocab.json"))
    cfg = ModelConfig(
        kind="dual_encoder",
        encoders={
            "image": EncoderConfig("hf_clip_vision", params={"config": vision_config}),
            "text": EncoderConfig(
                "hf_clip_text",
                params={
                    "config": text_config,
                    "tokenizer_dir": str(directory) if has_tokenizer else None,
                },
            ),
        },
        embed_dim=int(clip.config.projection_dim),
        projection="none",
        init_logit_scale=float(clip.logit_scale.detach()),
    )
    from medfuse.models.builder import build_model

    model = build_model(cfg)
    mapped: dict[str, Tensor] = {}
    for key, value in clip.state_dict().items():
        if key.startswith("vision_model.") or key == "visual_projection.weight":
            mapped[f"image_encoder.model.{key}"] = value
        elif key.startswith("text_model.") or key == "text_projection.weight":
            mapped[f"text_encoder.model.{key}"] = value
        else:
            mapped[key] = value
    _load_strict(model, mapped, f"Hugging Face CLIP {directory}")
    return ImportedModel(model=cast(DualEncoder, model.eval()), config=cfg)


@ENCODERS.register("open_clip_vision")
class OpenCLIPVisionEncoder(Encoder):
    """open_clip vision tower (with its projection): ``(B, 3, H, W)`` -> ``(B, E)`` (+ tokens for ViTs)."""

    def __init__(
        self, vision_cfg: dict[str, Any], *, embed_dim: int = 512, quick_gelu: bool = False, modality: str = "image"
    ) -> None:
        super().__init__()
        require("open_clip", extra="open_clip", purpose="open_clip towers")
        from open_clip.model import _build_vision_tower

        self.tower = _build_vision_tower(embed_dim, dict(vision_cfg), quick_gelu)
        self.has_tokens = hasattr(self.tower, "output_tokens")
        if self.has_tokens:
            self.tower.output_tokens = True
        self.output_dim = int(embed_dim)
        self.token_dim = int(vision_cfg.get("width", embed_dim)) if self.has_tokens else self.output_dim
        self.modality = modality
        size = vision_cfg.get("image_size", 224)
        self.preprocessing: dict[str, Any] = {
            "size": int(size if isinstance(size, int) else size[0]), "channels": 3, "mean": CLIP_MEAN,
            "std": CLIP_STD, "interpolation": "bicubic", "crop_pct": 1.0,
        }

    def forward(self, images: Tensor) -> EncoderOutput:
        """Return projected ``(B, E)`` image features and, for ViTs, patch tokens ``(B, N, W)``."""
        out = self.tower(images)
        if isinstance(out, tuple):
            return EncoderOutput(pooled=out[0], tokens=out[1])
        return EncoderOutput(pooled=out)


@ENCODERS.register("open_clip_text")
class OpenCLIPTextEncoder(Encoder):
    """open_clip text transformer (with its projection): token ids ``(B, L)`` or strings -> ``(B, E)`` + tokens.

    Strings are tokenised with open_clip's bundled BPE tokenizer, which needs the standard vocabulary (49408).
    """

    def __init__(
        self, text_cfg: dict[str, Any], *, embed_dim: int = 512, quick_gelu: bool = False, modality: str = "text"
    ) -> None:
        super().__init__()
        require("open_clip", extra="open_clip", purpose="open_clip towers")
        from open_clip.model import _build_text_tower

        self.tower = _build_text_tower(embed_dim, dict(text_cfg), quick_gelu)
        self.tower.output_tokens = True
        self.context_length = int(self.tower.context_length)
        self.vocab_size = int(self.tower.vocab_size)
        self.pad_id = int(getattr(self.tower, "pad_id", 0))
        self.output_dim = int(embed_dim)
        self.token_dim = int(text_cfg.get("width", embed_dim))
        self.modality = modality
        self.last_truncated = 0
        self.preprocessing: dict[str, Any] = {"max_length": self.context_length}

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Return ``input_ids`` ``(B, context_length)`` from open_clip's BPE tokenizer."""
        from open_clip.tokenizer import SimpleTokenizer

        texts = _texts(texts)
        tokenizer = SimpleTokenizer(context_length=self.context_length)
        if self.vocab_size != len(tokenizer.encoder):
            raise ConfigError(
                f"text_cfg.vocab_size: {self.vocab_size} differs from open_clip's tokenizer ({len(tokenizer.encoder)}); "
                "pass token ids instead of strings"
            )
        self.last_truncated = sum(len(tokenizer.encode(t)) + 2 > self.context_length for t in texts)
        return {"input_ids": tokenizer(texts)}

    def forward(self, texts: Any) -> EncoderOutput:
        """Return projected ``(B, E)`` text features and tokens ``(B, L, W)`` with mask (pad id excluded)."""
        enc = dict(texts) if isinstance(texts, Mapping) else self.tokenize(texts)
        ids = enc["input_ids"].to(self.tower.token_embedding.weight.device)
        pooled, tokens = self.tower(ids)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=ids != self.pad_id)


_OPEN_CLIP_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection", "text_pool")


def load_open_clip(
    weights: str | Path | Mapping[str, Tensor], *, model_name: str | None = None, model_cfg: Mapping[str, Any] | None = None
) -> ImportedModel:
    """Return a :class:`DualEncoder` equal to an open_clip ``CLIP`` from its state dict and architecture.

    ``weights``: a state dict or a local file of one (safetensors, or .pt/.bin read with ``weights_only``).
    The architecture is ``model_cfg`` (``{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"?}``) or the
    bundled config of ``model_name`` (e.g. ``ViT-B-32``; read offline from the open_clip package).
    """
    open_clip = require("open_clip", extra="open_clip", purpose="importing open_clip models")
    if (model_name is None) == (model_cfg is None):
        raise ConfigError("load_open_clip: give exactly one of model_name or model_cfg")
    if model_name is not None:
        found = open_clip.get_model_config(model_name)
        if found is None:
            from medfuse.core.registry import unknown_name_message

            raise ConfigError("model_name: " + unknown_name_message("open_clip model", model_name, open_clip.list_models()))
        model_cfg = found
    cfg_map = dict(model_cfg or {})
    if "custom_text" in cfg_map or cfg_map.get("text_cfg", {}).get("hf_model_name"):
        raise ConfigError("model_cfg: only open_clip CLIP models with the built-in text transformer can be imported")
    embed_dim = int(cfg_map["embed_dim"])
    quick_gelu = bool(cfg_map.get("quick_gelu", False))
    state = dict(weights) if isinstance(weights, Mapping) else read_state_dict(weights)
    logit_scale = state.get("logit_scale")
    logit_bias = state.get("logit_bias")
    cfg = ModelConfig(
        kind="dual_encoder",
        encoders={
            "image": EncoderConfig("open_clip_vision", params={
                "vision_cfg": dict(cfg_map["vision_cfg"]), "embed_dim": embed_dim, "quick_gelu": quick_gelu}),
            "text": EncoderConfig("open_clip_text", params={
                "text_cfg": dict(cfg_map["text_cfg"]), "embed_dim": embed_dim, "quick_gelu": quick_gelu}),
        },
        embed_dim=embed_dim,
        projection="none",
        init_logit_scale=float(logit_scale) if logit_scale is not None else float(torch.log(torch.tensor(1 / 0.07))),
        init_logit_bias=float(logit_bias) if logit_bias is not None else None,
    )
    from medfuse.models.builder import build_model

    model = build_model(cfg)
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "attn_mask":
            continue
        if key in ("logit_scale", "logit_bias"):
            value = value.reshape(())
        if key.startswith("visual."):
            mapped["image_encoder.tower." + key[len("visual.") :]] = value
        elif key.startswith(_OPEN_CLIP_TEXT_KEYS):
            mapped["text_encoder.tower." + key] = value
        else:
            mapped[key] = value
    _load_strict(model, mapped, "open_clip state dict")
    return ImportedModel(model=cast(DualEncoder, model.eval()), config=cfg)


def _load_strict(model: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    target = model.state_dict()
    missing = sorted(k for k in target if k not in state)
    unexpected = sorted(k for k in state if k not in target)
    mismatched = sorted(
        f"{k}: source {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in state
        if k in target and state[k].shape != target[k].shape
    )
    if missing or unexpected or mismatched:
        raise ConfigError(describe_mismatch(source, missing, unexpected, mismatched))
    model.load_state_dict(dict(state), strict=True)
