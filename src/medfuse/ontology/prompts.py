"""Zero-shot prompts from the ontology: templates x (synonyms, parent terms, child terms) per class.

Each class of a data set resolves to an ontology concept (:meth:`Ontology.find`). Its *phrases* are the
concept's preferred name and synonyms, its is-a parents (``"consolidation, a kind of lung opacity"``),
for anatomy its parts (``Thorax`` -> ``lung``, ``heart``, ...) and for findings where they are seen
(``"pneumonia in the lung"``). Every template is filled with every phrase, and the class embedding is the
mean of the prompts' normalised embeddings (CLIP's prompt ensembling, Radford et al. 2021, Sec. 3.1.4).
Negative prompts (``"no pneumonia"``, the concept's own negations) serve the positive/negative pairs
of CheXzero (Tiu et al. 2022): a softmax over ``(<x, pos>, <x, neg>)`` per label.

The result is a :class:`PromptBank`: every prompt keeps where it came from (concept, phrase, relation,
template), which :mod:`medfuse.ontology.explain` uses to say which concepts drove a prediction.
:meth:`PromptBank.to_prompt_set` gives the :class:`~medfuse.evaluate.tasks.zero_shot.PromptSet` of the
``zero_shot`` evaluation task (same prompts, same order), :meth:`PromptBank.to_mapping` its YAML form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.ontology.ontology import Concept, Ontology, load_ontology, normalize_term

if TYPE_CHECKING:
    from medfuse.evaluate.tasks.zero_shot import PromptSet

__all__ = ["DEFAULT_TEMPLATES", "Prompt", "PromptBank", "PromptOptions", "build_prompts", "class_phrases"]

log = logging.getLogger(__name__)

# Templates by the kind of concept the classes are; ``{label}`` is filled with each phrase.
DEFAULT_TEMPLATES: dict[str, list[str]] = {
    "finding": ["{label}", "a chest X-ray showing {label}", "findings consistent with {label}"],
    "anatomy": ["{label}", "a CT or MRI image of the {label}", "an axial slice through the {label}"],
    "modality": ["{label}", "a {label} image", "an image acquired with {label}"],
}
DEFAULT_NEGATIVE_TEMPLATES = ["no {label}", "no evidence of {label}"]
RELATIONS = ("name", "synonym", "parent", "child", "anatomy", "label")


@dataclass(frozen=True)
class Prompt:
    """One prompt and where it came from.

    text: the sentence encoded. label: the class it stands for. concept: the ontology concept whose term
    fills it (empty for a class without a concept). phrase: the filled-in words. relation: name | synonym
    | parent | child | anatomy | label (the class name itself) | negation. template: the sentence pattern
    (empty for a concept's own negation phrase). polarity: positive | negative.
    """

    text: str
    label: str
    concept: str
    phrase: str
    relation: str
    template: str
    polarity: str = "positive"


@dataclass
class PromptOptions:
    """What goes into a class's prompts.

    templates / negative_templates: sentences with ``{label}`` (None: :data:`DEFAULT_TEMPLATES` by kind,
    :data:`DEFAULT_NEGATIVE_TEMPLATES`). synonyms: use the concept's synonyms. parents: is-a levels used
    (0: none; roots such as "abnormal finding" are never used). parent_format: how a parent qualifies a
    term. children: for anatomy, add the parts' names and synonyms. anatomy: for findings, add "term in
    the site". negatives_from_normal: negative prompts also take the ``normal`` concept's phrases.
    max_phrases: keep at most this many phrases per class (name first; None: all). mode: the PromptSet's
    ``auto`` | ``softmax`` | ``pairs``.
    """

    templates: list[str] | None = None
    negative_templates: list[str] = field(default_factory=lambda: list(DEFAULT_NEGATIVE_TEMPLATES))
    synonyms: bool = True
    parents: int = 1
    parent_format: str = "{term}, a kind of {parent}"
    children: bool = True
    anatomy: bool = True
    anatomy_format: str = "{term} in the {anatomy}"
    negatives_from_normal: bool = True
    max_phrases: int | None = None
    mode: str = "auto"

    def __post_init__(self) -> None:
        check_choice("prompts.mode", self.mode, ("auto", "softmax", "pairs"))
        for where, templates in (("templates", self.templates or ["{label}"]),
                                 ("negative_templates", self.negative_templates)):
            if not templates or any("{label}" not in t for t in templates):
                raise ConfigError(f"prompts.{where}: every template must contain '{{label}}', got {templates}")
        if self.parents < 0:
            raise ConfigError(f"prompts.parents: expected an integer >= 0, got {self.parents}")
        if self.max_phrases is not None and self.max_phrases < 1:
            raise ConfigError(f"prompts.max_phrases: expected a positive integer or null, got {self.max_phrases}")
        if "{term}" not in self.parent_format or "{parent}" not in self.parent_format:
            raise ConfigError(f"prompts.parent_format: needs '{{term}}' and '{{parent}}', got {self.parent_format!r}")
        if "{term}" not in self.anatomy_format or "{anatomy}" not in self.anatomy_format:
            raise ConfigError(f"prompts.anatomy_format: needs '{{term}}' and '{{anatomy}}', got {self.anatomy_format!r}")


@dataclass
class PromptBank:
    """The prompts of every class, positive and negative, with their provenance; class order kept."""

    labels: list[str]
    templates: list[str]
    negative_templates: list[str]
    phrases: dict[str, list[tuple[str, str, str]]]  # label -> (phrase, concept id, relation)
    positives: dict[str, list[Prompt]]
    negatives: dict[str, list[Prompt]]
    concepts: dict[str, str | None]  # label -> concept id (None: no concept, the label text is used)
    mode: str = "auto"

    def texts(self, label: str, polarity: str = "positive") -> list[str]:
        """Return the prompt sentences of ``label`` (``positive`` or ``negative``) in order."""
        check_choice("polarity", polarity, ("positive", "negative"))
        table = self.positives if polarity == "positive" else self.negatives
        if label not in table:
            raise ConfigError(f"prompts: no class {label!r}; classes: {self.labels}")
        return [p.text for p in table[label]]

    def to_mapping(self, *, sentences: bool = False, negatives: bool = True) -> dict[str, Any]:
        """Return the ``PromptSet`` mapping (YAML ``prompts:`` of the ``zero_shot`` task) for these prompts.

        sentences: store each class's finished sentences with the template ``{label}`` (so classes of
        different kinds, e.g. body regions and modalities, share one mapping) instead of templates x
        phrases. negatives: include the negative prompts (needed for ``pairs`` mode only).
        """
        if sentences:
            out: dict[str, Any] = {"templates": ["{label}"],
                                   "class_prompts": {label: self.texts(label) for label in self.labels}}
        else:
            out = {"templates": list(self.templates),
                   "class_prompts": {label: [p for p, _, _ in self.phrases[label]] for label in self.labels}}
        if negatives:
            out["negative_templates"] = list(self.negative_templates)
            out["negative_prompts"] = {label: self.texts(label, "negative") for label in self.labels}
        out["mode"] = self.mode
        return out

    def to_prompt_set(self) -> PromptSet:
        """Return the :class:`PromptSet` whose positives and negatives are exactly this bank's prompts."""
        from medfuse.evaluate.tasks.zero_shot import PromptSet

        return PromptSet.from_mapping(self.to_mapping())


