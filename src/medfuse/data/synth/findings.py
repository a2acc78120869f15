"""Radiographic findings with laterality, location and severity, drawn into the chest layers.

Each finding edits the layers of :mod:`medfuse.data.synth.anatomy` the way it changes a real
film: consolidation adds patchy opacity in a lobe, an effusion fills the costophrenic angle with
a meniscus and hides the hemidiaphragm, cardiomegaly widens the heart (through the geometry's
cardiothoracic ratio), a nodule is a small round opacity, and a pneumothorax removes the lung
markings at the apex and chest wall behind a thin visceral pleural line. Severity 0 is subtle
(close to the noise and the normal texture), 1 is obvious.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfuse.data.synth.anatomy import (
    SIDES,
    ChestGeometry,
    ChestLayers,
    Grid,
    draw_anatomy,
    film,
    sample_exposure,
    smooth_noise,
    soft_step,
)

LABELS = ("consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax")

# Field of view of the synthetic film (mm across the image), for nodule sizes and pixel spacing.
FIELD_OF_VIEW_MM = 360.0


@dataclass(frozen=True)
class Finding:
    """One finding of one study; absent findings carry only ``name`` and ``present=False``.

    ``side`` is the patient's ``"right"``, ``"left"`` or ``"bilateral"``; ``zone`` is ``"upper"``,
    ``"middle"`` or ``"lower"`` (lobes; ``"apical"`` for a pneumothorax); ``size_mm`` is a
    nodule's diameter; ``ctr`` the cardiothoracic ratio for cardiomegaly.
    """

    name: str
    present: bool
    severity: float = 0.0
    side: str | None = None
    zone: str | None = None
    size_mm: float | None = None
    ctr: float | None = None


def absent(name: str) -> Finding:
    """Return the absent ``name`` finding."""
    return Finding(name=name, present=False)


def _sides(side: str | None) -> list[int]:
    return [-1, 1] if side == "bilateral" else [SIDES[side or "right"]]


def zone_centre(g: ChestGeometry, side: int, zone: str, rng: np.random.Generator) -> tuple[float, float]:
    """Return a ``(u, v)`` point inside the lobe ``zone`` of the lung on ``side``."""
    if zone == "upper":
        return g.lateral(side, rng.uniform(0.35, 0.7)), rng.uniform(-0.6, -0.3)
    if zone == "middle":
        return g.lateral(side, rng.uniform(0.3, 0.6)), rng.uniform(-0.1, 0.08)
    return g.lateral(side, rng.uniform(0.4, 0.75)), g.dome(side) - rng.uniform(0.1, 0.25)


def draw_consolidation(layers: ChestLayers, grid: Grid, g: ChestGeometry, f: Finding, rng: np.random.Generator) -> None:
    """Add a patchy airspace opacity of several merged blobs inside the lobe of ``f``."""
    patch = np.zeros_like(grid.u)
    for side in _sides(f.side):
        cu, cv = zone_centre(g, side, f.zone or "lower", rng)
        for _ in range(int(rng.integers(4, 8))):
            bu, bv = cu + rng.normal(0, 0.07), cv + rng.normal(0, 0.06)
            radius = rng.uniform(0.06, 0.12) * (0.8 + 0.5 * f.severity)
            patch = np.maximum(patch, np.exp(-((grid.u - bu) ** 2 + (grid.v - bv) ** 2) / (2 * radius**2)))
        patch = patch * layers.lungs[side]
    mottle = np.clip(0.75 + 0.3 * smooth_noise(rng, grid.size, 0.02 / grid.px), 0.3, 1.0)
    layers.base += (0.08 + 0.3 * f.severity) * patch * mottle
    layers.markings *= 1.0 - 0.5 * patch


def draw_effusion(layers: ChestLayers, grid: Grid, g: ChestGeometry, f: Finding) -> None:
    """Fill the costophrenic angle with fluid whose meniscus rises towards the chest wall."""
    du = grid.u - g.cx
    lateral = np.clip(np.abs(du) / g.cage, 0.0, 1.0)
    inside_cage = soft_step((1.0 - layers.cage_r) * g.cage, grid.px)
    height = 0.05 + 0.45 * f.severity  # fluid height at the chest wall above the angle
    for side in _sides(f.side):
        on_side = soft_step(side * du - g.mediastinum, grid.px)
        angle = g.dome(side) + 0.16
        top = angle - height * (0.3 + 0.7 * lateral**2)
        fluid = np.clip((grid.v - top) / 0.05, 0.0, 1.0) * on_side * inside_cage * (1.0 - 0.8 * layers.heart)
        target = 0.6 + 0.04 * f.severity  # as dense as the abdomen: the hemidiaphragm disappears
        layers.base += (target - layers.base) * fluid
        layers.markings *= 1.0 - fluid
        layers.lungs[side] = layers.lungs[side] * (1.0 - fluid)


def draw_nodule(layers: ChestLayers, grid: Grid, g: ChestGeometry, f: Finding, rng: np.random.Generator) -> None:
    """Add a small round soft-edged opacity of diameter ``f.size_mm`` in the lobe of ``f``."""
    side = SIDES[f.side or "right"]
    cu, cv = zone_centre(g, side, f.zone or "upper", rng)
    radius = max((f.size_mm or 8.0) / FIELD_OF_VIEW_MM, 0.6 * grid.px)
    d2 = ((grid.u - cu) ** 2 + (grid.v - cv) ** 2) / radius**2
    blob = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)) + 0.3 * np.exp(-d2)
    layers.base += (0.06 + 0.16 * f.severity) * blob * np.maximum(layers.lungs[side], 0.3)


def draw_pneumothorax(layers: ChestLayers, grid: Grid, g: ChestGeometry, f: Finding) -> None:
    """Remove markings between the chest wall and a visceral pleural line, deepest at the apex."""
    side = SIDES[f.side or "right"]
    lung = layers.lungs[side]
    apex = g.cage_v - g.cage_h
    height = np.clip((grid.v - apex) / (g.dome(side) - apex), 0.0, 1.0)
    depth = (0.05 + 0.22 * f.severity) * (1.25 - 0.8 * height)  # in units of the cage radius
    edge = 1.0 - depth
    lucent = soft_step((layers.cage_r - edge) * g.cage, grid.px) * lung
    layers.markings *= 1.0 - lucent
    layers.base -= 0.05 * lucent
    layers.base += 0.05 * f.severity * (lung - lucent).clip(0.0, 1.0)  # the collapsed lung is denser
    line_width = 0.6 * grid.px / g.cage
    line = np.exp(-(((layers.cage_r - edge) / line_width) ** 2)) * lung
    layers.base += 0.1 * line


def render_image(
    grid: Grid,
    geometry: ChestGeometry,
    findings: dict[str, Finding],
    rng: np.random.Generator,
    *,
    anatomy: ChestLayers | None = None,
) -> np.ndarray:
    """Return one radiograph ``(H, W)`` float32 in [0, 1] with ``findings`` drawn into its anatomy.

    ``anatomy`` (from :func:`draw_anatomy` with the same ``geometry``) is reused, not edited, so
    a patient's studies can share it; without it the anatomy is drawn from ``rng``. Cardiomegaly
    is already in ``geometry`` (its cardiothoracic ratio); the other findings are drawn here.
    """
    layers = anatomy.copy() if anatomy is not None else draw_anatomy(grid, geometry, rng)
    if findings["effusion"].present:
        draw_effusion(layers, grid, geometry, findings["effusion"])
    if findings["consolidation"].present:
        draw_consolidation(layers, grid, geometry, findings["consolidation"], rng)
    if findings["nodule"].present:
        draw_nodule(layers, grid, geometry, findings["nodule"], rng)
    if findings["pneumothorax"].present:
        draw_pneumothorax(layers, grid, geometry, findings["pneumothorax"])
    image = layers.base + layers.markings * (layers.lungs[-1] + layers.lungs[1])
    return film(image, sample_exposure(rng), rng).astype(np.float32)
