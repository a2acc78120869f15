"""Text generation from a :class:`VisionLanguageModel`: greedy, beam search, sampling, streaming, choosing.

Batches are left-padded so every row's next token sits at the last position; each row's position ids
count only its real tokens, so a row decodes the same alone or in a batch. The LM's key/value cache is
reused between steps (beam search reorders it). ``stop`` strings end a row as soon as its text contains
one (the text is cut before it). :func:`stream` yields text pieces as they become final; joined they are
exactly what :func:`generate` returns. :func:`answer` answers closed questions by scoring each candidate
answer's log-likelihood and picking the best, and open questions by generation.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from medfuse.core.config import from_dict
from medfuse.core.errors import ConfigError
from medfuse.models.generative.tokenizer import TextTokenizer


@dataclass
class GenerationConfig:
    """Decoding settings.

    max_new_tokens: longest answer. num_beams > 1: beam search (scores ``logp / length ** length_penalty``,
    stops once ``num_beams`` hypotheses ended). do_sample: sample with ``temperature``, ``top_k`` (0: off)
    and nucleus ``top_p`` (1: off); ``seed`` makes the draws repeatable. stop: strings that end the text.
    """

    max_new_tokens: int = 32
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ConfigError(f"num_beams: expected >= 1, got {self.num_beams}")
        if self.do_sample and self.num_beams > 1:
            raise ConfigError("do_sample: sampling and beam search do not combine; set num_beams=1 or do_sample=false")
        if not self.temperature > 0:
            raise ConfigError(f"temperature: expected > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: expected in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k: expected >= 0, got {self.top_k}")
        if any(not s for s in self.stop):
            raise ConfigError("stop: stop strings must be non-empty")


@dataclass
class Generated:
    """Generated answers: texts, their token ids (eos left out) and summed token log-probabilities."""

    texts: list[str]
    token_ids: list[list[int]]
    scores: list[float]


def _config(config: GenerationConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> GenerationConfig:
    cfg = config if isinstance(config, GenerationConfig) else from_dict(GenerationConfig, config or {}, where="generation")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


@contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode inside the block and restore each one's own mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


class _Text:
    """One row's running text: where a stop string cuts it, and which part can be shown while streaming."""

    def __init__(self, tokenizer: TextTokenizer, stops: Sequence[str]) -> None:
        self.tokenizer, self.stops = tokenizer, list(stops)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self.shown = ""

    def add(self, token: int) -> None:
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids).lstrip()
        cuts = [i for i in (text.find(s) for s in self.stops) if i != -1]
        if cuts:
            text, self.stopped = text[: min(cuts)], True
        self.text = text

    def final(self) -> str:
        return self.text.strip()

    def pending(self, finished: bool) -> str:
        """Return the text not shown yet that later tokens can no longer change (everything when finished)."""
        safe = self.final() if finished else self.text[: len(self.text) - self.hold].rstrip().rstrip("\ufffd")
        if len(safe) <= len(self.shown) or not safe.startswith(self.shown):
            return ""
        piece, self.shown = safe[len(self.shown):], safe
        return piece


