"""Typed model configs, validated against the registries when they are made.

A YAML recipe's ``model:`` section loads into :class:`ModelConfig` with ``core.config.from_dict``::

    kind: diagnosis
    encoders:
      image: {type: timm, params: {arch: resnet18}}
      vitals: {type: vitals_mlp, params: {num_features: 12}}
    fusion: {type: gated, dim: 256, modality_dropout: 0.1}
    head: {type: multiclass, num_outputs: 3}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medfuse.core.config import check_choice, from_dict
from medfuse.core.errors import ConfigError
from medfuse.core.registry import Registry, unknown_name_message
from medfuse.models.base import ENCODERS, FUSIONS, HEADS

KINDS = ("diagnosis", "dual_encoder")
PROJECTIONS = ("linear", "mlp", "none")


def accepted_params(cls: Any, skip: tuple[str, ...] = ()) -> list[str] | None:
    """Return the keyword parameters ``cls(...)`` accepts (minus ``skip``), or None when it takes ``**kwargs``."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if n not in skip and p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_part(where: str, registry: Registry, name: str, params: Mapping[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` when ``name`` is not registered or ``params`` holds an unknown key."""
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{where}.type: {unknown_name_message(registry.kind, str(name), registry.names())}")
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params: expected a mapping, got {params!r}")
    allowed = accepted_params(registry.get(name), skip)
    if allowed is None:
        return
    for key in params:
        if key not in allowed:
            raise ConfigError(f"{where}.params: {registry.kind} '{name}': {unknown_name_message('parameter', key, allowed)}")


def _check_int(where: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: expected an integer >= {low}, got {value!r}")


def _check_probability(where: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{where}: expected a probability in [0, 1), got {value!r}")


@dataclass
class EncoderConfig:
    """One encoder: its registered ``type``, the batch key it reads (``modality``) and its ``params``."""

    type: str
    modality: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_part("encoder", ENCODERS, self.type, self.params, skip=("modality",))


@dataclass
class FusionConfig:
    """The fusion: registered ``type``, fused size ``dim``, its ``params``, and training-time modality dropout."""

    type: str = "concat"
    dim: int = 256
    params: dict[str, Any] = field(default_factory=dict)
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_part("fusion", FUSIONS, self.type, self.params, skip=("input_dims", "dim"))
        _check_int("fusion.dim", self.dim, 1)
        _check_probability("fusion.modality_dropout", self.modality_dropout)


@dataclass
class HeadConfig:
    """The prediction head: ``multiclass`` | ``binary`` | ``multilabel`` | ``regression``; linear or MLP."""

    type: str = "multiclass"
    num_outputs: int = 2
    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in HEADS:
            raise ConfigError(f"head.type: {unknown_name_message('head', str(self.type), HEADS.names())}")
        _check_int("head.num_outputs", self.num_outputs, 1)
        _check_int("head.hidden", self.hidden, 0)
        _check_probability("head.dropout", self.dropout)
        if self.type == "binary" and self.num_outputs != 1:
            raise ConfigError(f"head.num_outputs: binary has exactly 1 output, got {self.num_outputs}; use multilabel")
        if self.type == "multiclass" and self.num_outputs < 2:
            raise ConfigError(f"head.num_outputs: multiclass needs >= 2 classes, got {self.num_outputs}; use binary")


@dataclass
class ModelConfig:
    """A whole model.

    ``diagnosis``: ``encoders`` (any names) -> ``fusion`` -> ``head``.
    ``dual_encoder``: ``encoders`` named ``image`` and ``text``, projected to ``embed_dim`` by ``projection``
    (``linear`` | ``mlp`` | ``none``), with a learnable logit scale (and SigLIP bias when ``init_logit_bias``
    is set).
    """

    kind: str = "diagnosis"
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head: HeadConfig | None = None
    embed_dim: int = 256
    projection: str = "linear"
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None
    max_logit_scale: float = 100.0

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, KINDS)
        if isinstance(self.fusion, Mapping):
            self.fusion = from_dict(FusionConfig, self.fusion, where="model.fusion")
        if isinstance(self.head, Mapping):
            self.head = from_dict(HeadConfig, self.head, where="model.head")
        check_choice("model.projection", self.projection, PROJECTIONS)
        if not isinstance(self.encoders, Mapping) or not self.encoders:
            raise ConfigError("model.encoders: name at least one encoder, e.g. {image: {type: timm, params: {arch: resnet18}}}")
        encoders: dict[str, EncoderConfig] = {}
        for name, value in self.encoders.items():
            where = f"model.encoders.{name}"
            if not isinstance(name, str) or not name or "." in name:
                raise ConfigError(f"model.encoders: names must be non-empty strings without '.', got {name!r}")
            try:
                enc = value if isinstance(value, EncoderConfig) else from_dict(EncoderConfig, value, where=where)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            if not enc.modality:
                enc.modality = name
            encoders[name] = enc
        self.encoders = encoders
        _check_int("model.embed_dim", self.embed_dim, 1)
        if not self.max_logit_scale > 0:
            raise ConfigError(f"model.max_logit_scale: expected > 0, got {self.max_logit_scale!r}")
        if self.kind == "diagnosis" and self.head is None:
            raise ConfigError("model.head: a diagnosis model needs a head, e.g. {type: multiclass, num_outputs: 3}")
        if self.kind == "dual_encoder" and set(self.encoders) != {"image", "text"}:
            raise ConfigError(
                f"model.encoders: a dual_encoder needs exactly 'image' and 'text', got {sorted(self.encoders)}"
            )
