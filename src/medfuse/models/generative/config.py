"""The typed config of a vision-language model and the builder that wires it.

A recipe's ``model:`` section with ``kind: vlm`` loads into :class:`VLMConfig`::

    kind: vlm
    image: {type: timm, params: {arch: efficientnet_lite0, pretrained: efficientnet_lite0_imagenet, in_chans: 1}}
    lm: {dir: /models/my-local-llm}            # or {config: {arch: llama, hidden_size: 256, layers: 4}}
    projector: mlp                              # linear | mlp | qformer
    num_queries: 32                             # qformer only
    template: {system: "...", use_tokenizer_template: false}
    max_length: 256
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medfuse.core.config import check_choice, from_dict
from medfuse.core.errors import ConfigError
from medfuse.models.config import EncoderConfig
from medfuse.models.generative.lm import LanguageModelConfig
from medfuse.models.generative.projector import PROJECTORS
from medfuse.models.generative.template import ChatTemplate

VLM_KIND = "vlm"


@dataclass
class VLMConfig:
    """A vision-language model: ``image`` encoder, ``lm`` source, ``projector`` and prompt ``template``."""

    kind: str = VLM_KIND
    image: EncoderConfig | None = None
    lm: LanguageModelConfig | None = None
    projector: str = "mlp"
    num_queries: int = 32
    projector_params: dict[str, Any] = field(default_factory=dict)
    template: ChatTemplate = field(default_factory=ChatTemplate)
    max_length: int = 256

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, [VLM_KIND])
        if self.image is None:
            raise ConfigError("model.image: name the image encoder, e.g. {type: timm, params: {arch: resnet18, in_chans: 1}}")
        if isinstance(self.image, Mapping):
            self.image = from_dict(EncoderConfig, self.image, where="model.image")
        if not self.image.modality:
            self.image.modality = "image"
        if self.lm is None:
            raise ConfigError("model.lm: name the language model: {dir: DIR}, {hub: NAME} or {config: {arch: llama, ...}}")
        if isinstance(self.lm, Mapping):
            self.lm = from_dict(LanguageModelConfig, self.lm, where="model.lm")
        if isinstance(self.template, Mapping):
            self.template = from_dict(ChatTemplate, self.template, where="model.template")
        check_choice("model.projector", self.projector, PROJECTORS.names())
        if isinstance(self.num_queries, bool) or not isinstance(self.num_queries, int) or self.num_queries < 1:
            raise ConfigError(f"model.num_queries: expected an integer >= 1, got {self.num_queries!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise ConfigError(f"model.max_length: expected an integer >= 8, got {self.max_length!r}")


def vlm_config(raw: VLMConfig | Mapping[str, Any]) -> VLMConfig:
    """Return ``raw`` as a validated :class:`VLMConfig`."""
    return raw if isinstance(raw, VLMConfig) else from_dict(VLMConfig, raw, where="model")


def build_vlm(cfg: VLMConfig | Mapping[str, Any], *, load_weights: bool = True) -> Any:
    """Return the :class:`VisionLanguageModel` ``cfg`` describes; ``load_weights=False`` builds architectures only."""
    from medfuse.models.builder import build_encoder
    from medfuse.models.generative.bridge import VisionLanguageModel
    from medfuse.models.generative.lm import load_language_model

    cfg = vlm_config(cfg)
    assert cfg.image is not None and cfg.lm is not None  # checked by VLMConfig
    encoder = build_encoder(cfg.image, load_weights=load_weights)
    lm, tokenizer = load_language_model(cfg.lm, load_weights=load_weights)
    model = VisionLanguageModel(encoder, lm, tokenizer, projector=cfg.projector, num_queries=cfg.num_queries,
                                projector_params=cfg.projector_params, template=cfg.template, max_length=cfg.max_length)
    model.vlm_config = cfg
    return model


__all__ = ["VLM_KIND", "VLMConfig", "build_vlm", "vlm_config"]