class _Cache:
    """The LM's key/value cache for R rows, with their attention mask and last position ids."""

    def __init__(self, model: Any, past: Any, mask: Tensor, last: Tensor) -> None:
        self.model, self.past, self.mask, self.last = model, past, mask, last

    @torch.no_grad()
    def advance(self, tokens: Tensor) -> Tensor:
        """Feed one token per row; return the next logits ``(R, V)``."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.last = self.last + 1
        out = self.model.lm(input_ids=tokens.unsqueeze(1), attention_mask=self.mask, position_ids=self.last.unsqueeze(1),
                            past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[:, -1].float()

    def select(self, rows: Tensor) -> None:
        """Keep rows ``rows`` (with repeats) in that order."""
        self.past.reorder_cache(rows)
        self.mask, self.last = self.mask[rows], self.last[rows]


@torch.no_grad()
def _prefill(model: Any, images: Tensor, questions: Sequence[str], contexts: Sequence[str | None] | None) -> tuple[_Cache, Tensor]:
    image_embeds = model.encode_images(images)
    inputs = model.build_inputs(image_embeds.shape[1], questions, None, contexts, padding="left")
    last = torch.full((1,), inputs.input_ids.shape[1] - 1, dtype=torch.long, device=inputs.input_ids.device)
    out = model.run_lm(model.embed(inputs, image_embeds), inputs, keep=last, use_cache=True)
    return _Cache(model, out.past_key_values, inputs.attention_mask, inputs.position_ids[:, -1]), out.logits[:, -1].float()


def _pick(logits: Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    """Return the next token per row: argmax, or a draw after temperature, top-k and top-p filtering."""
    if not cfg.do_sample:
        return logits.argmax(-1)
    z = logits / cfg.temperature
    if cfg.top_k:
        kth = z.topk(min(cfg.top_k, z.shape[-1]), dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if cfg.top_p < 1:
        sorted_z, order = z.sort(dim=-1, descending=True)
        probs = sorted_z.softmax(-1)
        drop = probs.cumsum(-1) - probs >= cfg.top_p  # keep the smallest set whose mass reaches top_p
        z = z.scatter(-1, order, sorted_z.masked_fill(drop, float("-inf")))
    return torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(1)


def _as_batch(images: Tensor, questions: Sequence[str] | str) -> tuple[Tensor, list[str]]:
    if isinstance(questions, str):
        questions = [questions]
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.shape[0] != len(questions):
        raise ValueError(f"{images.shape[0]} images for {len(questions)} questions")
    return images, list(questions)


def _sampling_steps(model: Any, images: Tensor, questions: list[str], contexts: Sequence[str | None] | None,
                    cfg: GenerationConfig) -> Iterator[tuple[list[_Text], list[bool], list[float]]]:
    """Yield every row's text, done flag and score after each greedy or sampled step."""
    tok = model.tokenizer
    cache, logits = _prefill(model, images, questions, contexts)
    generator = None
    if cfg.do_sample and cfg.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(cfg.seed)
    texts = [_Text(tok, cfg.stop) for _ in questions]
    done = [False] * len(questions)
    scores = [0.0] * len(questions)
    for step in range(cfg.max_new_tokens):
        tokens = _pick(logits, cfg, generator)
        logp = logits.log_softmax(-1).gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
        for i, token in enumerate(tokens.tolist()):
            if done[i]:
                continue
            scores[i] += logp[i]
            if token == tok.eos_id:
                done[i] = True
            else:
                texts[i].add(token)
                done[i] = texts[i].stopped
        yield texts, done, scores
        if all(done) or step == cfg.max_new_tokens - 1:
            return
        finished = torch.tensor(done, device=tokens.device)
        logits = cache.advance(torch.where(finished, torch.full_like(tokens, tok.pad_id), tokens))


def _beam_search(model: Any, images: Tensor, questions: list[str], contexts: Sequence[str | None] | None,
                 cfg: GenerationConfig) -> Generated:
    tok, beams = model.tokenizer, cfg.num_beams
    cache, logits = _prefill(model, images, questions, contexts)
    batch = len(questions)
    cache.select(torch.arange(batch, device=logits.device).repeat_interleave(beams))
    logits = logits.repeat_interleave(beams, 0)
    scores = torch.zeros(batch, beams, device=logits.device)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    running: list[_Text] = [_Text(tok, cfg.stop) for _ in range(batch * beams)]
    ended: list[list[tuple[float, float, _Text]]] = [[] for _ in range(batch)]

    def end(b: int, text: _Text, score: float, length: int) -> None:
        ended[b].append((score / max(length, 1) ** cfg.length_penalty, score, text))

    for step in range(cfg.max_new_tokens):
        vocab = logits.shape[-1]
        cand = (scores.view(-1, 1) + logits.log_softmax(-1)).view(batch, beams * vocab)
        top_scores, top_index = cand.topk(2 * beams, dim=1)
        rows, tokens, kept = [], [], []
        for b in range(batch):
            chosen = 0
            for rank, (score, index) in enumerate(zip(top_scores[b].tolist(), top_index[b].tolist())):
                if len(ended[b]) >= beams or chosen == beams or score == float("-inf"):
                    break
                row, token = b * beams + index // vocab, index % vocab
                if token == tok.eos_id:
                    if rank < beams:
                        end(b, running[row], score, len(running[row].ids) + 1)
                    continue
                text = _Text(tok, cfg.stop)
                text.ids, text.text = list(running[row].ids), running[row].text
                text.add(token)
                if text.stopped:
                    end(b, text, score, len(text.ids))
                    continue
                rows.append(row)
                tokens.append(token)
                kept.append((text, score))
                chosen += 1
            for _ in range(beams - chosen):  # finished items keep placeholder beams that never win
                rows.append(b * beams)
                tokens.append(tok.pad_id)
                kept.append((_Text(tok, cfg.stop), float("-inf")))
        if all(len(e) >= beams for e in ended) or step == cfg.max_new_tokens - 1:
            break
        running = [t for t, _ in kept]
        scores = torch.tensor([s for _, s in kept], device=logits.device).view(batch, beams)
        cache.select(torch.tensor(rows, device=logits.device))
        logits = cache.advance(torch.tensor(tokens, device=logits.device))
    for b in range(batch):
        if len(ended[b]) < beams:  # out of tokens: running beams compete as they are
            for text, score in kept[b * beams:(b + 1) * beams]:
                if score > float("-inf"):
                    end(b, text, score, len(text.ids))
    best = [max(e, key=lambda item: item[0]) for e in ended]
    return Generated([t.final() for _, _, t in best], [list(t.ids) for _, _, t in best], [s for _, s, _ in best])


