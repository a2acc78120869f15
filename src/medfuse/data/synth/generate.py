"""Write the synthetic multimodal chest data set: images (PNG, optionally DICOM), reports, vitals, labels,
and on request a heart sound, an echo clip and an ECG per study.

The result is a folder with ``images/`` and ``manifest.csv`` (image paths relative to the
manifest's folder) plus ``synth.json`` describing how it was made. A patient's chest (anatomy
per view) is drawn once and reused on each of their films; findings, film noise, report and
vitals come from random streams of their own per study, so the same seed gives byte-identical
files and changing how reports are worded never changes an image. With ``media=True`` the
recordings (``sounds/``, ``echo/``, ``ecg/``; see :mod:`medfuse.data.synth.media`) follow one
:class:`~medfuse.data.synth.cardiac.CardiacState` per study, drawn from the same findings and the
study's heart rate, on streams of their own: the other files are the same with or without them.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfuse.core import ConfigError, progress
from medfuse.data.synth.anatomy import (
    ChestGeometry,
    ChestLayers,
    Grid,
    draw_anatomy,
    make_grid,
    sample_geometry,
)
from medfuse.data.synth.cardiac import CardiacState, sample_state, sample_traits
from medfuse.data.synth.cohort import Study, sample_cohort, split_patients
from medfuse.data.synth.findings import FIELD_OF_VIEW_MM, LABELS, render_image
from medfuse.data.synth.media import MEDIA_COLUMNS, MEDIA_FORMATS, make_media_folders, write_study_media
from medfuse.data.synth.reports import write_report
from medfuse.data.synth.vitals import VITALS, hide_missing, true_vitals

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = (
    "image_path", "patient_id", "study_id", "split", "sex", "age", "view", "report", *VITALS, *LABELS,
)
MANIFEST_NAME = "manifest.csv"

# Independent random streams (per patient for anatomy and cardiac traits, per study for the rest).
_STREAM_COHORT, _STREAM_SPLIT, _STREAM_IMAGE, _STREAM_REPORT, _STREAM_VITALS, _STREAM_ANATOMY = range(6)
_STREAM_TRAITS, _STREAM_HEART, _STREAM_SOUND, _STREAM_CLIP, _STREAM_ECG = range(6, 11)


def manifest_columns(media: bool = False) -> tuple[str, ...]:
    """Return the manifest's columns: :data:`MANIFEST_COLUMNS`, with the media paths after ``image_path``."""
    return (MANIFEST_COLUMNS[0], *MEDIA_COLUMNS, *MANIFEST_COLUMNS[1:]) if media else MANIFEST_COLUMNS


@dataclass(frozen=True)
class SynthResult:
    """What :func:`generate_synthetic` wrote: the manifest, its size and label prevalence."""

    out_dir: Path
    manifest_path: Path
    n_rows: int
    n_patients: int
    split_counts: dict[str, int]
    prevalence: dict[str, float]
    image_size: int
    dicom: bool
    seconds: float
    media: bool = False


def _check_args(n: int, seed: int, image_size: int, split_fractions: Sequence[float]) -> tuple[float, float, float]:
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n: must be a positive integer, got {n!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {seed!r}")
    if not isinstance(image_size, int | np.integer) or not 32 <= image_size <= 2048:
        raise ConfigError(f"image_size: must be an integer from 32 to 2048, got {image_size!r}")
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] <= 0:
        raise ConfigError(
            f"split_fractions: expected three non-negative (train, val, test) fractions summing to 1 "
            f"with train > 0, got {split_fractions!r}"
        )
    return fractions  # type: ignore[return-value]


