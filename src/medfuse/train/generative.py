"""Training a vision-language model with the one loop: (a) alignment, then (b) instruction tuning.

Stage ``align`` trains only the projector on image-caption (or image-report) pairs, so the frozen LM learns
nothing and the image vectors learn to speak its language (LLaVA's feature-alignment stage, Liu et al. 2023;
BLIP-2's first stage plays the same part, Li et al. 2023). Stage ``instruct`` tunes on question-answer (or
report) pairs with LoRA adapters on the LM (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
ICLR 2022), optionally on the vision tower too, and the projector. The loss is cross-entropy on answer tokens
only. Settings come from the recipe's ``loss`` section (``Recipe`` has fixed keys)::

    task: generation
    model: {kind: vlm, image: {...}, lm: {dir: DIR} | {config: {...}}, projector: mlp}
    loss: {stage: instruct, lm: lora, vision: frozen, lora: {r: 8, alpha: 16}, prompt: "Describe the image."}
    init: {checkpoint: runs/align/model}     # stage (b) starts from stage (a)'s weights
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from torch import nn

from medfuse.core.config import check_choice, from_dict, to_dict
from medfuse.core.errors import ConfigError
from medfuse.core.optional import require
from medfuse.models.generative import (
    AnswerBank,
    VisionLanguageModel,
    VLMOutput,
    answer,
    build_vlm,
    closed_candidates,
    is_yes_no,
    lora_target_names,
    save_vlm,
    vlm_config,
)
from medfuse.objectives import LossOutput
from medfuse.train.strategies import StrategyReport, has_lora, merge_lora
from medfuse.train.tasks import TASKS, TaskModule

log = logging.getLogger(__name__)

STAGES = ("align", "instruct")
LM_MODES = ("frozen", "lora", "full")
VISION_MODES = ("frozen", "lora", "full")
VISION_LORA_TARGETS = ["qkv", "proj", "fc1", "fc2", "query", "key", "value", "conv_pw", "conv_pwl"]


@dataclass
class LoraSettings:
    """LoRA adapters: rank ``r``, scale ``alpha / r``, dropout, and the layer names they wrap.

    lm_targets: None wraps every attention and MLP projection of the LM; vision_targets: names of the
    vision tower's layers (those present are used).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    lm_targets: list[str] | None = None
    vision_targets: list[str] = field(default_factory=lambda: list(VISION_LORA_TARGETS))


@dataclass
class GenerationSettings:
    """How a vision-language model trains (the recipe's ``loss`` section for ``task: generation``).

    stage: ``align`` (projector only, on captions) or ``instruct`` (question-answer or report pairs).
    lm: ``frozen`` | ``lora`` | ``full``; default: frozen when aligning, else LoRA for a pretrained LM and
        full training for one built from a config (a random LM has nothing for adapters to adapt).
    vision: ``frozen`` | ``lora`` | ``full`` (a frozen tower runs in eval mode and keeps no activations).
    projector: train the projector.
    prompt: the instruction for pairs without a question (captions, reports).
    question_key, target_key, context_key: batch keys of the question, the text to learn (default:
        ``answer`` when batches have it, else ``text``) and optional context text (history, vitals).
    max_val_samples: validation answers this many questions at most; constrained_closed: closed
        questions pick the likeliest candidate answer; max_new_tokens: longest generated answer.
    """

    stage: str = "instruct"
    lm: str | None = None
    vision: str = "frozen"
    projector: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)
    prompt: str = "Describe the image."
    question_key: str = "question"
    target_key: str | None = None
    context_key: str | None = None
    max_val_samples: int = 512
    constrained_closed: bool = True
    max_new_tokens: int = 16

    def __post_init__(self) -> None:
        check_choice("loss.stage", self.stage, STAGES)
        if self.lm is not None:
            check_choice("loss.lm", self.lm, LM_MODES)
        check_choice("loss.vision", self.vision, VISION_MODES)


def generation_settings(loss: Mapping[str, Any] | None, model: Mapping[str, Any] | None = None) -> GenerationSettings:
    """Return the settings of the recipe's ``loss`` section, with the LM mode defaulted from ``model.lm``."""
    settings = from_dict(GenerationSettings, dict(loss or {}), where="loss")
    if settings.lm is None:
        scratch = ((model or {}).get("lm") or {}).get("config") is not None
        settings.lm = "frozen" if settings.stage == "align" else ("full" if scratch else "lora")
    return settings


def _inject_lora(part: nn.Module, targets: Sequence[str], lora: LoraSettings, where: str) -> None:
    peft = require("peft", extra="peft", purpose="LoRA fine-tuning")
    from transformers.pytorch_utils import Conv1D

    leaves = {n.rsplit(".", 1)[-1]: m for n, m in part.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, Conv1D))}
    chosen = [t for t in targets if t in leaves]
    if not chosen:
        raise ConfigError(f"loss.lora.{where}: {list(targets)} match no layer; layer names here include {sorted(leaves)[:20]}")
    fan_in_fan_out = any(isinstance(leaves[t], Conv1D) for t in chosen)  # GPT-2 stores weights transposed
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=chosen,
                             fan_in_fan_out=fan_in_fan_out)
    peft.inject_adapter_in_model(config, part)


