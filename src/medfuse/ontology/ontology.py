"""A small medical ontology: concepts with synonyms, is-a parents, anatomy, modality and sources.

The packaged ``data/medical.yaml`` covers chest findings (pneumonia, consolidation, pleural effusion,
cardiomegaly, lung nodule, pneumothorax, normal), the MedPix 2.0 location categories and the CT / MR /
X-ray modalities; each entry names its source in public terminologies (RadLex, SNOMED CT, MeSH).

A data set's class names (``"Reproductive and Urinary System"``, ``"MR"``, ``"pneumonia"``) resolve to
concepts by id, preferred name or synonym after normalisation (case, ``_``/``-`` and spacing ignored)::

    onto = load_ontology()
    onto.resolve("MR").terms()        # ['MR', 'MRI', 'magnetic resonance imaging', ...]
    [c.id for c in onto.ancestors("consolidation")]   # ['lung_opacity', 'lung_finding', 'finding']
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from medfuse.core.config import check_choice, load_yaml
from medfuse.core.errors import ConfigError
from medfuse.core.registry import unknown_name_message

__all__ = ["KINDS", "Concept", "Ontology", "default_ontology_path", "load_ontology", "normalize_term",
           "ontology_from_mapping"]

KINDS = ("finding", "normal", "anatomy", "modality")
_LIST_FIELDS = ("synonyms", "parents", "anatomy", "modalities", "related", "negations")
_FIELDS = frozenset({"name", "kind", "source", "definition", *_LIST_FIELDS})


def normalize_term(text: str) -> str:
    """Return ``text`` lower-cased with ``_``, ``-`` and runs of spaces folded to one space."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", str(text))).strip().lower()


@dataclass(frozen=True)
class Concept:
    """One ontology entry.

    id: the key in the YAML file. name: the preferred term. kind: finding | normal | anatomy | modality.
    synonyms: other terms for the same concept. parents: is-a parents (concept ids). anatomy: where a
    finding is seen; modalities: how it is imaged; related: associated concepts (e.g. a disease's sign);
    negations: phrases that deny the concept ("no pneumonia"). source: terminology -> code and/or name.
    """

    id: str
    name: str
    kind: str
    synonyms: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    anatomy: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    negations: tuple[str, ...] = ()
    source: Mapping[str, str] = field(default_factory=dict)
    definition: str = ""

    def terms(self) -> list[str]:
        """Return the preferred name then the synonyms, without repeats (case-insensitive)."""
        seen: dict[str, str] = {}
        for term in (self.name, *self.synonyms):
            seen.setdefault(normalize_term(term), term)
        return list(seen.values())