def generate_synthetic(
    out_dir: str | Path,
    n: int = 600,
    seed: int = 0,
    *,
    image_size: int = 128,
    dicom: bool = False,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    media: bool = False,
) -> SynthResult:
    """Return a summary after writing ``n`` synthetic chest studies and ``manifest.csv`` under ``out_dir``.

    Columns: ``image_path, patient_id, study_id, split, sex, age, view, report, heart_rate,
    resp_rate, spo2, temperature, wbc, crp, consolidation, effusion, cardiomegaly, nodule,
    pneumothorax`` (labels 0/1; about 5% of vitals empty). Images are ``image_size`` px square,
    8-bit greyscale PNG; with ``dicom=True`` each study also gets a 16-bit DX DICOM file (sex,
    age, view, rescale and window in the header) and ``image_path`` points at it. Splits are by
    patient, with study counts close to ``split_fractions``.

    ``media=True`` adds, after ``image_path``, ``heart_sound_path`` (5 s WAV at 2 kHz: S1/S2 at the
    study's heart rate, a systolic murmur, an S3 gallop), ``echo_path`` (16-frame 64x64 AVI: a
    beating ventricle whose fractional area change is small with a reduced ejection fraction) and
    ``ecg_path`` (10 s 3-lead WFDB record at 250 Hz: irregular beats in atrial fibrillation, ST
    changes); the ``synthetic_media`` preset reads them (see :mod:`medfuse.data.synth.cardiac`).
    """
    fractions = _check_args(n, seed, image_size, split_fractions)
    if not isinstance(media, bool):
        raise ConfigError(f"media: expected True or False, got {media!r}")
    start = time.perf_counter()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if media:
        make_media_folders(out)
    studies = sample_cohort(int(n), np.random.default_rng([seed, _STREAM_COHORT]))
    split_of = split_patients(studies, fractions, np.random.default_rng([seed, _STREAM_SPLIT]), SPLITS)
    grid = make_grid(int(image_size))
    rows: list[dict[str, object]] = []
    anatomy: dict[tuple[int, str], tuple[ChestGeometry, ChestLayers]] = {}
    with progress.task("synthetic studies", total=len(studies)) as bar:
        for study in studies:
            key = (study.patient.index, study.view)
            if key not in anatomy:  # one anatomy per patient and view: the same chest on every film
                anatomy = {k: v for k, v in anatomy.items() if k[0] == key[0]}
                anatomy[key] = _draw_patient(grid, study, seed)
            geometry, layers = anatomy[key]
            split = split_of[study.patient.patient_id]
            rows.append(_write_study(out, study, split, grid, geometry, layers, seed, dicom, media))
            bar.update(1)

    manifest = out / MANIFEST_NAME
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=manifest_columns(media), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    split_counts = {name: sum(1 for r in rows if r["split"] == name) for name in SPLITS}
    prevalence = {name: round(float(np.mean([r[name] for r in rows])), 4) for name in LABELS}
    n_patients = len({s.patient.patient_id for s in studies})
    info = {
        "generator": "medfuse.data.synth", "n": int(n), "seed": int(seed), "image_size": int(image_size),
        "dicom": bool(dicom), "split_fractions": list(fractions), "split_counts": split_counts,
        "n_patients": n_patients, "prevalence": prevalence, "labels": list(LABELS), "vitals": list(VITALS),
        "media": MEDIA_FORMATS if media else {},
    }
    (out / "synth.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return SynthResult(
        out_dir=out, manifest_path=manifest, n_rows=len(rows), n_patients=n_patients, split_counts=split_counts,
        prevalence=prevalence, image_size=int(image_size), dicom=bool(dicom), seconds=time.perf_counter() - start,
        media=media,
    )


def _draw_patient(grid: Grid, study: Study, seed: int) -> tuple[ChestGeometry, ChestLayers]:
    """Return the chest geometry and normal anatomy of ``study``'s patient in ``study``'s view."""
    patient = study.patient
    rng = np.random.default_rng([seed, _STREAM_ANATOMY, patient.index, int(study.view == "AP")])
    geometry = sample_geometry(rng, body_size=patient.body_size, female=patient.sex == "F", view=study.view, ctr=study.ctr)
    return geometry, draw_anatomy(grid, geometry, rng)


def _write_study(
    out: Path, study: Study, split: str, grid: Grid, geometry: ChestGeometry, layers: ChestLayers, seed: int, dicom: bool,
    media: bool = False,
) -> dict[str, object]:
    """Return the manifest row of ``study`` after writing its image file(s)."""
    from PIL import Image

    patient = study.patient
    image_rng = np.random.default_rng([seed, _STREAM_IMAGE, study.row])
    image = render_image(grid, geometry, study.findings, image_rng, anatomy=layers)
    stem = f"images/{patient.patient_id}_{study.study_id}"
    # Fast PNG compression: noisy radiographs barely shrink at higher levels.
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(out / f"{stem}.png", compress_level=1)
    image_path = f"{stem}.png"
    if dicom:
        from medfuse.data.synth.dicom_writer import write_chest_dicom

        write_chest_dicom(
            out / f"{stem}.dcm", image, patient_id=patient.patient_id, study_id=study.study_id, sex=patient.sex,
            age=study.age, view=study.view, pixel_spacing_mm=FIELD_OF_VIEW_MM / image.shape[0], seed=seed,
        )
        image_path = f"{stem}.dcm"
    report = write_report(np.random.default_rng([seed, _STREAM_REPORT, study.row]), study.findings, study.view)
    vitals_rng = np.random.default_rng([seed, _STREAM_VITALS, study.row])
    truth = true_vitals(vitals_rng, study.findings, study.age)
    vitals = hide_missing(vitals_rng, truth)
    row: dict[str, object] = {"image_path": image_path}
    if media:
        state = cardiac_state(study, truth["heart_rate"], seed)
        sound_rng, clip_rng, ecg_rng = (np.random.default_rng([seed, s, study.row])
                                        for s in (_STREAM_SOUND, _STREAM_CLIP, _STREAM_ECG))
        row.update(write_study_media(out, stem.removeprefix("images/"), state, (sound_rng, clip_rng, ecg_rng),
                                     comments={"Age": study.age, "Sex": patient.sex}))
    row.update({
        "patient_id": patient.patient_id, "study_id": study.study_id, "split": split,
        "sex": patient.sex, "age": study.age, "view": study.view, "report": report.text,
    })
    row.update({name: "" if value is None else value for name, value in vitals.items()})
    row.update(study.labels())
    return row


def cardiac_state(study: Study, heart_rate: float, seed: int) -> CardiacState:
    """Return the heart behind ``study``: its patient's traits (one stream per patient) and the study's state."""
    patient = study.patient
    traits = sample_traits(np.random.default_rng([seed, _STREAM_TRAITS, patient.index]), patient.cardiomegaly, patient.age)
    return sample_state(np.random.default_rng([seed, _STREAM_HEART, study.row]), traits, study.findings, heart_rate)
