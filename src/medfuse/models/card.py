"""Model cards: what a model is for, what it learned from, where it fails, how well it does.

After Mitchell et al., "Model Cards for Model Reporting", FAT* 2019. A card travels inside a checkpoint's
``config.json`` and is rendered to the checkpoint's ``MODEL_CARD.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medfuse.core.config import from_dict, to_dict


@dataclass
class ModelCard:
    """The model card's sections; every field is optional text except ``metrics`` (name -> value)."""

    name: str = ""
    description: str = ""
    intended_use: str = ""
    out_of_scope_use: str = ""
    data: str = ""
    limitations: str = ""
    ethical_considerations: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    authors: str = ""
    license: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the card as plain JSON-ready data."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ModelCard:
        """Return a card from :meth:`to_dict` output; unknown keys raise ``ConfigError``."""
        return from_dict(cls, data or {}, where="card")


def render_markdown(card: ModelCard | None, facts: Mapping[str, Any]) -> str:
    """Return a Markdown model card from ``card`` and the checkpoint's ``facts`` (architecture, labels, versions)."""
    card = card or ModelCard()
    title = card.name or "medfuse model"
    lines = [f"# {title}", ""]
    if card.description:
        lines += [card.description, ""]
    sections = [
        ("Intended use", card.intended_use),
        ("Out-of-scope use", card.out_of_scope_use),
        ("Training data", card.data),
        ("Limitations", card.limitations),
        ("Ethical considerations", card.ethical_considerations),
    ]
    for heading, text in sections:
        lines += [f"## {heading}", "", text or "_Not stated._", ""]
    lines += ["## Metrics", ""]
    if card.metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_number(value)} |" for name, value in card.metrics.items()]
    else:
        lines.append("_None reported._")
    lines += ["", "## Model facts", ""]
    for key, value in facts.items():
        lines.append(f"- **{key}**: {value}")
    if card.authors or card.license:
        lines += ["", f"Authors: {card.authors or '-'}. License: {card.license or '-'}."]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
