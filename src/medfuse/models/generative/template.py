"""The prompt template: where the image tokens, the optional context and the question go.

A sample becomes ``[bos] before <image x Q> after [answer eos]``: ``before`` and ``after`` are the prompt
text on either side of the ``<image>`` placeholder, the answer follows the assistant cue. The default
layout follows LLaVA's conversation format (Liu et al., "Visual Instruction Tuning", NeurIPS 2023)::

    {system}
    USER: <image>
    Context: {context}          (only when context text is given: report history, vitals, ...)
    {question}
    ASSISTANT: {answer}</s>

``use_tokenizer_template`` instead formats the user turn with the language model's own chat template
(instruction-tuned models ship one), so a local chat model sees the layout it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from medfuse.core.errors import ConfigError
from medfuse.models.generative.tokenizer import HFTokenizer, TextTokenizer


@dataclass
class PromptIds:
    """A tokenised prompt: ids before and after the image placeholder (``bos`` already in ``before``)."""

    before: list[int]
    after: list[int]


@dataclass
class ChatTemplate:
    """Prompt layout.

    system: first line of every prompt (instructions to the model); empty for none.
    user: the user turn; must contain ``image_token`` once and ``{question}``; ``{context}`` is replaced by
        ``context`` formatted with the sample's context text (or by nothing when it has none).
    assistant: the cue after which the answer starts.
    context: how context text is shown inside the user turn.
    answer_prefix: text put before the answer when it is tokenised (a space, so BPE vocabularies see
        ``" left"`` as after a colon in running text).
    use_tokenizer_template: format system and user turns with the tokenizer's chat template instead.
    """

    system: str = "You are a careful medical imaging assistant. Answer the question about the image briefly."
    user: str = "USER: <image>\n{context}{question}"
    assistant: str = "\nASSISTANT:"
    context: str = "Context: {context}\n"
    answer_prefix: str = " "
    image_token: str = "<image>"
    use_tokenizer_template: bool = False

    def __post_init__(self) -> None:
        if not self.image_token:
            raise ConfigError("template.image_token: must be a non-empty placeholder such as '<image>'")
        if self.user.count(self.image_token) != 1:
            raise ConfigError(
                f"template.user: must contain the image placeholder {self.image_token!r} exactly once, got {self.user!r}"
            )
        if "{question}" not in self.user:
            raise ConfigError(f"template.user: must contain '{{question}}', got {self.user!r}")
        if "{context}" not in self.context:
            raise ConfigError(f"template.context: must contain '{{context}}', got {self.context!r}")

    def user_text(self, question: str, context: str | None = None) -> str:
        """Return the user turn with the question and (when given) the context filled in."""
        ctx = self.context.replace("{context}", context.strip()) if context and context.strip() else ""
        return self.user.replace("{context}", ctx).replace("{question}", question.strip())

    def prompt_text(self, question: str, context: str | None = None, tokenizer: TextTokenizer | None = None) -> tuple[str, str]:
        """Return the prompt text before and after the image placeholder."""
        user = self.user_text(question, context)
        if self.use_tokenizer_template:
            if not isinstance(tokenizer, HFTokenizer) or not tokenizer.has_chat_template:
                raise ConfigError("template.use_tokenizer_template: the language model's tokenizer has no chat template")
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
                {"role": "user", "content": user}
            ]
            text = str(tokenizer.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        else:
            text = (f"{self.system}\n" if self.system else "") + user + self.assistant
        before, _, after = text.partition(self.image_token)
        return before, after

    def encode_prompt(self, tokenizer: TextTokenizer, question: str, context: str | None = None) -> PromptIds:
        """Return the prompt's ids; ``bos`` leads unless the tokenizer's chat template writes its own."""
        before, after = self.prompt_text(question, context, tokenizer)
        head = [] if self.use_tokenizer_template or tokenizer.bos_id is None else [int(tokenizer.bos_id)]
        return PromptIds(head + tokenizer.encode(before), tokenizer.encode(after))

    def encode_answer(self, tokenizer: TextTokenizer, answer: str) -> list[int]:
        """Return the answer's ids followed by ``eos`` (what the model learns to produce)."""
        return tokenizer.encode(self.answer_prefix + answer.strip()) + [int(tokenizer.eos_id)]


__all__ = ["ChatTemplate", "PromptIds"]
