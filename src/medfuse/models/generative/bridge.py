"""A vision tower bridged to a causal language model: image tokens become LM input vectors.

The image encoder's tokens ``(B, N, D_img)`` go through a projector to ``(B, Q, D_lm)`` and take the place of
the template's ``<image>`` placeholder in the LM's ``inputs_embeds``; the attention mask, position ids and
labels are built to match, so the LM reads ``prompt-before, image, prompt-after`` and learns to write the
answer. This is the LLaVA recipe (Liu et al., "Visual Instruction Tuning", NeurIPS 2023); with the
``qformer`` projector the image is first summarised by learned queries as in BLIP-2 (Li et al., ICML 2023).
The loss is cross-entropy on answer tokens only: every prompt and image position has label -100.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.config import from_dict
from medfuse.core.errors import ConfigError
from medfuse.models.generative.lm import LanguageModelConfig, accepts_logits_to_keep, load_language_model
from medfuse.models.generative.projector import Projector, build_projector
from medfuse.models.generative.template import ChatTemplate, PromptIds
from medfuse.models.generative.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
IMAGE_SLOT = -1  # id placeholder where a projected image vector goes


@dataclass
class MultimodalInputs:
    """A tokenised batch.

    input_ids: (B, L) int64, ``IMAGE_SLOT`` where image vectors go, the pad id on padding.
    attention_mask: (B, L) int64, 1 on real positions. position_ids: (B, L) counting real positions from 0.
    labels: (B, L) int64 answer ids (and eos) at answer positions, -100 elsewhere; None without answers.
    image_mask: (B, L) bool, True at image slots. truncated: samples shortened to fit ``max_length``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    labels: Tensor | None
    image_mask: Tensor
    truncated: int = 0


@dataclass
class VLMOutput:
    """What a training forward gives back.

    loss: () mean cross-entropy over answer tokens. logits: (B, K, V) at ``positions`` (K sequence
    positions that predict an answer token). answer_tokens: () how many answer tokens were scored;
    correct_tokens: () how many of them the argmax got right.
    """

    loss: Tensor
    logits: Tensor
    positions: Tensor
    answer_tokens: Tensor
    correct_tokens: Tensor


