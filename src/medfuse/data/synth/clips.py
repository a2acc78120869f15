"""Synthetic echo-like clips: a beating left ventricle in an ultrasound sector, in speckle.

A clip is an apical view reduced to its essentials: a fan-shaped sector, tissue of speckled
brightness that fades with depth, and an elliptical blood pool (dark) inside a bright myocardial
wall. The pool shrinks in systole and refills in diastole; its area falls by the ventricle's
fractional area change (FAC), so a reduced ejection fraction shows as a pool that barely moves,
and a dilated heart as a large one. Fluid around the heart is an echo-free band outside the wall,
lined by the bright pericardium. Frames span about 1.25 beats of the study's own rhythm.
Speckle is multiplicative Rayleigh noise, smoothed to a few pixels, mostly fixed to the tissue
and partly renewed each frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from medfuse.data.synth.cardiac import CardiacState, beat_times, systole_s

CLIP_FRAMES = 16
CLIP_SIZE = 64
CLIP_BEATS = 1.25  # heart beats a clip spans
SECTOR_HALF_ANGLE = np.deg2rad(40.0)


def contraction(t: np.ndarray, onsets: np.ndarray, rr_s: float) -> np.ndarray:
    """Return how far the ventricle has contracted at times ``t`` (s): 0 end-diastole, 1 end-systole.

    Ejection takes the systolic time of each beat (a smooth rise); relaxation and early filling
    take ~0.6 of that again (a smooth fall); the rest of diastole is at rest.
    """
    out = np.zeros_like(t, dtype=np.float64)
    intervals = np.diff(np.append(onsets, onsets[-1] + rr_s))
    for onset, interval in zip(onsets.tolist(), intervals.tolist()):
        eject = systole_s(interval)
        relax = 0.6 * eject
        phase = t - onset
        rising = (phase >= 0) & (phase < eject)
        falling = (phase >= eject) & (phase < eject + relax)
        out[rising] = np.sin(0.5 * np.pi * phase[rising] / eject) ** 2
        out[falling] = np.cos(0.5 * np.pi * (phase[falling] - eject) / relax) ** 2
    return out


def _speckle(rng: np.random.Generator, count: int, size: int, sigma: float) -> np.ndarray:
    """Return ``count`` fields of smoothed Rayleigh speckle ``(count, size, size)``, mean ~1 each."""
    field = rng.standard_normal((2, count, size, size), dtype=np.float32)
    field = gaussian_filter(field, (0.0, 0.0, sigma, sigma), mode="wrap")
    amplitude = np.sqrt(field[0] ** 2 + field[1] ** 2)
    return amplitude / amplitude.mean(axis=(1, 2), keepdims=True)


def render_echo_clip(
    rng: np.random.Generator, state: CardiacState, *, frames: int = CLIP_FRAMES, size: int = CLIP_SIZE
) -> tuple[np.ndarray, float]:
    """Return ``(clip, fps)``: frames ``(T, size, size)`` float32 in [0, 1] and the frame rate.

    The blood pool's area is ``A_d * (1 - state.fac * contraction(t))`` with ``A_d`` scaled by
    ``state.dilation``; ``T = frames`` evenly spaced over :data:`CLIP_BEATS` beats.
    """
    span = CLIP_BEATS * state.rr_s
    times = np.arange(frames) * span / frames
    onsets = beat_times(rng, state, span)
    squeeze = contraction(times, onsets, state.rr_s)

    axis = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(axis, axis, indexing="ij")
    apex_x = size / 2 + rng.normal(0, 0.5)
    depth = np.hypot(x - apex_x, y)
    angle = np.arctan2(x - apex_x, y)
    radius = 0.95 * size
    sector = (np.abs(angle) < SECTOR_HALF_ANGLE) & (depth < radius) & (depth > 0.04 * size)
    edge = np.clip((SECTOR_HALF_ANGLE - np.abs(angle)) * depth / 1.5, 0.0, 1.0) * np.clip((radius - depth) / 1.5, 0.0, 1.0)
    sector_weight = np.where(sector, edge, 0.0)
    attenuation = np.exp(-depth / (1.6 * size))

    cx = size / 2 + rng.normal(0, 0.03 * size)
    cy = 0.55 * size + rng.normal(0, 0.03 * size)
    semi_x = 0.13 * size * state.dilation * rng.uniform(0.93, 1.07)  # short axis (across)
    semi_y = 0.23 * size * state.dilation * rng.uniform(0.93, 1.07)  # long axis (apex to base)
    tilt = rng.normal(0, np.deg2rad(6.0))
    wall = 0.07 * size
    tissue_level = rng.uniform(0.3, 0.42)

    area_scale = (1.0 - state.fac * squeeze)[:, None, None]  # (T, 1, 1)
    # the short axis shortens more than the long axis (area = product of the two)
    ax, ay = semi_x * area_scale**0.6, semi_y * area_scale**0.4
    u = (x - cx) * np.cos(tilt) - (y - cy) * np.sin(tilt)
    v = (x - cx) * np.sin(tilt) + (y - cy) * np.cos(tilt)
    r = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)  # (T, H, W): 1 on the endocardial border
    short = np.minimum(ax, ay)
    pool = np.clip((1.0 - r) * short / 1.2 + 0.5, 0.0, 1.0)  # ~1 px soft edge
    outside = (r - 1.0) * short  # distance outside the endocardial border, ~px
    ring = np.clip(1.0 - np.abs(outside - 0.5 * wall) / (0.5 * wall), 0.0, 1.0)
    tissue = 1.0 - pool
    if state.fluid > 0:
        band = state.fluid * size
        fluid = np.clip(np.minimum(outside - wall, wall + band - outside) + 0.5, 0.0, 1.0)
        pericardium = np.clip(1.0 - np.abs(outside - wall - band - 0.5) / 1.0, 0.0, 1.0)
        tissue = tissue * (1.0 - fluid) + 0.8 * pericardium
    brightness = tissue_level * tissue + 0.35 * ring
    speckle = _speckle(rng, frames + 1, size, 0.8)
    mixed = 0.7 * speckle[:1] + 0.3 * speckle[1:]  # mostly fixed to the tissue, partly renewed
    image = (brightness * mixed + 0.02 * pool * speckle[1:]) * (attenuation * sector_weight)
    image += np.abs(rng.normal(0.0, 0.01, image.shape))  # receiver noise
    return np.clip(image, 0.0, 1.0).astype(np.float32), float(frames / span)


def write_clip(path: Path, clip: np.ndarray, fps: float) -> Path:
    """Write ``clip`` ``(T, H, W)`` in [0, 1] as an AVI with Motion JPEG (intra-only, byte-reproducible); return the path."""
    from medfuse.data.video import write_video

    return write_video(path, clip, fps=fps, codec="mjpeg")
