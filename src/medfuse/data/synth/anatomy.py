"""Procedural chest radiograph anatomy: body, lungs, heart, mediastinum, ribs, clavicles, spine, domes.

Coordinates are normalised: ``u`` runs from -1 (image left) to 1 (image right) and ``v`` from
-1 (top) to 1 (bottom). Images follow the radiological convention: the patient's right is on
the image left, so ``side = -1`` is the right lung. Everything is drawn as additive brightness
layers on whole-image arrays (no per-pixel Python loops), so a 128 px image takes a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

SIDES = {"right": -1, "left": 1}  # patient side -> sign of u (patient right is image left)

# PA is the reference: an AP film magnifies the heart and widens the mediastinum.
AP_MAGNIFICATION = 1.15


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates ``u``, ``v`` ``(H, W)`` and the pixel pitch ``px`` in normalised units."""

    u: np.ndarray
    v: np.ndarray
    px: float

    @property
    def size(self) -> int:
        return self.u.shape[0]


@lru_cache(maxsize=4)
def make_grid(size: int) -> Grid:
    """Return the (cached, read-only) coordinate grid of a ``size`` x ``size`` image."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(axis, axis, indexing="ij")
    u.setflags(write=False)
    v.setflags(write=False)
    return Grid(u=u, v=v, px=2.0 / size)


@dataclass(frozen=True)
class ChestGeometry:
    """Where the structures of one radiograph are, in normalised units.

    ``ctr`` is the true (PA-equivalent) cardiothoracic ratio; ``heart_half_width`` already
    includes the AP magnification, so the drawn heart of an AP film looks larger.
    """

    cx: float  # midline
    cage: float  # inner half width of the rib cage
    cage_v: float  # vertical centre of the cage ellipse
    cage_h: float  # vertical semi-axis of the cage ellipse
    dome_right: float  # height (v) of the right hemidiaphragm's top
    dome_left: float
    mediastinum: float  # half width of the upper mediastinum
    ctr: float
    heart_half_width: float
    heart_v: float
    heart_half_height: float
    female: bool
    view: str
    rib_phase: float

    def dome(self, side: int) -> float:
        """Return the top of the hemidiaphragm on ``side`` (-1 right, 1 left)."""
        return self.dome_right if side < 0 else self.dome_left

    def lateral(self, side: int, fraction: float) -> float:
        """Return the ``u`` at ``fraction`` (0 midline .. 1 chest wall) of the hemithorax on ``side``."""
        return self.cx + side * fraction * self.cage


def sample_geometry(rng: np.random.Generator, *, body_size: float, female: bool, view: str, ctr: float) -> ChestGeometry:
    """Return a patient's chest geometry; ``body_size`` ~ 0.9-1.1, ``ctr`` the true cardiothoracic ratio."""
    magnify = AP_MAGNIFICATION if view == "AP" else 1.0
    cage = float(np.clip(0.74 * body_size + rng.normal(0, 0.015), 0.6, 0.9))
    dome_right = float(0.42 + rng.normal(0, 0.03) - (0.04 if view == "AP" else 0.0))
    heart_half_height = float((0.25 + 0.25 * (ctr - 0.44)) * magnify + rng.normal(0, 0.01))
    return ChestGeometry(
        cx=float(rng.normal(0, 0.02)),
        cage=cage,
        cage_v=0.12,
        cage_h=0.95,
        dome_right=dome_right,
        dome_left=dome_right + float(rng.uniform(0.03, 0.08)),
        mediastinum=float(0.11 * cage * (1.1 if view == "AP" else 1.0) + rng.normal(0, 0.005)),
        ctr=ctr,
        # Inspiration depth changes the apparent heart size from film to film.
        heart_half_width=ctr * cage * magnify * float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
        heart_v=dome_right + 0.14 - heart_half_height,
        heart_half_height=heart_half_height,
        female=female,
        view=view,
        rib_phase=float(rng.uniform(0, 1)),
    )


@dataclass(frozen=True)
class Exposure:
    """How one film was exposed: brightness gain, detector gamma and quantum noise level."""

    gain: float
    gamma: float
    noise: float


def sample_exposure(rng: np.random.Generator) -> Exposure:
    """Return the exposure of one film."""
    return Exposure(
        gain=float(rng.uniform(0.88, 1.08)), gamma=float(rng.uniform(0.85, 1.15)), noise=float(rng.uniform(0.012, 0.03))
    )


def soft_step(distance: np.ndarray, px: float) -> np.ndarray:
    """Return an antialiased indicator of ``distance > 0`` (a ramp one pixel wide), float32."""
    ramp = (0.5 + distance / px).astype(np.float32, copy=False)
    return np.minimum(np.maximum(ramp, 0.0, out=ramp), 1.0, out=ramp)


def smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Return Gaussian-filtered white noise ``(size, size)`` scaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma_px, mode="wrap")
    return field / (field.std() + 1e-8)