def _concept_for(onto: Ontology, label: str, aliases: Mapping[str, str]) -> Concept | None:
    if label in aliases:
        return onto[aliases[label]]
    return onto.find(label)


def class_phrases(onto: Ontology, concept: Concept, options: PromptOptions) -> list[tuple[str, str, str]]:
    """Return ``(phrase, concept id, relation)`` for a concept, name first, without repeated phrases."""
    out: list[tuple[str, str, str]] = [(concept.name, concept.id, "name")]
    if options.synonyms:
        out += [(s, concept.id, "synonym") for s in concept.terms()[1:]]
    if options.parents:
        level = [concept]
        for _ in range(options.parents):
            level = [p for c in level for p in onto.parents(c.id) if p.parents]  # roots say nothing
            out += [(options.parent_format.format(term=concept.name, parent=p.name), p.id, "parent") for p in level]
    if options.children and concept.kind == "anatomy":
        for child in onto.children(concept.id):
            terms = child.terms() if options.synonyms else [child.name]
            out += [(t, child.id, "child") for t in terms]
    if options.anatomy and concept.kind == "finding":
        out += [(options.anatomy_format.format(term=concept.name, anatomy=onto[a].name), a, "anatomy")
                for a in concept.anatomy]
    seen: set[str] = set()
    unique = []
    for phrase, cid, relation in out:
        key = normalize_term(phrase)
        if key not in seen:
            seen.add(key)
            unique.append((phrase, cid, relation))
    return unique[: options.max_phrases] if options.max_phrases else unique


