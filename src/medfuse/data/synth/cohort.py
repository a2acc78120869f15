"""The synthetic cohort: patients with 1-4 studies, their findings, views and a patient-level split.

Chronic findings belong to the patient (cardiomegaly grows with age and persists; a nodule stays
where it is), acute ones to the study (consolidation, pneumothorax; effusion follows heart
failure and pneumonia). Sicker and older patients are more often filmed AP (portable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medfuse.data.synth.findings import LABELS, Finding, absent

MIN_AGE, MAX_AGE = 18, 95
STUDIES_PER_PATIENT = (1, 2, 3, 4)
STUDIES_PER_PATIENT_P = (0.45, 0.25, 0.18, 0.12)


@dataclass(frozen=True)
class Patient:
    """A synthetic patient: demographics, body size and chronic findings."""

    index: int
    patient_id: str
    sex: str  # "F" | "M"
    age: int  # at the first study
    body_size: float  # ~0.85-1.1, scales the chest
    normal_ctr: float  # cardiothoracic ratio without cardiomegaly
    cardiomegaly: Finding
    nodule: Finding


@dataclass(frozen=True)
class Study:
    """One radiograph of a patient with its ground-truth findings (keys: :data:`LABELS`)."""

    row: int
    study_id: str
    patient: Patient
    age: int
    view: str  # "PA" | "AP"
    findings: dict[str, Finding]

    @property
    def ctr(self) -> float:
        """Return the true (PA-equivalent) cardiothoracic ratio of this study."""
        return self.findings["cardiomegaly"].ctr or self.patient.normal_ctr

    def labels(self) -> dict[str, int]:
        """Return the multi-label ground truth, 0/1 per finding."""
        return {name: int(self.findings[name].present) for name in LABELS}


def _severity(rng: np.random.Generator) -> float:
    """Return a severity in [0, 1]; about a quarter are subtle (< 0.2)."""
    return float(rng.beta(1.3, 1.7))


def _side(rng: np.random.Generator, p_right: float, p_left: float) -> str:
    u = rng.random()
    return "right" if u < p_right else "left" if u < p_right + p_left else "bilateral"


def _lobe(rng: np.random.Generator, side: str) -> str:
    if side == "right":
        return str(rng.choice(["lower", "upper", "middle"], p=[0.55, 0.25, 0.2]))
    return str(rng.choice(["lower", "upper"], p=[0.65, 0.35]))


def sample_patient(rng: np.random.Generator, index: int) -> Patient:
    """Return patient number ``index`` with demographics and chronic findings."""
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(round(rng.normal(58, 18)), MIN_AGE, MAX_AGE))
    body_size = float(np.clip(rng.normal(1.0 if sex == "M" else 0.94, 0.04), 0.84, 1.12))
    normal_ctr = float(np.clip(rng.normal(0.465, 0.03), 0.38, 0.499))
    cardiomegaly = absent("cardiomegaly")
    if rng.random() < 0.05 + 0.3 * (age - MIN_AGE) / (MAX_AGE - MIN_AGE):
        severity = _severity(rng)
        cardiomegaly = Finding("cardiomegaly", True, severity, ctr=round(0.502 + 0.12 * severity, 3))
    nodule = absent("nodule")
    if rng.random() < 0.13:
        severity = _severity(rng)
        side = _side(rng, 0.55, 0.45)
        nodule = Finding("nodule", True, severity, side, _lobe(rng, side), size_mm=round(6 + 20 * severity, 0))
    return Patient(index, f"P{index:05d}", sex, age, body_size, normal_ctr, cardiomegaly, nodule)


def sample_findings(rng: np.random.Generator, patient: Patient, age: int) -> dict[str, Finding]:
    """Return the findings of one study of ``patient`` at ``age``."""
    found = {name: absent(name) for name in LABELS}
    found["cardiomegaly"] = patient.cardiomegaly
    found["nodule"] = patient.nodule
    if rng.random() < 0.25:
        side = _side(rng, 0.55, 0.35)
        zone = _lobe(rng, side if side != "bilateral" else "left")
        found["consolidation"] = Finding("consolidation", True, _severity(rng), side, zone)
    young_man = patient.sex == "M" and age < 40
    if rng.random() < 0.1 + 0.07 * young_man:
        found["pneumothorax"] = Finding("pneumothorax", True, _severity(rng), _side(rng, 0.5, 0.5), "apical")
    cardiac = patient.cardiomegaly.present
    if rng.random() < 0.1 + 0.3 * cardiac + 0.15 * found["consolidation"].present:
        if cardiac:
            side = _side(rng, 0.3, 0.2)
        elif found["consolidation"].present and found["consolidation"].side != "bilateral" and rng.random() < 0.7:
            side = str(found["consolidation"].side)
        else:
            side = _side(rng, 0.45, 0.4)
        found["effusion"] = Finding("effusion", True, _severity(rng), side, "lower")
    return found


def sample_view(rng: np.random.Generator, age: int, findings: dict[str, Finding]) -> str:
    """Return "AP" (portable, for the sick and the old) or "PA"."""
    acute = any(findings[n].present for n in ("consolidation", "pneumothorax")) or findings["effusion"].severity > 0.6
    return "AP" if rng.random() < 0.2 + 0.25 * acute + 0.15 * (age > 75) else "PA"


def sample_cohort(n: int, rng: np.random.Generator) -> list[Study]:
    """Return ``n`` studies of patients with 1-4 studies each (the last patient may have fewer)."""
    studies: list[Study] = []
    index = 0
    while len(studies) < n:
        patient = sample_patient(rng, index)
        count = int(rng.choice(STUDIES_PER_PATIENT, p=STUDIES_PER_PATIENT_P))
        age = patient.age
        for _ in range(min(count, n - len(studies))):
            findings = sample_findings(rng, patient, age)
            row = len(studies)
            studies.append(Study(row, f"S{row:06d}", patient, age, sample_view(rng, age, findings), findings))
            age = min(MAX_AGE, age + int(rng.integers(0, 3)))
        index += 1
    return studies


def split_patients(
    studies: Sequence[Study], fractions: Sequence[float], rng: np.random.Generator, names: Sequence[str] = ("train", "val", "test")
) -> dict[str, str]:
    """Return patient_id -> split so that study counts follow ``fractions`` and no patient crosses splits.

    Patients are taken in random order, each to the split furthest below its target share.
    """
    per_patient: dict[str, int] = {}
    for s in studies:
        per_patient[s.patient.patient_id] = per_patient.get(s.patient.patient_id, 0) + 1
    ids = list(per_patient)
    order = rng.permutation(len(ids))
    total = float(sum(per_patient.values()))
    counts = dict.fromkeys(names, 0)
    out: dict[str, str] = {}
    for i in order.tolist():
        pid = ids[i]
        deficits = [fractions[k] * total - counts[name] if fractions[k] > 0 else -np.inf for k, name in enumerate(names)]
        best = names[int(np.argmax(deficits))]
        out[pid] = best
        counts[best] += per_patient[pid]
    return out
