"""Wire registered parts into a model from a :class:`ModelConfig`; the parts know nothing of each other."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from medfuse.core.config import from_dict
from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, FUSIONS, Encoder
from medfuse.models.config import EncoderConfig, ModelConfig, accepted_params
from medfuse.models.diagnosis import DiagnosisModel
from medfuse.models.dual_encoder import DualEncoder
from medfuse.models.heads import build_head


def build_encoder(cfg: EncoderConfig, *, load_weights: bool = True) -> Encoder:
    """Return the encoder ``cfg`` describes; ``load_weights=False`` builds pretrained towers without weights."""
    cls = ENCODERS.get(cfg.type)
    params: dict[str, Any] = dict(cfg.params)
    accepted = accepted_params(cls) or []
    if "modality" in accepted:
        params.setdefault("modality", cfg.modality)
    if not load_weights and "load_weights" in accepted:
        params["load_weights"] = False
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise ConfigError(f"encoder '{cfg.type}' ({cfg.modality}): {exc}") from None
    encoder = cls(**params)
    encoder.modality = cfg.modality
    return encoder


def build_model(cfg: ModelConfig | Mapping[str, Any], *, load_weights: bool = True) -> nn.Module:
    """Return a :class:`DiagnosisModel` or :class:`DualEncoder` built from ``cfg``.

    ``load_weights=False`` skips reading pretrained weights (the architecture is the same); checkpoints
    load that way, since they hold every weight themselves.
    """
    from medfuse.models.fusion import build_fusion

    if not isinstance(cfg, ModelConfig):
        cfg = from_dict(ModelConfig, cfg, where="model")
    encoders = {name: build_encoder(enc, load_weights=load_weights) for name, enc in cfg.encoders.items()}
    if cfg.kind == "dual_encoder":
        return DualEncoder(
            encoders["image"],
            encoders["text"],
            cfg.embed_dim,
            projection=cfg.projection,
            init_logit_scale=cfg.init_logit_scale,
            init_logit_bias=cfg.init_logit_bias,
            max_logit_scale=cfg.max_logit_scale,
            image_key=cfg.encoders["image"].modality,
            text_key=cfg.encoders["text"].modality,
        )
    assert cfg.head is not None  # checked by ModelConfig
    uses_tokens = bool(getattr(FUSIONS.get(cfg.fusion.type), "uses_tokens", False))
    input_dims = {
        name: int(getattr(enc, "token_dim", enc.output_dim)) if uses_tokens else int(enc.output_dim)
        for name, enc in encoders.items()
    }
    fusion = build_fusion(cfg.fusion.type, input_dims, cfg.fusion.dim, **cfg.fusion.params)
    head = build_head(
        cfg.head.type, int(fusion.output_dim), cfg.head.num_outputs, hidden=cfg.head.hidden, dropout=cfg.head.dropout
    )
    return DiagnosisModel(
        encoders,
        fusion,
        head,
        inputs={name: enc.modality for name, enc in cfg.encoders.items()},
        modality_dropout=cfg.fusion.modality_dropout,
    )


build = build_model
