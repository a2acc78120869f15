"""Tokenizers for generative models, behind one small interface.

A language model's own Hugging Face tokenizer (from its directory) and a byte-level tokenizer (for small
models trained from scratch, no files needed) both map text to ids and back and name their special ids.
Prompts are assembled from pieces, so encoding never adds special tokens; the bridge adds them itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medfuse.core.errors import ConfigError
from medfuse.models.encoders.text import ByteTokenizer

MARKER_FILE = "medfuse_tokenizer.json"  # written next to a byte tokenizer, which has no files of its own


@runtime_checkable
class TextTokenizer(Protocol):
    """What the bridge and the decoders need of a tokenizer."""

    vocab_size: int
    bos_id: int | None
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Return the ids of ``text`` without special tokens."""

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids``, special tokens left out."""

    def save(self, directory: Path) -> None:
        """Write what :func:`load_tokenizer` needs to rebuild this tokenizer into ``directory``."""


class ByteLevelTokenizer:
    """UTF-8 bytes as tokens (the ids of :class:`medfuse.models.encoders.ByteTokenizer`): vocabulary 259."""

    kind = "byte"

    def __init__(self) -> None:
        self.vocab_size = ByteTokenizer.vocab_size
        self.bos_id: int | None = ByteTokenizer.bos_id
        self.eos_id = ByteTokenizer.eos_id
        self.pad_id = ByteTokenizer.pad_id
        self._offset = ByteTokenizer.offset

    def encode(self, text: str) -> list[int]:
        """Return one id per UTF-8 byte of ``text``."""
        return [b + self._offset for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of the byte ids (special ids skipped; broken UTF-8 shown as U+FFFD)."""
        data = bytes(int(i) - self._offset for i in ids if self._offset <= int(i) < self.vocab_size)
        return data.decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        """Write the marker file that names this tokenizer."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MARKER_FILE).write_text(json.dumps({"kind": self.kind}) + "\n", encoding="utf-8")


class HFTokenizer:
    """A Hugging Face tokenizer seen through :class:`TextTokenizer`.

    Models without a beginning-of-sequence token (GPT-2 has one; WordPiece vocabularies have ``[CLS]``)
    start without one; the end-of-sequence id falls back to ``[SEP]`` and padding to end-of-sequence.
    """

    kind = "hf"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        bos = tokenizer.bos_token_id
        self.bos_id = bos if bos is not None else tokenizer.cls_token_id
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if eos is None:
            raise ConfigError(
                f"tokenizer: {type(tokenizer).__name__} has no end-of-sequence token (eos_token or sep_token); "
                "set one in its tokenizer_config.json"
            )
        self.eos_id = int(eos)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.eos_id

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template (instruction-tuned models do)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        """Return the ids of ``text`` without special tokens added."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids`` with special tokens skipped and spacing left as the tokens give it."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def save(self, directory: Path) -> None:
        """Write the tokenizer files with ``save_pretrained``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))


def load_tokenizer(source: str | Path | None) -> TextTokenizer:
    """Return the tokenizer named by ``source``.

    ``"byte"``: :class:`ByteLevelTokenizer`; ``"wordpiece"`` or None: the packaged MiniLM's uncased WordPiece
    vocabulary; a directory: the byte tokenizer when it holds the marker file, else its Hugging Face tokenizer.
    """
    from medfuse.models.encoders.text import packaged_minilm_dir

    if source == "byte":
        return ByteLevelTokenizer()
    directory = packaged_minilm_dir() if source in (None, "wordpiece") else Path(str(source))
    if (directory / MARKER_FILE).is_file():
        kind = json.loads((directory / MARKER_FILE).read_text(encoding="utf-8")).get("kind")
        if kind == "byte":
            return ByteLevelTokenizer()
        raise ConfigError(f"{directory / MARKER_FILE}: unknown tokenizer kind {kind!r}; expected 'byte'")
    if not directory.is_dir():
        raise ConfigError(f"tokenizer: {directory} is not a directory; use 'byte', 'wordpiece' or a tokenizer directory")
    from transformers import AutoTokenizer

    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(str(directory), local_files_only=True))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokenizer: could not load a tokenizer from {directory}: {exc}") from None


__all__ = ["MARKER_FILE", "ByteLevelTokenizer", "HFTokenizer", "TextTokenizer", "load_tokenizer"]
