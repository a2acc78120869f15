"""Generative multimodal models: a vision tower bridged to any Hugging Face causal language model.

>>> model = build_vlm({"image": {"type": "timm", "params": {"arch": "resnet18", "in_chans": 1}},
...                    "lm": {"dir": "/models/local-llm"}, "projector": "mlp"})      # doctest: +SKIP
>>> generate(model, images, ["Which side is the opacity on?"] * len(images)).texts  # doctest: +SKIP

Parts: :class:`VisionLanguageModel` (``bridge``), projectors ``linear`` / ``mlp`` / ``qformer``
(``projector``), the prompt :class:`ChatTemplate` (``template``), decoding and constrained answers
(``generate``), closed-question candidates (``answers``), the LM source (``lm``), tokenizers
(``tokenizer``), the typed :class:`VLMConfig` (``config``) and checkpoints (``checkpoint``).
"""

from __future__ import annotations

from medfuse.models.generative.answers import AnswerBank, closed_candidates, is_yes_no, parse_options
from medfuse.models.generative.bridge import (
    IGNORE_INDEX,
    IMAGE_SLOT,
    MultimodalInputs,
    VisionLanguageModel,
    VLMOutput,
    answer_loss,
)
from medfuse.models.generative.checkpoint import LoadedVLM, is_vlm_checkpoint, load_vlm, save_vlm
from medfuse.models.generative.config import VLM_KIND, VLMConfig, build_vlm, vlm_config
from medfuse.models.generative.generate import (
    Generated,
    GenerationConfig,
    answer,
    generate,
    inference_mode,
    score_candidates,
    stream,
)
from medfuse.models.generative.lm import (
    LanguageModelConfig,
    load_language_model,
    lora_target_names,
    scratch_config,
)
from medfuse.models.generative.projector import (
    PROJECTORS,
    LinearProjector,
    MLPProjector,
    Projector,
    QFormerProjector,
    build_projector,
)
from medfuse.models.generative.template import ChatTemplate, PromptIds
from medfuse.models.generative.tokenizer import ByteLevelTokenizer, HFTokenizer, TextTokenizer, load_tokenizer

__all__ = [
    "IGNORE_INDEX", "IMAGE_SLOT", "PROJECTORS", "VLM_KIND", "AnswerBank", "ByteLevelTokenizer", "ChatTemplate",
    "Generated", "GenerationConfig", "HFTokenizer", "LanguageModelConfig", "LinearProjector", "LoadedVLM",
    "MLPProjector", "MultimodalInputs", "Projector", "PromptIds", "QFormerProjector", "TextTokenizer", "VLMConfig",
    "VLMOutput", "VisionLanguageModel", "answer", "answer_loss", "build_projector", "build_vlm", "closed_candidates",
    "generate", "inference_mode", "is_vlm_checkpoint", "is_yes_no", "load_language_model", "load_tokenizer",
    "load_vlm", "lora_target_names", "parse_options", "save_vlm", "score_candidates", "scratch_config", "stream",
    "vlm_config",
]
