"""The heart behind a synthetic study: rate, rhythm, murmur, gallop, chamber size and function, ST segment.

One :class:`CardiacState` per study drives its heart sound, echo clip and ECG, so the three agree
with each other and with the chest film. The links follow the usual clinical picture, blurred by
chance so that no single recording gives a label away:

* cardiomegaly (a large heart on the film) means a dilated left ventricle, larger on the echo,
  usually poorly contracting (reduced ejection fraction, a small fractional area change; in
  60-95% by severity), often with a holosystolic murmur of functional mitral regurgitation
  (35-70%) and atrial fibrillation (30-60%, an irregularly irregular rhythm); these are the
  patient's and persist across studies;
* a third heart sound (S3 gallop) marks a failing, volume-loaded ventricle: common with
  cardiomegaly and, per study, with a pleural effusion (effusions in heart failure);
* fluid collects around the heart too (serous effusions seldom come alone): 80% of studies with an
  effusion show an echo-free band around the ventricle on the echo;
* an acute pneumothorax shifts the heart and often (75%) changes the ECG: raised ST segments and
  lower QRS voltage in the lateral leads;
* everything also occurs, rarely (2-8%), without the finding (innocent murmurs, lone atrial
  fibrillation, an idiopathic cardiomyopathy, non-specific ST depression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfuse.data.synth.findings import Finding

# Fractional area change of the left ventricle (end-diastole to end-systole) by class.
PRESERVED_FAC = (0.42, 0.62)
REDUCED_FAC = (0.10, 0.28)


@dataclass(frozen=True)
class CardiacTraits:
    """What a patient's heart is like on every study: rhythm, murmur, ventricular size and function."""

    rhythm: str  # "sinus" | "af"
    murmur: float  # loudness of a holosystolic murmur, 0 when there is none
    reduced_ef: bool
    fac: float  # fractional area change of the left ventricle, in (0, 1)
    dilation: float  # end-diastolic ventricular size relative to a normal heart (1.0)


@dataclass(frozen=True)
class CardiacState:
    """One study's heart: the patient's traits plus the rate, gallop and ST segment of the day.

    ``heart_rate`` is beats per minute; ``gallop`` the loudness of an S3 (0: none); ``fluid`` the
    width of an echo-free band around the ventricle, as a fraction of the echo's field (0: none);
    ``st_mv`` the ST deviation in the lateral leads (mV, positive = elevation); ``qrs_scale``
    multiplies the QRS voltage (below 1 with a pneumothorax).
    """

    heart_rate: float
    rhythm: str
    murmur: float
    gallop: float
    reduced_ef: bool
    fac: float
    dilation: float
    fluid: float
    st_mv: float
    qrs_scale: float

    @property
    def rr_s(self) -> float:
        """Return the mean beat-to-beat interval in seconds."""
        return 60.0 / self.heart_rate


def sample_traits(rng: np.random.Generator, cardiomegaly: Finding, age: int) -> CardiacTraits:
    """Return a patient's cardiac traits given their (chronic) ``cardiomegaly`` and age at first study."""
    severity = cardiomegaly.severity if cardiomegaly.present else 0.0
    if cardiomegaly.present:
        p_reduced, p_murmur, p_af = 0.6 + 0.35 * severity, 0.35 + 0.35 * severity, 0.3 + 0.3 * severity
    else:
        p_reduced, p_murmur, p_af = 0.03, 0.08, 0.02 + 0.04 * (age > 70)
    reduced = bool(rng.random() < p_reduced)
    murmur = float(rng.uniform(0.4, 1.0)) if rng.random() < p_murmur else 0.0
    rhythm = "af" if rng.random() < p_af else "sinus"
    fac = rng.uniform(*REDUCED_FAC) - 0.04 * severity if reduced else rng.uniform(*PRESERVED_FAC)
    dilation = rng.normal(1.0, 0.06) + (0.1 + 0.2 * severity) * cardiomegaly.present + 0.08 * reduced
    return CardiacTraits(rhythm, round(murmur, 3), reduced, round(float(np.clip(fac, 0.06, 0.7)), 3),
                         round(float(np.clip(dilation, 0.85, 1.35)), 3))


def sample_state(
    rng: np.random.Generator, traits: CardiacTraits, findings: dict[str, Finding], heart_rate: float
) -> CardiacState:
    """Return one study's :class:`CardiacState` from the patient's ``traits``, the study's findings and rate."""
    cardiomegaly, effusion, pneumothorax = findings["cardiomegaly"], findings["effusion"], findings["pneumothorax"]
    p_gallop = min(0.95, 0.04 + 0.55 * cardiomegaly.present + 0.15 * traits.reduced_ef + 0.4 * effusion.present)
    gallop = float(rng.uniform(0.5, 1.0)) if rng.random() < p_gallop else 0.0
    fluid = 0.0
    if rng.random() < (0.8 if effusion.present else 0.02):
        fluid = float(rng.uniform(0.04, 0.07)) + 0.05 * effusion.severity
    st_mv, qrs_scale = 0.0, 1.0
    if pneumothorax.present and rng.random() < 0.75:
        st_mv = float(rng.uniform(0.1, 0.22)) * (0.6 + 0.8 * pneumothorax.severity)
        qrs_scale = 1.0 - 0.35 * pneumothorax.severity
    elif rng.random() < 0.04:  # non-specific ST depression
        st_mv = -float(rng.uniform(0.05, 0.15))
    return CardiacState(
        heart_rate=float(np.clip(heart_rate, 40.0, 180.0)), rhythm=traits.rhythm, murmur=traits.murmur,
        gallop=round(gallop, 3), reduced_ef=traits.reduced_ef, fac=traits.fac, dilation=traits.dilation,
        fluid=round(fluid, 3), st_mv=round(st_mv, 3), qrs_scale=round(qrs_scale, 3),
    )


def beat_times(rng: np.random.Generator, state: CardiacState, duration_s: float) -> np.ndarray:
    """Return the onsets (s) of the beats covering ``[0, duration_s)``, the first one at or before 0.

    Sinus rhythm: intervals vary slowly with breathing (respiratory sinus arrhythmia, ~4%) plus
    ~1.5% beat-to-beat jitter. Atrial fibrillation: intervals are independent draws, spread ~20%
    around the mean (irregularly irregular).
    """
    rr = state.rr_s
    t = -float(rng.uniform(0.0, rr))
    onsets = []
    breath_period, breath_phase = float(rng.uniform(3.0, 5.0)), float(rng.uniform(0.0, 2 * np.pi))
    while t < duration_s:
        onsets.append(t)
        if state.rhythm == "af":
            step = rr * float(np.clip(np.exp(rng.normal(-0.02, 0.22)), 0.5, 1.8))
        else:
            step = rr * (1.0 + 0.04 * np.sin(2 * np.pi * t / breath_period + breath_phase) + rng.normal(0.0, 0.015))
        t += max(step, 0.25)
    return np.asarray(onsets, dtype=np.float64)


def systole_s(rr_s: float) -> float:
    """Return the time (s) from the first to the second heart sound for a beat interval ``rr_s``."""
    return float(np.clip(0.1 + 0.25 * rr_s, 0.2, 0.42))
