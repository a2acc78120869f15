"""Generative models behind ``/v1/answer`` and ``/v1/report``: a callable, or a vision-language checkpoint.

A generator is any callable taking a :class:`~medfuse.serve.config.GenerationRequest` and returning text.
A path names a checkpoint of :mod:`medfuse.models.generative` (``save_vlm``; a training folder's
``model/`` is accepted too); that package may also offer its own ``load_generator(path)``, which wins.
Closed (yes/no) questions are answered by the likelier candidate, open ones and reports by greedy decoding.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from medfuse.core.errors import ConfigError
from medfuse.serve.config import GenerationRequest, GeneratorFn
from medfuse.serve.errors import ApiError

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "Describe the image."
REPORT_TOKENS = 256


def load_generator(spec: Any, device: str = "cpu") -> tuple[GeneratorFn | None, str]:
    """Return ``(generator, reason)``: the generator ``spec`` names, or None and why there is none."""
    if spec is None:
        return None, "no generative model is configured; start the server with a generator (--generator)"
    if callable(spec):
        return spec, ""
    try:
        generative = importlib.import_module("medfuse.models.generative")
    except ImportError:
        return None, "generative models are not available in this installation (medfuse.models.generative is missing)"
    custom = getattr(generative, "load_generator", None)
    if callable(custom):
        return custom(str(spec)), ""
    return VisionLanguageGenerator(generative, Path(str(spec)), device), ""


class VisionLanguageGenerator:
    """A generator over a saved vision-language model: its image preparation, prompt and answer bank."""

    def __init__(self, generative: Any, path: Path, device: str = "cpu") -> None:
        from medfuse.index.embed import ImagePreparer, inference_data_config

        directory = path if generative.is_vlm_checkpoint(path) else path / "model"
        if not generative.is_vlm_checkpoint(directory):
            raise ConfigError(f"generator '{path}': not a vision-language checkpoint (medfuse.models.generative.save_vlm)")
        self.generative = generative
        self.vlm = generative.load_vlm(directory, map_location=device)
        self.prepare = ImagePreparer(inference_data_config(self.vlm))
        settings = dict(self.vlm.extra.get("generation") or {})
        self.prompt = str(settings.get("prompt") or DEFAULT_PROMPT)
        self.answer_tokens = int(settings.get("max_new_tokens") or 32)
        bank = self.vlm.extra.get("answer_bank")
        self.bank = generative.AnswerBank.from_dict(bank) if bank else None
        self.device = device

    def __call__(self, request: GenerationRequest) -> str:
        if request.image is None:
            raise ApiError("missing_field", "the generative model needs an image", "image")
        images = self.prepare(request.image)[None].to(self.device)
        g = self.generative
        if request.task == "answer":
            question = request.text
            candidates = g.closed_candidates(question, self.bank) if g.is_yes_no(question) else None
            config = g.GenerationConfig(max_new_tokens=min(request.max_new_tokens, self.answer_tokens))
            return str(g.answer(self.vlm.model, images, [question], [candidates], config=config)[0]).strip()
        contexts = [request.text] if request.text else None
        config = g.GenerationConfig(max_new_tokens=min(request.max_new_tokens, REPORT_TOKENS))
        return str(g.generate(self.vlm.model, images, [self.prompt], contexts, config).texts[0]).strip()