def apply_stage(model: VisionLanguageModel, settings: GenerationSettings) -> StrategyReport:
    """Decide what trains (and add LoRA adapters) for the stage; returns what was left trainable."""
    if settings.lm == "lora":
        _inject_lora(model.lm, settings.lora.lm_targets or lora_target_names(model.lm), settings.lora, "lm_targets")
    if settings.vision == "lora":
        _inject_lora(model.image_encoder, settings.lora.vision_targets, settings.lora, "vision_targets")
    for p in model.parameters():
        p.requires_grad_(False)
    parts = {"lm": (model.lm, settings.lm), "vision": (model.image_encoder, settings.vision)}
    for part, mode in parts.values():
        for name, p in part.named_parameters():
            if mode == "full" or (mode == "lora" and "lora_" in name):
                p.requires_grad_(True)
    if settings.projector:
        for p in model.projector.parameters():
            p.requires_grad_(True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ConfigError("loss: nothing trains (projector false, lm and vision frozen); train at least one part")
    report = StrategyReport(f"generation/{settings.stage} (lm {settings.lm}, vision {settings.vision})",
                            sum(p.numel() for p in model.parameters() if p.requires_grad),
                            sum(p.numel() for p in model.parameters()), names)
    log.info(report.summary())
    return report


def batch_fields(batch: Mapping[str, Any], settings: GenerationSettings) -> tuple[list[str], list[str], list[str] | None]:
    """Return the questions (the prompt where a row has none), the target texts and the contexts of ``batch``."""
    key = settings.target_key or ("answer" if "answer" in batch else "text")
    if key not in batch:
        raise ConfigError(f"loss.target_key: batches have no '{key}' (keys: {sorted(batch)}); name the text to learn")
    targets = [str(t) for t in batch[key]]
    asked = batch.get(settings.question_key)
    questions = [str(q) if q is not None and str(q).strip() else settings.prompt for q in asked] if asked else [settings.prompt] * len(targets)
    contexts = None
    if settings.context_key:
        if settings.context_key not in batch:
            raise ConfigError(f"loss.context_key: batches have no '{settings.context_key}' (keys: {sorted(batch)})")
        contexts = [str(c) for c in batch[settings.context_key]]
    return questions, targets, contexts


class GenerationModule(TaskModule):
    """The vision-language model being trained; ``forward(batch)`` gives its answer-token loss (DDP-friendly)."""

    def __init__(self, model: VisionLanguageModel, settings: GenerationSettings) -> None:
        super().__init__(model)
        self.settings = settings

    def forward(self, batch: Mapping[str, Any]) -> VLMOutput:
        """Return the model's :class:`VLMOutput` on ``batch`` (images, questions, targets, contexts)."""
        questions, targets, contexts = batch_fields(batch, self.settings)
        return self.model(batch["image"], questions, targets, contexts)

    def train(self, mode: bool = True) -> GenerationModule:
        """Set training mode; a frozen vision tower stays in eval mode (its batch-norm statistics are kept)."""
        super().train(mode)
        if self.settings.vision == "frozen":
            encoder: Any = self.model.image_encoder
            encoder.eval()
        return self


def candidates_for(question: str, answer_type: str, bank: AnswerBank | None) -> list[str] | None:
    """Return the candidate answers of a closed question (None: answer by generation)."""
    kind = str(answer_type).strip().lower()
    if kind == "open":
        return None
    if kind == "closed" or is_yes_no(question):
        return closed_candidates(question, bank)
    return None


@TASKS.register("generation")
class GenerationTask:
    """Answer-token cross-entropy of a vision-language model; validation: loss, token accuracy and VQA accuracy."""

    name = "generation"

    def __init__(self, settings: GenerationSettings, bank: AnswerBank | None = None) -> None:
        self.settings = settings
        self.bank = bank

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        """Return the mean cross-entropy over answer tokens, with token count and accuracy as parts."""
        out: VLMOutput = module(batch)
        count = out.answer_tokens.clamp_min(1).float()
        return LossOutput(out.loss, {"answer_tokens": out.answer_tokens.detach().float(),
                                     "token_accuracy": (out.correct_tokens.float() / count).detach()})

    def validate(self, module: nn.Module, loader: Any) -> dict[str, float]:
        """Return ``answer_loss``, ``token_accuracy`` and, for question data, ``vqa_overall/closed/open``."""
        from medfuse.evaluate.metrics import vqa_accuracy

        gen = module if isinstance(module, GenerationModule) else GenerationModule(cast(VisionLanguageModel, module), self.settings)
        loss_sum = tokens = correct = 0.0
        preds: list[str] = []
        truths: list[str] = []
        kinds: list[str] = []
        seen = 0
        for batch in loader:
            if seen >= self.settings.max_val_samples:
                break
            if not len(batch.get("index", [1])):
                continue
            out = gen(batch)
            n = float(out.answer_tokens)
            loss_sum, tokens, correct = loss_sum + float(out.loss) * n, tokens + n, correct + float(out.correct_tokens)
            seen += len(batch["image"])
            if self.settings.question_key in batch and "answer" in batch:
                questions, targets, contexts = batch_fields(batch, self.settings)
                types = [str(t) for t in batch.get("answer_type", [""] * len(questions))]
                cands = [candidates_for(q, t, self.bank) if self.settings.constrained_closed else None
                         for q, t in zip(questions, types)]
                preds += answer(gen.model, batch["image"], questions, cands, contexts,
                                {"max_new_tokens": self.settings.max_new_tokens})
                truths += targets
                kinds += [_closed_or_open(t, a) for t, a in zip(types, targets)]
        metrics = {"answer_loss": loss_sum / max(tokens, 1.0), "token_accuracy": correct / max(tokens, 1.0)}
        if preds:
            metrics.update(vqa_accuracy(preds, truths, kinds))
        return {k: float(v) for k, v in metrics.items() if isinstance(v, float) and not math.isnan(v)}


def _closed_or_open(kind: str, answer_text: str) -> str:
    low = kind.strip().lower()
    if low in ("closed", "open"):
        return low
    return "closed" if answer_text.strip().lower() in ("yes", "no") else "open"


def _init_from(model: nn.Module, checkpoint: str) -> None:
    from safetensors.torch import load_model

    path = Path(checkpoint)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"init.checkpoint: {path} has no model.safetensors")
    missing, unexpected = load_model(model, str(file), strict=False)
    target = len(model.state_dict())
    if len(missing) == target:
        raise ConfigError(f"init.checkpoint: no tensor of {file} fits this vision-language model")
    log.info("initialised from %s (%d tensors not in the file, %d unused)", file, len(missing), len(unexpected))