def generate(model: Any, images: Tensor, questions: Sequence[str] | str, contexts: Sequence[str | None] | None = None,
             config: GenerationConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Generated:
    """Return the model's answers to ``questions`` about ``images`` ``(B, C, H, W)`` (batched, left-padded).

    ``config`` (or keyword overrides such as ``num_beams=4``, ``stop=["\\n"]``) picks the decoding.
    """
    cfg = _config(config, overrides)
    images, questions = _as_batch(images, questions)
    with inference_mode(model):
        if cfg.num_beams > 1:
            return _beam_search(model, images, questions, contexts, cfg)
        # the last step's state holds every row's final text and score (max_new_tokens >= 1: one step at least)
        texts, _, scores = deque(_sampling_steps(model, images, questions, contexts, cfg), maxlen=1)[0]
    return Generated([t.final() for t in texts], [list(t.ids) for t in texts], list(scores))


def stream(model: Any, image: Tensor, question: str, context: str | None = None,
           config: GenerationConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Iterator[str]:
    """Yield the answer to one question in pieces as they become final (greedy or sampling).

    ``"".join(stream(...))`` equals ``generate(...).texts[0]`` for the same settings.
    """
    cfg = _config(config, overrides)
    if cfg.num_beams > 1:
        raise ConfigError("num_beams: beam search cannot stream (its best answer is known only at the end); use 1")
    images, questions = _as_batch(image, question)
    with inference_mode(model):  # eval mode only: gradients are off inside each step, not across yields
        text: _Text | None = None
        for texts, done, _ in _sampling_steps(model, images, questions, None if context is None else [context], cfg):
            text = texts[0]
            piece = text.pending(done[0])
            if piece:
                yield piece
        if text is not None:
            piece = text.pending(True)
            if piece:
                yield piece


@torch.no_grad()
def score_candidates(model: Any, images: Tensor, questions: Sequence[str], candidates: Sequence[Sequence[str] | None],
                     contexts: Sequence[str | None] | None = None, *, length_normalize: bool = False,
                     batch_size: int = 64) -> list[list[float]]:
    """Return, per question, each candidate answer's log-likelihood (summed over its tokens and eos).

    ``length_normalize`` divides by the token count (favours longer answers less than the sum does).
    """
    images, questions = _as_batch(images, questions)
    if len(candidates) != len(questions):
        raise ValueError(f"{len(candidates)} candidate lists for {len(questions)} questions")
    pairs = [(i, str(c)) for i, cands in enumerate(candidates) for c in (cands or [])]
    out: list[list[float]] = [[] for _ in questions]
    with inference_mode(model):
        image_embeds = model.encode_images(images)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            rows = torch.tensor([i for i, _ in chunk], device=image_embeds.device)
            ctx = [contexts[i] for i, _ in chunk] if contexts is not None else None
            logp, count = model.sequence_logprobs(image_embeds[rows], [questions[i] for i, _ in chunk],
                                                  [c for _, c in chunk], ctx)
            values = (logp / count.clamp_min(1)) if length_normalize else logp
            for (i, _), v in zip(chunk, values.tolist()):
                out[i].append(float(v))
    return out


def answer(model: Any, images: Tensor, questions: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None,
           contexts: Sequence[str | None] | None = None, config: GenerationConfig | Mapping[str, Any] | None = None,
           *, length_normalize: bool = False) -> list[str]:
    """Return one answer per question: the likeliest candidate where candidates are given, else generated text."""
    images, questions = _as_batch(images, questions)
    candidates = list(candidates) if candidates is not None else [None] * len(questions)
    answers = [""] * len(questions)
    closed = [i for i, c in enumerate(candidates) if c]
    free = [i for i, c in enumerate(candidates) if not c]
    if closed:
        sel = torch.tensor(closed, device=images.device)
        scores = score_candidates(model, images[sel], [questions[i] for i in closed], [candidates[i] for i in closed],
                                  [contexts[i] for i in closed] if contexts is not None else None,
                                  length_normalize=length_normalize)
        for i, s in zip(closed, scores):
            answers[i] = str(candidates[i][max(range(len(s)), key=s.__getitem__)])  # type: ignore[index]
    if free:
        sel = torch.tensor(free, device=images.device)
        out = generate(model, images[sel], [questions[i] for i in free],
                       [contexts[i] for i in free] if contexts is not None else None, config)
        for i, text in zip(free, out.texts):
            answers[i] = text
    return answers


__all__ = ["GenerationConfig", "Generated", "answer", "generate", "inference_mode", "score_candidates", "stream"]
