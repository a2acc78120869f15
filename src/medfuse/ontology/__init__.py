"""A small medical ontology and what it is for: zero-shot prompts and their explanations.

- :mod:`~medfuse.ontology.ontology`: concepts (findings, anatomy, modalities) with synonyms, is-a
  parents, sites, modalities and terminology sources, loaded from ``data/medical.yaml``.
- :mod:`~medfuse.ontology.prompts`: a class name -> templates x synonyms x parent/child terms, positive and
  negative, as a :class:`PromptBank` or the ``zero_shot`` task's ``PromptSet``.
- :mod:`~medfuse.ontology.explain`: exact per-prompt contributions to a zero-shot logit, summed by concept.

The package sits above ``evaluate`` (it builds its prompt sets and reuses its text embedding); nothing in
``data``, ``models`` or ``evaluate`` imports it.
"""

from medfuse.ontology.explain import (
    ConceptContribution,
    PromptContribution,
    ZeroShotExplainer,
    ZeroShotExplanation,
)
from medfuse.ontology.ontology import (
    KINDS,
    Concept,
    Ontology,
    default_ontology_path,
    load_ontology,
    normalize_term,
    ontology_from_mapping,
)
from medfuse.ontology.prompts import (
    DEFAULT_TEMPLATES,
    Prompt,
    PromptBank,
    PromptOptions,
    build_prompts,
    class_phrases,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "KINDS",
    "Concept",
    "ConceptContribution",
    "Ontology",
    "Prompt",
    "PromptBank",
    "PromptContribution",
    "PromptOptions",
    "ZeroShotExplainer",
    "ZeroShotExplanation",
    "build_prompts",
    "class_phrases",
    "default_ontology_path",
    "load_ontology",
    "normalize_term",
    "ontology_from_mapping",
]
