"""The language model of a vision-language model: a local directory, a hub name, or a config from scratch.

``dir``     a Hugging Face causal LM saved on disk (``config.json``, weights, tokenizer files); loaded with
            ``AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)``. Nothing reaches a network.
``hub``     a model name on the Hugging Face Hub; downloads only when the user is online (or reads the
            local cache with ``HF_HUB_OFFLINE=1``).
``config``  a small causal LM built from sizes and trained from scratch: ``{arch: llama | gpt2 | <any
            transformers model type>, hidden_size, layers, heads, kv_heads, intermediate_size,
            max_positions, dropout, tie_embeddings, extra: {...}}``; its tokenizer is ``tokenizer`` (default:
            the packaged MiniLM WordPiece vocabulary, or ``byte``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.encoders.text import quiet_hf_loading
from medfuse.models.generative.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SCRATCH_KEYS = {"arch", "hidden_size", "layers", "heads", "kv_heads", "intermediate_size", "max_positions",
                 "dropout", "tie_embeddings", "extra"}


@dataclass
class LanguageModelConfig:
    """Where the language model comes from: exactly one of ``dir``, ``hub`` and ``config``.

    tokenizer: ``byte``, ``wordpiece`` or a tokenizer directory; default: the model directory's (``dir``,
        ``hub``) or the packaged WordPiece vocabulary (``config``).
    dtype: weights' dtype (``float32``, ``bfloat16``, ``float16``); bf16 halves the memory of a large LM.
    attn_implementation: transformers' attention kernel (``sdpa``, ``eager``, ``flash_attention_2``).
    """

    dir: str | None = None
    hub: str | None = None
    config: dict[str, Any] | None = None
    tokenizer: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        given = [k for k in ("dir", "hub") if getattr(self, k)] + (["config"] if self.config is not None else [])
        if len(given) != 1:
            raise ConfigError(
                "model.lm: set exactly one of dir (a local model directory), hub (a hub name, needs network) or "
                f"config (sizes of a small LM trained from scratch); got {given or 'none'}"
            )
        check_choice("model.lm.dtype", self.dtype, list(DTYPES))
        if self.config is not None:
            unknown = sorted(set(self.config) - _SCRATCH_KEYS)
            if unknown:
                raise ConfigError(f"model.lm.config: unknown keys {unknown}; known: {sorted(_SCRATCH_KEYS)}")


def scratch_config(spec: Mapping[str, Any], tokenizer: TextTokenizer) -> Any:
    """Return a transformers config for a small causal LM of the sizes in ``spec`` and the tokenizer's vocabulary."""
    from transformers import AutoConfig, GPT2Config
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    arch = str(spec.get("arch", "llama"))
    width = int(spec.get("hidden_size", 256))
    layers = int(spec.get("layers", 4))
    heads = int(spec.get("heads", 4))
    if width % heads:
        raise ConfigError(f"model.lm.config.hidden_size: {width} is not divisible by heads={heads}")
    positions = int(spec.get("max_positions", 512))
    dropout = float(spec.get("dropout", 0.0))
    tie = bool(spec.get("tie_embeddings", True))
    special: dict[str, Any] = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    extra = dict(spec.get("extra") or {})
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=tokenizer.vocab_size, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
            n_inner=spec.get("intermediate_size"), resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
            tie_word_embeddings=tie, **special, **extra,
        )
    if arch not in CONFIG_MAPPING:
        from medfuse.core.registry import unknown_name_message

        raise ConfigError(f"model.lm.config.arch: {unknown_name_message('model type', arch, sorted(CONFIG_MAPPING.keys()))}")
    inter = int(spec.get("intermediate_size") or (8 * width // 3 + 63) // 64 * 64)  # SwiGLU's 8/3, rounded
    sizes: dict[str, Any] = {"vocab_size": tokenizer.vocab_size, "hidden_size": width, "num_hidden_layers": layers,
             "num_attention_heads": heads, "num_key_value_heads": int(spec.get("kv_heads", heads)),
             "intermediate_size": inter, "max_position_embeddings": positions, "tie_word_embeddings": tie}
    if dropout:
        sizes["attention_dropout"] = dropout
    return AutoConfig.for_model(arch, **sizes, **special, **extra)


def load_language_model(cfg: LanguageModelConfig, *, load_weights: bool = True) -> tuple[nn.Module, TextTokenizer]:
    """Return the causal LM and its tokenizer; ``load_weights=False`` builds the architecture only."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = DTYPES[cfg.dtype]
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": cfg.attn_implementation}
    if cfg.config is not None:
        tokenizer = load_tokenizer(cfg.tokenizer)
        config = scratch_config(cfg.config, tokenizer)
        return AutoModelForCausalLM.from_config(config, **kwargs), tokenizer
    if cfg.dir is not None:
        directory = Path(cfg.dir).expanduser()
        if not (directory / "config.json").is_file():
            raise ConfigError(f"model.lm.dir: {directory} has no config.json; point it at a Hugging Face model directory")
        tokenizer = load_tokenizer(cfg.tokenizer or directory)
        if not load_weights:
            config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            return AutoModelForCausalLM.from_config(config, **kwargs), tokenizer
        try:
            with quiet_hf_loading():
                lm = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.lm.dir: could not load a causal LM from {directory}: {exc}") from None
        return lm, tokenizer
    return _from_hub(str(cfg.hub), cfg, kwargs, load_weights)


def _from_hub(name: str, cfg: LanguageModelConfig, kwargs: dict[str, Any], load_weights: bool) -> tuple[nn.Module, TextTokenizer]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from medfuse.models.generative.tokenizer import HFTokenizer

    try:
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else HFTokenizer(AutoTokenizer.from_pretrained(name))
        if not load_weights:
            return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(name), **kwargs), tokenizer
        with quiet_hf_loading():
            return AutoModelForCausalLM.from_pretrained(name, **kwargs), tokenizer
    except OSError as exc:
        raise ConfigError(
            f"model.lm.hub: could not load '{name}' ({exc}); when offline, download it once and set model.lm.dir "
            "to the local folder"
        ) from None


def accepts_logits_to_keep(lm: nn.Module) -> bool:
    """Whether ``lm.forward`` can compute logits at chosen positions only (saves the vocabulary projection)."""
    try:
        return "logits_to_keep" in inspect.signature(lm.forward).parameters
    except (TypeError, ValueError):
        return False


def lora_target_names(lm: nn.Module) -> list[str]:
    """Return the names of the LM's attention and MLP projection layers (where LoRA adapters usually go)."""
    from transformers.pytorch_utils import Conv1D

    skip = {"lm_head", "embed_out", "output", "wte", "wpe", "embed_tokens", "score"}
    names = {n.rsplit(".", 1)[-1] for n, m in lm.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
    return sorted(names - skip)


__all__ = ["DTYPES", "LanguageModelConfig", "accepts_logits_to_keep", "load_language_model", "lora_target_names",
           "scratch_config"]