@dataclass
class ChestLayers:
    """Brightness layers of a radiograph before film response and noise; findings edit them.

    ``base`` and ``markings`` are ``(H, W)`` brightness; ``lungs`` maps side (-1, 1) to a soft
    lung mask ``(H, W)`` in [0, 1]; ``cage_r`` is the normalised radius in the cage ellipse
    (1 at the chest wall), used to place pleural findings.
    """

    base: np.ndarray
    markings: np.ndarray
    lungs: dict[int, np.ndarray]
    heart: np.ndarray
    cage_r: np.ndarray

    def copy(self) -> ChestLayers:
        """Return a copy whose arrays findings may edit without touching this one."""
        return ChestLayers(
            base=self.base.copy(), markings=self.markings.copy(), lungs={k: m.copy() for k, m in self.lungs.items()},
            heart=self.heart, cage_r=self.cage_r,
        )


def heart_mask(grid: Grid, g: ChestGeometry) -> np.ndarray:
    """Return the soft heart silhouette mask ``(H, W)``: an ellipse biased to the patient's left."""
    centre_u = g.cx + 0.3 * g.heart_half_width
    du = (grid.u - centre_u) / g.heart_half_width
    dv = (grid.v - g.heart_v) / g.heart_half_height
    r = np.sqrt(du * du + dv * dv)
    return soft_step((1.0 - r) * g.heart_half_height, grid.px)


def dome_curve(grid: Grid, g: ChestGeometry, side: int) -> np.ndarray:
    """Return the hemidiaphragm's height ``v`` over the image ``(H, W)``: highest mid-hemithorax."""
    lateral = (np.abs(grid.u - g.cx) - 0.5 * g.cage) / (0.5 * g.cage)
    return g.dome(side) + 0.16 * lateral * lateral


@dataclass(frozen=True)
class _Basis:
    """Trigonometric images shared by every radiograph of one size (computed once)."""

    harmonics: tuple[int, ...]
    harmonic_cos: np.ndarray  # (K, H, W): cos(k * angle around the nearer hilum)
    harmonic_sin: np.ndarray
    hilar_falloff: np.ndarray  # (H, W): exp(-distance to the nearer hilum / 0.45)
    vertebra_cos: np.ndarray  # (H, W): cos(2 pi v / vertebral height)
    vertebra_sin: np.ndarray


@lru_cache(maxsize=2)
def _basis(size: int) -> _Basis:
    grid = make_grid(size)
    hilum_u = np.sign(grid.u) * np.float32(0.09)  # nominal hila; per-film shifts are invisible
    angle = np.arctan2(grid.v, grid.u - hilum_u)
    harmonics = tuple(range(14, 26))
    dist = np.sqrt((grid.u - hilum_u) ** 2 + (grid.v * 0.9) ** 2)
    vertebra = 2 * np.pi * grid.v / np.float32(0.12)
    return _Basis(
        harmonics=harmonics,
        harmonic_cos=np.stack([np.cos(k * angle) for k in harmonics]).astype(np.float32),
        harmonic_sin=np.stack([np.sin(k * angle) for k in harmonics]).astype(np.float32),
        hilar_falloff=np.exp(-dist / 0.45).astype(np.float32),
        vertebra_cos=np.cos(vertebra).astype(np.float32),
        vertebra_sin=np.sin(vertebra).astype(np.float32),
    )