def answer_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Return the mean next-token cross-entropy over positions whose label is not -100, and their count.

    logits: (B, L, V) at every position; labels: (B, L). Position t predicts label t + 1 (the usual shift).
    """
    targets = labels[:, 1:]
    count = (targets != IGNORE_INDEX).sum()
    total = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total / count.clamp_min(1), count


def _as_lm(lm: Any, tokenizer: TextTokenizer | str | None) -> tuple[nn.Module, TextTokenizer]:
    if isinstance(lm, nn.Module):
        if tokenizer is None:
            raise ConfigError("tokenizer: pass the language model's tokenizer (or 'byte' / 'wordpiece' / a directory)")
        return lm, tokenizer if not isinstance(tokenizer, (str, Path)) else load_tokenizer(tokenizer)
    if isinstance(lm, (str, Path)):
        is_dir = Path(str(lm)).expanduser().is_dir()
        lm = LanguageModelConfig(dir=str(lm)) if is_dir else LanguageModelConfig(hub=str(lm))
    elif isinstance(lm, Mapping):
        lm = from_dict(LanguageModelConfig, lm, where="model.lm")
    if not isinstance(lm, LanguageModelConfig):
        raise ConfigError(f"lm: expected a causal LM module, a directory, a hub name or an LM config, got {type(lm).__name__}")
    model, own = load_language_model(lm)
    if tokenizer is None:
        return model, own
    return model, tokenizer if not isinstance(tokenizer, (str, Path)) else load_tokenizer(tokenizer)


class VisionLanguageModel(nn.Module):
    """Image encoder -> projector -> any Hugging Face causal LM, with a prompt template.

    Args:
        image_encoder: a medfuse image encoder (e.g. ``ENCODERS["timm"]``) giving ``EncoderOutput`` with tokens
            (without tokens the pooled vector is used as one token).
        lm: a causal LM module, a local model directory, a hub name (needs network), or a
            :class:`LanguageModelConfig` (mapping) such as ``{config: {arch: llama, hidden_size: 256}}``.
        tokenizer: the LM's tokenizer (required with a module); default: the one ``lm`` comes with.
        projector: ``linear`` | ``mlp`` | ``qformer`` or a :class:`Projector` module.
        num_queries: learned queries of the ``qformer`` projector (Q).
        projector_params: further projector arguments (``hidden``, ``width``, ``layers``, ``heads``, ...).
        template: a :class:`ChatTemplate` or its fields.
        max_length: longest sequence (prompt + image + answer); longer samples lose context text first.
    """

    def __init__(self, image_encoder: nn.Module, lm: Any, tokenizer: TextTokenizer | str | None = None, *,
                 projector: str | Projector = "mlp", num_queries: int = 32, projector_params: Mapping[str, Any] | None = None,
                 template: ChatTemplate | Mapping[str, Any] | None = None, max_length: int = 512) -> None:
        super().__init__()
        self.image_encoder: Any = image_encoder
        self.lm: Any
        self.tokenizer: TextTokenizer
        self.lm, self.tokenizer = _as_lm(lm, tokenizer)
        self.template = template if isinstance(template, ChatTemplate) else from_dict(ChatTemplate, template or {}, where="template")
        encoder: Any = image_encoder  # any Encoder: token_dim when it gives tokens, else output_dim
        in_dim = int(getattr(encoder, "token_dim", 0) or encoder.output_dim)
        if isinstance(projector, str):
            projector = build_projector(projector, in_dim, self.lm_dim, num_queries, **dict(projector_params or {}))
        self.projector = projector
        if max_length < 8:
            raise ConfigError(f"max_length: expected >= 8, got {max_length}")
        self.max_length = int(max_length)
        self.vlm_config: Any = None  # set by build_vlm; save_vlm needs it
        self._keep_logits = accepts_logits_to_keep(self.lm)

    @property
    def lm_dim(self) -> int:
        """Width of the LM's input vectors."""
        return int(self.lm.get_input_embeddings().embedding_dim)

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the LM's (and, where supported, the image tower's) activations in the backward pass."""
        # transformers 5 renamed the switch; older releases only have gradient_checkpointing_*
        on = getattr(self.lm, "activation_checkpointing_enable", None)
        off = getattr(self.lm, "activation_checkpointing_disable", None)
        if enable and on is not None:
            on(activation_checkpointing_kwargs={"use_reentrant": False})
        elif enable:
            self.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            (off or self.lm.gradient_checkpointing_disable)()
        setter = getattr(self.image_encoder, "set_grad_checkpointing", None)
        if callable(setter):
            try:
                setter(enable)
            except ConfigError as exc:
                log.info("image encoder keeps its activations: %s", exc)

    # ------------------------------------------------------------------ inputs
    def encode_images(self, images: Tensor) -> Tensor:
        """Return the projected image vectors ``(B, Q, D_lm)`` for images ``(B, C, H, W)``."""
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.image_encoder.parameters())
        with torch.set_grad_enabled(trains):  # a frozen tower keeps no activations
            out = self.image_encoder(images.to(self.device))
        tokens = out.tokens if out.tokens is not None else out.pooled.unsqueeze(1)
        weight = next(self.projector.parameters())
        embeds = self.projector(tokens.to(weight.dtype), out.token_mask)
        return embeds.to(self.lm.get_input_embeddings().weight.dtype)

    def encode_prompts(self, questions: Sequence[str], contexts: Sequence[str | None] | None = None) -> list[PromptIds]:
        """Return each question's tokenised prompt (with its context when given)."""
        contexts = list(contexts) if contexts is not None else [None] * len(questions)
        if len(contexts) != len(questions):
            raise ValueError(f"{len(contexts)} contexts for {len(questions)} questions")
        return [self.template.encode_prompt(self.tokenizer, str(q), c) for q, c in zip(questions, contexts)]

    def build_inputs(self, num_image_tokens: int, questions: Sequence[str], answers: Sequence[str] | None = None,
                     contexts: Sequence[str | None] | None = None, *, padding: str = "right") -> MultimodalInputs:
        """Return the tokenised batch: ``[bos] before <image x Q> after [answer eos]``, padded on ``padding``."""
        if padding not in ("left", "right"):
            raise ConfigError(f"padding: expected 'left' or 'right', got {padding!r}")
        if answers is not None and len(answers) != len(questions):
            raise ValueError(f"{len(answers)} answers for {len(questions)} questions")
        prompts = self.encode_prompts(questions, contexts)
        rows: list[tuple[list[int], list[int]]] = []
        truncated = 0
        for i, prompt in enumerate(prompts):
            answer = self.template.encode_answer(self.tokenizer, str(answers[i])) if answers is not None else []
            ids, labels, cut = self._assemble(prompt, num_image_tokens, answer)
            truncated += cut
            rows.append((ids, labels))
        if truncated:
            log.debug("%d of %d samples shortened to max_length=%d", truncated, len(rows), self.max_length)
        width = max(len(ids) for ids, _ in rows)
        pad = int(self.tokenizer.pad_id)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        label_ids = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, labs) in enumerate(rows):
            span = slice(width - len(ids), width) if padding == "left" else slice(0, len(ids))
            input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
            label_ids[i, span] = torch.tensor(labs, dtype=torch.long)
            mask[i, span] = 1
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        device = self.device
        return MultimodalInputs(input_ids.to(device), mask.to(device), positions.to(device),
                                label_ids.to(device) if answers is not None else None,
                                (input_ids == IMAGE_SLOT).to(device), truncated)

    def _assemble(self, prompt: PromptIds, n_image: int, answer: list[int]) -> tuple[list[int], list[int], int]:
        before, after = prompt.before, prompt.after
        room = self.max_length - len(before) - n_image
        if room < 2:
            raise ConfigError(f"max_length: {self.max_length} leaves no room after {n_image} image tokens and a "
                              f"{len(before)}-token prompt start; raise it")
        cut = 0
        if len(after) + len(answer) > room:  # context text goes first (the question and cue are at the end)
            cut = 1
            keep_after = max(min(len(after), room - len(answer)), min(len(after), room // 2))
            after = after[len(after) - keep_after:]
            answer = answer[: room - len(after)]
        ids = before + [IMAGE_SLOT] * n_image + after + answer
        labels = [IGNORE_INDEX] * (len(ids) - len(answer)) + answer
        return ids, labels, cut

    def embed(self, inputs: MultimodalInputs, image_embeds: Tensor) -> Tensor:
        """Return ``inputs_embeds`` ``(B, L, D_lm)``: token embeddings with the image vectors in their slots."""
        table = self.lm.get_input_embeddings()
        embeds = table(inputs.input_ids.clamp_min(0))
        slots = inputs.image_mask.sum(1)
        if bool((slots != image_embeds.shape[1]).any()):
            raise ValueError(f"{image_embeds.shape[1]} image vectors per sample but {slots.tolist()} image slots")
        return embeds.masked_scatter(inputs.image_mask.unsqueeze(-1), image_embeds.to(embeds.dtype))

    def run_lm(self, embeds: Tensor, inputs: MultimodalInputs, keep: Tensor | None = None, **kwargs: Any) -> Any:
        """Run the LM on ``embeds``; logits only at sequence positions ``keep`` ``(K,)`` when given."""
        out = self.lm(inputs_embeds=embeds, attention_mask=inputs.attention_mask, position_ids=inputs.position_ids,
                      **({"logits_to_keep": keep} if keep is not None and self._keep_logits else {}), **kwargs)
        if keep is not None and not self._keep_logits:
            out.logits = out.logits[:, keep]
        return out

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor, questions: Sequence[str], answers: Sequence[str],
                contexts: Sequence[str | None] | None = None) -> VLMOutput:
        """Return the answer-token loss of ``answers`` to ``questions`` about ``images`` ``(B, C, H, W)``."""
        image_embeds = self.encode_images(images)
        inputs = self.build_inputs(image_embeds.shape[1], questions, answers, contexts, padding="right")
        assert inputs.labels is not None
        positions = (inputs.labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(1)
        out = self.run_lm(self.embed(inputs, image_embeds), inputs, keep=positions, use_cache=False)
        targets = inputs.labels[:, positions + 1]
        logits = out.logits
        valid = targets != IGNORE_INDEX
        count = valid.sum()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum") / count.clamp_min(1)
        correct = ((logits.detach().argmax(-1) == targets) & valid).sum()
        return VLMOutput(loss, logits, positions, count, correct)

    def sequence_logprobs(self, image_embeds: Tensor, questions: Sequence[str], answers: Sequence[str],
                          contexts: Sequence[str | None] | None = None) -> tuple[Tensor, Tensor]:
        """Return each answer's summed log-probability (answer tokens and eos) ``(R,)`` and its token count ``(R,)``.

        image_embeds: ``(R, Q, D_lm)`` from :meth:`encode_images`, one row per (question, answer) pair.
        """
        inputs = self.build_inputs(image_embeds.shape[1], questions, answers, contexts, padding="right")
        assert inputs.labels is not None
        positions = (inputs.labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(1)
        out = self.run_lm(self.embed(inputs, image_embeds), inputs, keep=positions, use_cache=False)
        targets = inputs.labels[:, positions + 1]
        valid = targets != IGNORE_INDEX
        logp = out.logits.float().log_softmax(-1).gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        return (logp * valid).sum(1), valid.sum(1)


__all__ = ["IGNORE_INDEX", "IMAGE_SLOT", "MultimodalInputs", "VLMOutput", "VisionLanguageModel", "answer_loss"]