def build_generation(recipe: Any, train: Any) -> tuple[GenerationTask, GenerationModule, StrategyReport]:
    """Return the task, the module to train and what trains, for a recipe with ``task: generation``."""
    settings = generation_settings(recipe.loss, recipe.model)
    if recipe.strategy.kind != "full":
        raise ConfigError(f"strategy.kind: '{recipe.strategy.kind}' is not used by task 'generation'; "
                          "set loss.lm / loss.vision (frozen | lora | full) and loss.lora instead")
    cfg = vlm_config(recipe.model)
    channels = getattr(getattr(train, "config", None), "channels", None)
    in_chans = (cfg.image.params if cfg.image else {}).get("in_chans", 3)
    if channels is not None and int(in_chans) != int(channels):
        raise ConfigError(f"model.image.params.in_chans={in_chans} but data.channels={channels}; make them equal")
    model = build_vlm(cfg)
    if recipe.init.checkpoint:
        _init_from(model, recipe.init.checkpoint)
    report = apply_stage(model, settings)
    if recipe.train.grad_checkpointing:
        model.set_grad_checkpointing(True)
    bank = None
    vqa = getattr(train, "vqa", None) or {}
    if "question" in vqa and "answer" in vqa:
        bank = AnswerBank.from_rows(vqa["question"], vqa["answer"], vqa.get("answer_type"))
    return GenerationTask(settings, bank), GenerationModule(model, settings), report


def save_generation(module: nn.Module, task: GenerationTask, recipe: Any, train: Any, directory: Path,
                    metrics: Mapping[str, float] | None = None) -> Path:
    """Merge LoRA adapters and save the trained model with :func:`save_vlm`; returns the checkpoint folder."""
    from medfuse.models.card import ModelCard

    model = module.model if isinstance(module, TaskModule) else module
    if has_lora(model):
        model = merge_lora(model)
    card = ModelCard(
        intended_use=recipe.evaluate.get("intended_use", "Research use on data like the training manifest; not a medical device."),
        data=f"{recipe.data.manifest} (train split '{recipe.data.train_split}', {len(train)} rows)",
        limitations=recipe.evaluate.get("limitations", "Generated text can be fluent and wrong; check the visual-reliance "
                                         "figures (blank and shuffled images) before trusting answers."),
        metrics={k: float(v) for k, v in (metrics or {}).items()},
    )
    extra = {"train_task": "generation", "recipe": to_dict(recipe), "generation": to_dict(task.settings),
             "answer_bank": task.bank.to_dict() if task.bank is not None else {}}
    if hasattr(train, "config"):
        extra["data"] = to_dict(train.config)
    preprocessing = train.preprocessing() if hasattr(train, "preprocessing") else None
    return save_vlm(model, directory, preprocessing=preprocessing, card=card, extra=extra)


__all__ = ["GenerationModule", "GenerationSettings", "GenerationTask", "LoraSettings", "apply_stage", "batch_fields",
           "build_generation", "candidates_for", "generation_settings", "save_generation"]