def draw_anatomy(grid: Grid, g: ChestGeometry, rng: np.random.Generator) -> ChestLayers:
    """Return the normal chest's layers: soft tissue, lungs with markings, bones, heart, abdomen."""
    u, v, px = grid.u, grid.v, grid.px
    du = u - g.cx
    adu = np.abs(du)
    a, b = du / (g.cage * 1.2), (v - 0.25) / 1.3
    a, b = a * a, b * b
    body = soft_step((1.0 - np.sqrt(np.sqrt(a * a + b * b))) * g.cage, px)  # a rounded rectangle
    a, b = np.abs(du / g.cage), np.abs((v - g.cage_v) / g.cage_h)
    cage_r = np.cbrt(a * a * a + b * b * b)  # squarer than an ellipse, like a rib cage
    inside_cage = soft_step((1.0 - cage_r) * g.cage, px)
    heart = heart_mask(grid, g)

    domes = {side: dome_curve(grid, g, side) for side in (-1, 1)}
    lungs: dict[int, np.ndarray] = {}
    for side in (-1, 1):
        on_side = soft_step(side * du - g.mediastinum, px)
        above_dome = soft_step(domes[side] - v, px)
        lungs[side] = inside_cage * on_side * above_dome * (1.0 - heart)
    lung = lungs[-1] + lungs[1]

    below_domes = soft_step(v - np.where(du < 0, domes[-1], domes[1]), px)
    base = 0.08 + 0.34 * body  # air outside the body, soft tissue inside
    base = base + 0.2 * below_domes * body * np.clip(1.2 - 0.3 * (v - g.dome_left), 0.5, 1.0)
    base = base + 0.2 * np.maximum(heart, soft_step(g.mediastinum - adu, px) * soft_step(v + 0.95, px))
    base = base - 0.27 * lung

    # Gastric bubble under the left hemidiaphragm (image right).
    bubble = np.exp(-(((u - g.lateral(1, 0.45)) / 0.1) ** 2 + ((v - g.dome_left - 0.11) / 0.05) ** 2))
    base = base - 0.12 * bubble * below_domes

    # Spine: a bright column with vertebral bodies, seen through the mediastinum and abdomen.
    basis = _basis(grid.size)
    phase = 2 * np.pi * g.rib_phase
    vertebrae = basis.vertebra_cos * np.cos(phase) - basis.vertebra_sin * np.sin(phase)
    spine = soft_step(0.065 - adu, px) * (0.85 + 0.15 * vertebrae)
    base = base + 0.1 * spine * (1.0 - 0.5 * lung)

    base = base + 0.09 * _ribs(grid, g) * inside_cage + 0.13 * _clavicles(grid, g)
    if g.female:  # breast soft tissue over the lower lateral lung zones
        breast = np.exp(-(((adu - 0.55 * g.cage) / (0.3 * g.cage)) ** 2 + ((v - g.dome_right + 0.12) / 0.2) ** 2))
        base = base + 0.07 * breast * body

    # Lung markings: vessels radiating from the hila (angular harmonics around each hilum),
    # fading towards the periphery, plus fine mottling.
    k = rng.choice(len(basis.harmonics), size=6, replace=False)
    phases = rng.uniform(0, 2 * np.pi, size=6)
    weights_cos = np.zeros(len(basis.harmonics), dtype=np.float32)
    weights_sin = np.zeros(len(basis.harmonics), dtype=np.float32)
    weights_cos[k], weights_sin[k] = np.cos(phases) / 6.0, -np.sin(phases) / 6.0
    streaks = np.tensordot(weights_cos, basis.harmonic_cos, 1) + np.tensordot(weights_sin, basis.harmonic_sin, 1)
    texture = 0.6 * np.maximum(streaks, 0) + 0.4 * smooth_noise(rng, grid.size, 0.012 / px)
    markings = 0.08 * texture * basis.hilar_falloff
    return ChestLayers(base=base.astype(np.float32), markings=markings.astype(np.float32), lungs=lungs, heart=heart, cage_r=cage_r)


def _ribs(grid: Grid, g: ChestGeometry) -> np.ndarray:
    """Return posterior and (fainter) anterior rib bands ``(H, W)`` in [0, 1]."""
    lateral = np.clip(np.abs(grid.u - g.cx) / g.cage, 0.0, 1.2)
    # Posterior ribs leave the spine, rise slightly and curve down at the chest wall.
    phase = (grid.v + 0.08 * lateral - 0.38 * lateral**2 + 0.85) / 0.14 + g.rib_phase
    posterior = np.clip(np.cos(2 * np.pi * phase) * 1.6 - 0.6, 0.0, 1.0)
    posterior = posterior * (phase > 0.2) * (phase < 10.0) * np.clip(lateral * 5.0, 0.0, 1.0)
    # Anterior ribs run down and medially from the chest wall.
    phase_a = (grid.v - 0.35 * lateral + 0.6) / 0.2 + g.rib_phase
    anterior = np.clip(np.cos(2 * np.pi * phase_a) * 1.5 - 0.8, 0.0, 1.0) * np.clip((lateral - 0.25) * 3.0, 0.0, 1.0)
    return posterior + 0.4 * anterior


def _clavicles(grid: Grid, g: ChestGeometry) -> np.ndarray:
    """Return the two clavicles as bright bands ``(H, W)`` from the sternum up and out."""
    out = np.zeros_like(grid.u)
    rows = slice(0, int(grid.size * 0.3) + 1)  # the clavicles lie in the top fifth of the film
    u, v = grid.u[rows], grid.v[rows]
    for side in (-1, 1):
        su, sv = g.cx + side * 0.07, -0.66
        eu, ev = g.cx + side * 0.72 * g.cage, -0.86
        du, dv = eu - su, ev - sv
        t = np.clip(((u - su) * du + (v - sv) * dv) / (du * du + dv * dv), 0.0, 1.0)
        dist = np.hypot(u - (su + t * du), v - (sv + t * dv))
        out[rows] = np.maximum(out[rows], soft_step(0.028 - dist, grid.px))
    return out


def film(image: np.ndarray, exposure: Exposure, rng: np.random.Generator) -> np.ndarray:
    """Return brightness ``image`` ``(H, W)`` through exposure, film gamma and quantum noise, in [0, 1]."""
    noisy = image * exposure.gain + exposure.noise * rng.standard_normal(image.shape, dtype=np.float32)
    noisy = gaussian_filter(noisy, 0.5)  # detector blur, so noise is not purely per pixel
    return np.clip(noisy, 0.0, 1.0) ** exposure.gamma