def _negative_prompts(onto: Ontology, label: str, concept: Concept | None, phrases: list[tuple[str, str, str]],
                      options: PromptOptions) -> list[Prompt]:
    named = [(p, cid, r) for p, cid, r in phrases if r in ("name", "synonym", "label")]
    out = [Prompt(t.format(label=p), label, cid, p, r, t, "negative") for p, cid, r in named for t in options.negative_templates]
    if concept is not None:
        out += [Prompt(n, label, concept.id, n, "negation", "", "negative") for n in concept.negations]
    normal = onto.find("normal")
    if options.negatives_from_normal and normal is not None and concept is not None and concept.kind == "finding":
        out += [Prompt(t, label, normal.id, t, "normal", "", "negative") for t in normal.terms()]
    unique: dict[str, Prompt] = {}
    for prompt in out:
        unique.setdefault(prompt.text, prompt)
    return list(unique.values())


def build_prompts(
    labels: Sequence[str],
    ontology: Ontology | str | None = None,
    options: PromptOptions | Mapping[str, Any] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
) -> PromptBank:
    """Return the prompts of each class in ``labels`` expanded through the ontology.

    labels: the data set's class names in output order. ontology: an :class:`Ontology`, a YAML path, or
    None for the packaged one. aliases: class name -> concept id where a name does not resolve by itself.
    A class without a concept keeps its own name as its only phrase (logged).
    """
    from medfuse.core.config import from_dict

    onto = ontology if isinstance(ontology, Ontology) else load_ontology(ontology)
    opts = options if isinstance(options, PromptOptions) else from_dict(PromptOptions, dict(options or {}), where="prompts")
    aliases = dict(aliases or {})
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"prompts: labels must be distinct class names, got {list(labels)}")
    concepts = {str(label): _concept_for(onto, str(label), aliases) for label in labels}
    missing = [label for label, c in concepts.items() if c is None]
    if missing:
        log.info("no ontology concept for %s; those classes use their own name", missing)
    kinds = [c.kind for c in concepts.values() if c is not None]
    kind = max(set(kinds), key=kinds.count) if kinds else "finding"
    templates = list(opts.templates or DEFAULT_TEMPLATES["finding" if kind == "normal" else kind])
    phrases: dict[str, list[tuple[str, str, str]]] = {}
    positives: dict[str, list[Prompt]] = {}
    negatives: dict[str, list[Prompt]] = {}
    for label, concept in concepts.items():
        phrases[label] = (class_phrases(onto, concept, opts) if concept is not None
                          else [(label.replace("_", " "), "", "label")])
        seen: set[str] = set()
        positives[label] = []
        for phrase, cid, relation in phrases[label]:
            for template in templates:
                text = template.format(label=phrase)
                if text not in seen:  # PromptSet.positives drops repeats the same way
                    seen.add(text)
                    positives[label].append(Prompt(text, label, cid, phrase, relation, template))
        negatives[label] = _negative_prompts(onto, label, concept, phrases[label], opts)
    return PromptBank(list(concepts), templates, list(opts.negative_templates), phrases, positives, negatives,
                      {label: (c.id if c is not None else None) for label, c in concepts.items()}, opts.mode)
