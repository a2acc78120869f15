"""Free-text radiology reports written from the findings, imperfectly, as real reports are.

A report has a header (examination, indication), a ``Findings:`` and an ``Impression:`` section.
Each finding is stated definitely with laterality, location and size, hedged ("Possible small
left pleural effusion."), negated ("No pneumothorax.") or left out; present findings are missed
(left out or negated) about 30% of the time and absent ones are sometimes raised as possible, so
the text carries information the image lacks and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfuse.data.synth.findings import LABELS, Finding

P_MISS = 0.3  # a present finding is not reported (left out, or even negated)
P_HEDGE = 0.2  # a present finding is reported with uncertainty
P_FALSE_HEDGE = 0.1  # an absent finding is raised as possible
P_NEGATE = 0.5  # an absent finding is explicitly negated

INDICATIONS = (
    "Shortness of breath.", "Cough.", "Chest pain.", "Fever and cough.", "Pre-operative assessment.",
    "Follow-up.", "Dyspnoea on exertion.", "Rule out pneumonia.", "Trauma.", "Hypoxia.", "Routine check.",
)
NORMAL_EXTRAS = (
    "The mediastinal contours are unremarkable.", "No acute osseous abnormality.",
    "Visualised osseous structures are intact.", "The trachea is midline.", "Soft tissues are unremarkable.",
)
NEGATIONS = {
    "consolidation": ("No focal consolidation.", "No focal airspace opacity.", "Lungs are clear without consolidation."),
    "effusion": ("No pleural effusion.", "Costophrenic angles are sharp.", "No effusion."),
    "cardiomegaly": ("Heart size is normal.", "The cardiomediastinal silhouette is within normal limits.",
                     "Normal cardiac size."),
    "nodule": ("No suspicious pulmonary nodule.", "No focal nodular opacity.", "No lung mass or nodule."),
    "pneumothorax": ("No pneumothorax.", "No pneumothorax is seen.", "There is no pneumothorax."),
}


@dataclass(frozen=True)
class Report:
    """A report's text and how each finding was treated: definite, hedged, negated or omitted."""

    text: str
    mentions: dict[str, str]


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _grade(severity: float, words: tuple[str, str, str]) -> str:
    return words[0] if severity < 0.35 else words[1] if severity < 0.7 else words[2]


def _where(f: Finding) -> str:
    """Return e.g. "right lower lobe", "bilateral lower lobes", "left upper lobe"."""
    if f.side == "bilateral":
        return f"bilateral {f.zone or 'lower'} lobes"
    return f"{f.side} {f.zone or 'lower'} lobe"


