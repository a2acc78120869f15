"""Vital signs and laboratory values correlated with the findings, with some values missing.

The effects are those a clinician would expect, blurred by patient variation: pneumonia
(consolidation) often brings fever, leukocytosis, a raised CRP, tachycardia and tachypnoea; a
pneumothorax lowers SpO2 and raises respiratory and heart rate; an effusion lowers SpO2 a little;
cardiomegaly raises the heart rate slightly; a nodule leaves no trace in the vitals.
"""

from __future__ import annotations

import numpy as np

from medfuse.data.synth.findings import Finding

VITALS = ("heart_rate", "resp_rate", "spo2", "temperature", "wbc", "crp")
UNITS = {"heart_rate": "/min", "resp_rate": "/min", "spo2": "%", "temperature": "degC", "wbc": "10^9/L", "crp": "mg/L"}
MISSING_RATE = 0.05


def sample_vitals(
    rng: np.random.Generator, findings: dict[str, Finding], age: int, *, missing_rate: float = MISSING_RATE
) -> dict[str, float | None]:
    """Return one study's vitals and labs (keys: :data:`VITALS`); each is None with ``missing_rate``."""
    return hide_missing(rng, true_vitals(rng, findings, age), missing_rate)


def true_vitals(rng: np.random.Generator, findings: dict[str, Finding], age: int) -> dict[str, float]:
    """Return one study's vitals and labs (keys: :data:`VITALS`), none missing.

    The heart sound, echo clip and ECG of a study beat at this ``heart_rate`` even when the
    manifest's cell is left empty.
    """
    consolidation = findings["consolidation"]
    pneumothorax = findings["pneumothorax"]
    effusion = findings["effusion"]
    # Not every pneumonia is febrile or inflamed: the response varies between patients.
    inflamed = consolidation.present and rng.random() < 0.7
    pneumonia = (0.5 + 0.5 * consolidation.severity) * inflamed
    ptx = pneumothorax.severity if pneumothorax.present else 0.0
    eff = effusion.severity if effusion.present else 0.0
    cardiac = findings["cardiomegaly"].present

    heart_rate = rng.normal(76, 12) + 12 * pneumonia + 12 * ptx + 5 * eff + 6 * cardiac
    resp_rate = rng.normal(16, 3.0) + 4 * pneumonia + 5 * ptx + 3 * eff
    spo2 = 97.5 - rng.gamma(1.5, 0.8) - 0.02 * max(age - 60, 0) - 3 * pneumonia - 5 * ptx - 2.5 * eff
    temperature = rng.normal(36.8, 0.35) + pneumonia * rng.uniform(0.8, 2.2)
    wbc = np.exp(rng.normal(np.log(7.5), 0.25)) + pneumonia * rng.uniform(2.0, 9.0)
    crp = np.exp(rng.normal(np.log(4.0), 0.8)) + pneumonia * np.exp(rng.normal(np.log(70), 0.5))
    return {
        "heart_rate": float(round(np.clip(heart_rate, 40, 180))),
        "resp_rate": float(round(np.clip(resp_rate, 8, 45))),
        "spo2": float(round(np.clip(spo2 + rng.normal(0, 1.0), 70, 100))),
        "temperature": float(round(np.clip(temperature, 35.0, 41.5), 1)),
        "wbc": float(round(np.clip(wbc, 1.0, 40.0), 1)),
        "crp": float(round(np.clip(crp, 0.5, 400.0), 1)),
    }


def hide_missing(rng: np.random.Generator, values: dict[str, float], missing_rate: float = MISSING_RATE) -> dict[str, float | None]:
    """Return ``values`` with each entry replaced by None with probability ``missing_rate`` (in :data:`VITALS` order)."""
    out: dict[str, float | None] = dict(values)
    for name in VITALS:
        if rng.random() < missing_rate:
            out[name] = None
    return out