class Ontology:
    """Concepts by id, with term lookup and is-a navigation; built by :func:`load_ontology`."""

    def __init__(self, concepts: Sequence[Concept], *, name: str = "ontology", path: Path | None = None) -> None:
        self.name = name
        self.path = path
        self._concepts: dict[str, Concept] = {}
        for concept in concepts:
            if concept.id in self._concepts:
                raise ConfigError(f"{self._where(concept.id)}: concept id is defined twice")
            self._concepts[concept.id] = concept
        self._by_term: dict[str, list[str]] = {}
        for concept in concepts:
            for term in (concept.id, *concept.terms()):
                ids = self._by_term.setdefault(normalize_term(term), [])
                if concept.id not in ids:
                    ids.append(concept.id)
        self._check()

    # ------------------------------------------------------------------ lookup
    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._concepts

    def __iter__(self) -> Iterator[Concept]:
        return iter(self._concepts.values())

    def __len__(self) -> int:
        return len(self._concepts)

    def __getitem__(self, concept_id: str) -> Concept:
        try:
            return self._concepts[concept_id]
        except KeyError:
            raise ConfigError(f"{self.name}: {unknown_name_message('concept', concept_id, sorted(self._concepts))}") from None

    def find(self, term: str) -> Concept | None:
        """Return the concept named ``term`` (id, then preferred name, then a unique synonym), or None."""
        key = normalize_term(term)
        by_id = {normalize_term(cid): cid for cid in self._concepts}
        if key in by_id:
            return self._concepts[by_id[key]]
        ids = self._by_term.get(key, [])
        named = [cid for cid in ids if normalize_term(self._concepts[cid].name) == key]
        if named:
            return self._concepts[named[0]]
        return self._concepts[ids[0]] if len(ids) == 1 else None

    def resolve(self, term: str) -> Concept:
        """Return the concept for ``term`` like :meth:`find`; unknown or ambiguous terms raise ConfigError."""
        concept = self.find(term)
        if concept is not None:
            return concept
        ids = self._by_term.get(normalize_term(term), [])
        if len(ids) > 1:
            raise ConfigError(f"{self.name}: term {term!r} is a synonym of several concepts {ids}; use a concept id")
        raise ConfigError(f"{self.name}: {unknown_name_message('term', str(term), sorted(self._by_term))}")

    def of_kind(self, kind: str) -> list[Concept]:
        """Return the concepts of one kind (finding, normal, anatomy, modality) in file order."""
        check_choice("kind", kind, KINDS)
        return [c for c in self if c.kind == kind]

    # ------------------------------------------------------------------ navigation
    def parents(self, concept_id: str) -> list[Concept]:
        """Return the direct is-a parents of a concept."""
        return [self[p] for p in self[concept_id].parents]

    def children(self, concept_id: str) -> list[Concept]:
        """Return the concepts whose direct parent is ``concept_id``."""
        self[concept_id]
        return [c for c in self if concept_id in c.parents]

    def ancestors(self, concept_id: str) -> list[Concept]:
        """Return every is-a ancestor, nearest first (breadth first, without repeats)."""
        return self._walk(concept_id, lambda cid: [c.id for c in self.parents(cid)])

    def descendants(self, concept_id: str) -> list[Concept]:
        """Return every is-a descendant, nearest first (breadth first, without repeats)."""
        return self._walk(concept_id, lambda cid: [c.id for c in self.children(cid)])

    def is_a(self, concept_id: str, ancestor_id: str) -> bool:
        """Return whether ``concept_id`` is ``ancestor_id`` or one of its descendants."""
        return concept_id == ancestor_id or any(c.id == ancestor_id for c in self.ancestors(concept_id))

    def _walk(self, start: str, step: Any) -> list[Concept]:
        seen: dict[str, None] = {}
        frontier = list(step(start))
        while frontier:
            nxt: list[str] = []
            for cid in frontier:
                if cid not in seen and cid != start:
                    seen[cid] = None
                    nxt.extend(step(cid))
            frontier = nxt
        return [self._concepts[cid] for cid in seen]

    # ------------------------------------------------------------------ checks
    def _where(self, concept_id: str) -> str:
        return f"{self.path or self.name}: concepts.{concept_id}"

    def _check(self) -> None:
        for concept in self:
            for name in ("parents", "anatomy", "modalities", "related"):
                for ref in getattr(concept, name):
                    if ref not in self._concepts:
                        raise ConfigError(f"{self._where(concept.id)}.{name}: "
                                          f"{unknown_name_message('concept', ref, sorted(self._concepts))}")
            for ref in concept.anatomy:
                if self._concepts[ref].kind != "anatomy":
                    raise ConfigError(f"{self._where(concept.id)}.anatomy: '{ref}' is a {self._concepts[ref].kind}, not anatomy")
            for ref in concept.modalities:
                if self._concepts[ref].kind != "modality":
                    raise ConfigError(f"{self._where(concept.id)}.modalities: '{ref}' is a {self._concepts[ref].kind}, not a modality")
        for concept in self:  # is-a must be acyclic
            path: list[str] = []
            self._no_cycle(concept.id, path)

    def _no_cycle(self, concept_id: str, path: list[str]) -> None:
        if concept_id in path:
            cycle = " -> ".join([*path[path.index(concept_id):], concept_id])
            raise ConfigError(f"{self._where(concept_id)}.parents: is-a cycle {cycle}")
        path.append(concept_id)
        for parent in self._concepts[concept_id].parents:
            self._no_cycle(parent, path)
        path.pop()


def _concept(cid: str, raw: Any, where: str) -> Concept:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, kind, source, ..., got {raw!r}")
    unknown = [k for k in raw if k not in _FIELDS]
    if unknown:
        raise ConfigError(f"{where}: {unknown_name_message('field', str(unknown[0]), sorted(_FIELDS))}")
    name = str(raw.get("name") or "").strip()
    if not name:
        raise ConfigError(f"{where}.name: every concept needs a preferred name")
    kind = str(raw.get("kind") or "")
    try:
        check_choice("kind", kind, KINDS)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    source = raw.get("source")
    if not isinstance(source, Mapping) or not source:
        raise ConfigError(f"{where}.source: name where the concept comes from, e.g. {{MeSH: 'D011014 Pneumonia'}}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in _LIST_FIELDS:
        value = raw.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
        lists[key] = tuple(str(v).strip() for v in value if str(v).strip())
    return Concept(id=cid, name=name, kind=kind, source={str(k): str(v) for k, v in source.items()},
                   definition=str(raw.get("definition") or ""), **lists)


def default_ontology_path() -> Path:
    """Return the path of the packaged ontology (``medfuse/ontology/data/medical.yaml``)."""
    return Path(__file__).resolve().parent / "data" / "medical.yaml"


def ontology_from_mapping(data: Mapping[str, Any], *, name: str = "ontology", path: Path | None = None) -> Ontology:
    """Return an :class:`Ontology` from a mapping shaped like the YAML file (``concepts: {id: {...}}``)."""
    concepts = data.get("concepts")
    where = str(path or name)
    if not isinstance(concepts, Mapping) or not concepts:
        raise ConfigError(f"{where}: expected 'concepts:' mapping concept ids to entries")
    built = [_concept(str(cid), raw, f"{where}: concepts.{cid}") for cid, raw in concepts.items()]
    return Ontology(built, name=str(data.get("name") or name), path=path)


@lru_cache(maxsize=8)
def _load_cached(path: str) -> Ontology:
    file = Path(path)
    return ontology_from_mapping(load_yaml(file), name=file.stem, path=file)


def load_ontology(path: str | Path | None = None) -> Ontology:
    """Return the ontology in the YAML file at ``path`` (default: the packaged medical ontology)."""
    file = Path(path) if path is not None else default_ontology_path()
    return _load_cached(str(file.resolve()))