def _definite(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    """Return (findings sentence, impression phrase) stating present finding ``f``."""
    if f.name == "consolidation":
        kind = _grade(f.severity, ("patchy", "confluent", "dense"))
        sentence = _pick(rng, [
            f"{kind.capitalize()} consolidation in the {_where(f)}.",
            f"There is {kind} airspace opacity in the {_where(f)}, consistent with pneumonia.",
            f"{_where(f).capitalize()} airspace disease.",
        ])
        return sentence, _pick(rng, [f"{_where(f).capitalize()} pneumonia.", f"{_where(f).capitalize()} consolidation."])
    if f.name == "effusion":
        size = _grade(f.severity, ("small", "moderate", "large"))
        both = f.side == "bilateral"
        side = "bilateral pleural effusions" if both else f"{f.side} pleural effusion"
        angle = "costophrenic angles" if both else f"{f.side} costophrenic angle"
        sentence = _pick(rng, [
            f"{size.capitalize()} {side}.",
            f"Blunting of the {angle} with a meniscus, compatible with {'' if both else 'a '}{size} {side}.",
            f"There is a {size} {side}.",
        ])
        return sentence, f"{size.capitalize()} {side}."
    if f.name == "cardiomegaly":
        grade = _grade(f.severity, ("mild", "moderate", "marked"))
        sentence = _pick(rng, [
            f"The heart is {grade}ly enlarged.",
            f"{grade.capitalize()} cardiomegaly.",
            f"{grade.capitalize()} enlargement of the cardiac silhouette (cardiothoracic ratio about {f.ctr or 0.55:.2f}).",
        ])
        return sentence, f"{grade.capitalize()} cardiomegaly."
    if f.name == "nodule":
        mm = int(f.size_mm or 10)
        sentence = _pick(rng, [
            f"A {mm} mm nodule in the {_where(f)}.",
            f"Rounded {mm} mm opacity projecting over the {_where(f)}, likely a pulmonary nodule.",
            f"There is a {mm} mm pulmonary nodule in the {_where(f)}.",
        ])
        return sentence, f"{_where(f).capitalize()} pulmonary nodule; CT recommended."
    size = _grade(f.severity, ("small", "moderate", "large"))
    sentence = _pick(rng, [
        f"{size.capitalize()} {f.side} apical pneumothorax.",
        f"A visceral pleural line is seen at the {f.side} apex, with a {size} pneumothorax.",
        f"There is a {size} {f.side} pneumothorax.",
    ])
    return sentence, f"{size.capitalize()} {f.side} pneumothorax."


def _hedged(f: Finding, rng: np.random.Generator) -> tuple[str, str]:
    """Return (findings sentence, impression phrase) raising ``f`` as possible."""
    if f.name == "consolidation":
        sentence = _pick(rng, [
            f"Possible early consolidation in the {_where(f)}.",
            f"Subtle opacity in the {_where(f)} may represent atelectasis or early pneumonia.",
            f"Cannot exclude {_where(f)} pneumonia.",
        ])
        return sentence, f"Possible {_where(f)} pneumonia."
    if f.name == "effusion":
        side = "bilateral" if f.side == "bilateral" else f.side
        sentence = _pick(rng, [
            f"Possible small {side} pleural effusion.",
            f"Questionable blunting of the {side} costophrenic angle, possibly a trace effusion.",
            f"A small {side} effusion is not excluded.",
        ])
        return sentence, f"Possible small {side} effusion."
    if f.name == "cardiomegaly":
        sentence = _pick(rng, [
            "Heart size is at the upper limit of normal.",
            "Borderline cardiomegaly.",
            "The cardiac silhouette may be mildly enlarged, accentuated by technique.",
        ])
        return sentence, "Borderline heart size."
    if f.name == "nodule":
        sentence = _pick(rng, [
            f"Possible nodular opacity in the {_where(f)}, which may be a nipple shadow.",
            f"Questionable small nodule in the {_where(f)}.",
        ])
        return sentence, f"Possible {_where(f)} nodule; consider repeat imaging."
    sentence = _pick(rng, [
        f"Possible small {f.side} apical pneumothorax.",
        f"A thin line at the {f.side} apex may represent a skin fold; a small pneumothorax is not excluded.",
    ])
    return sentence, f"Possible small {f.side} pneumothorax."


def _imagined(name: str, rng: np.random.Generator) -> Finding:
    """Return a plausible (absent) finding to hedge about, with a random side and location."""
    side = "right" if rng.random() < 0.5 else "left"
    zone = {"consolidation": "lower", "nodule": "upper", "pneumothorax": "apical"}.get(name, "lower")
    return Finding(name, False, 0.1, side, zone, size_mm=6.0, ctr=0.5)


def write_report(rng: np.random.Generator, findings: dict[str, Finding], view: str) -> Report:
    """Return a report for one study from its true ``findings`` (keys: ``LABELS``) and ``view``."""
    sentences: list[tuple[int, str]] = []  # (order key, sentence): heart first, then lungs, pleura
    impression: list[str] = []
    mentions: dict[str, str] = {}
    order = {"cardiomegaly": 0, "consolidation": 1, "nodule": 2, "effusion": 3, "pneumothorax": 4}
    for name in LABELS:
        f = findings[name]
        u = rng.random()
        if f.present and u < P_MISS:
            mention = "negated" if rng.random() < 0.4 else "omitted"
        elif f.present:
            mention = "hedged" if u < P_MISS + P_HEDGE else "definite"
        else:
            mention = "hedged" if u < P_FALSE_HEDGE else "negated" if u < P_FALSE_HEDGE + P_NEGATE else "omitted"
        mentions[name] = mention
        if mention == "negated":
            sentences.append((order[name], _pick(rng, NEGATIONS[name])))
        elif mention in ("definite", "hedged"):
            source = f if f.present else _imagined(name, rng)
            sentence, summary = (_definite if mention == "definite" else _hedged)(source, rng)
            sentences.append((order[name], sentence))
            impression.append(summary)
    sentences.sort(key=lambda item: (item[0], rng.random()))
    body = [s for _, s in sentences] + [_pick(rng, NORMAL_EXTRAS)] * int(rng.random() < 0.6)

    technique = "portable AP view" if view == "AP" else _pick(rng, ["PA view", "PA and lateral views"])
    header = [f"EXAMINATION: Chest radiograph, {technique}."]
    if rng.random() < 0.8:
        header.append(f"INDICATION: {_pick(rng, INDICATIONS)}")
    if not impression:
        impression = [_pick(rng, ["No acute cardiopulmonary abnormality.", "No acute process.", "Normal chest radiograph."])]
    if len(impression) > 1 and rng.random() < 0.5:
        summary = " ".join(f"{i}. {s}" for i, s in enumerate(impression, 1))
    else:
        summary = " ".join(impression)
    labels = ("Findings:", "Impression:") if rng.random() < 0.5 else ("FINDINGS:", "IMPRESSION:")
    # One line: manifests stay one row per line for line-oriented tools and error messages.
    text = " ".join([*header, f"{labels[0]} {' '.join(body) or 'Unremarkable.'}", f"{labels[1]} {summary}"])
    return Report(text=text, mentions=mentions)
