"""Column-role presets for known manifests, and detection of the preset from a manifest's columns.

``medfuse validate MANIFEST`` works with no config: :func:`detect_preset` picks the preset whose
characteristic columns the manifest has, and :func:`resolve_config` turns a preset name, a mapping (with an
optional ``preset`` key whose values the other keys override) or None into a :class:`DataConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from medfuse.core.errors import ConfigError
from medfuse.core.registry import Registry
from medfuse.data.config import DataConfig

__all__ = ["PRESETS", "detect_preset", "guess_config", "load_data_config", "preset", "resolve_config"]

PRESETS: Registry[Callable[[], DataConfig]] = Registry("data preset")

SYNTHETIC_FINDINGS = ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]
SYNTHETIC_VITALS = ["heart_rate", "resp_rate", "spo2", "temperature", "wbc", "crp"]
SYNTHETIC_MEDIA = {"audio": "heart_sound_path", "video": "echo_path", "signal": "ecg_path"}

# Columns whose presence identifies each preset; the preset with the most matching columns wins.
_SIGNATURES: dict[str, frozenset[str]] = {
    "medpix2": frozenset({"image_path", "case_id", "caption", "location_category"}),
    "slake": frozenset({"image_path", "question", "answer", "img_id"}),
    "pneumoniamnist": frozenset({"image_path", "label", "label_name"}),
    "heartsound2016": frozenset({"audio_path", "record_id", "label_name"}),
    "ecg_cinc2021": frozenset({"record_path", "record_id", "dx_names"}),
    "synthetic": frozenset({"image_path", "patient_id", "report", *SYNTHETIC_FINDINGS}),
    "synthetic_media": frozenset({"image_path", "patient_id", "report", *SYNTHETIC_FINDINGS, *SYNTHETIC_MEDIA.values()}),
}


@PRESETS.register("medpix2")
def medpix2() -> DataConfig:
    """MedPix 2.0: CT/MR image + caption; label = body-region category (5 classes); patient = case."""
    return DataConfig(
        image="image_path", text="caption", label="location_category", patient="case_id",
        split="split", subgroups=["sex", "age", "modality_type"],
    )


@PRESETS.register("medpix2_case")
def medpix2_case() -> DataConfig:
    """MedPix 2.0 with the clinical case (history + findings) as text; label = CT vs MR."""
    return DataConfig(
        image="image_path", text=["case_history", "case_findings"], label="modality_type",
        classes=["CT", "MR"], patient="case_id", split="split", subgroups=["sex", "age"],
    )


@PRESETS.register("slake")
def slake() -> DataConfig:
    """SLAKE 1.0 (English): image + question -> answer; patient = image id; splits train/validate."""
    return DataConfig(
        image="image_path", question="question", answer="answer", answer_type="answer_type",
        patient="img_id", split="split", subgroups=["modality", "answer_type"], filters={"q_lang": ["en"]},
    )


@PRESETS.register("pneumoniamnist")
def pneumoniamnist() -> DataConfig:
    """PneumoniaMNIST: 28x28 chest X-ray, normal vs pneumonia; splits train/val; no patient column."""
    return DataConfig(
        image="image_path", label="label_name", classes=["normal", "pneumonia"], task="binary",
        split="split",
    )


@PRESETS.register("heartsound2016")
def heartsound2016() -> DataConfig:
    """PhysioNet/CinC 2016 heart sounds: WAV, normal vs abnormal; patient = record; subgroup = site."""
    return DataConfig(
        audio="audio_path", label="label_name", classes=["normal", "abnormal"], task="binary",
        patient="record_id", split="split", subgroups=["source_db"],
    )


@PRESETS.register("ecg_cinc2021")
def ecg_cinc2021() -> DataConfig:
    """CinC 2021 12-lead ECG (WFDB): multi-label diagnoses from ';'-separated ``dx_names``."""
    return DataConfig(
        signal="record_path", label="dx_names", label_sep=";", task="multilabel", patient="record_id",
        split="split", subgroups=["sex", "age", "source"],
    )


@PRESETS.register("synthetic")
def synthetic() -> DataConfig:
    """The synthetic chest set of ``medfuse synth``: image + report + vitals, five findings (multi-label)."""
    return DataConfig(
        image="image_path", text="report", labels=list(SYNTHETIC_FINDINGS), task="multilabel",
        vitals=list(SYNTHETIC_VITALS), patient="patient_id", split="split", subgroups=["sex", "age", "view"],
    )


@PRESETS.register("synthetic_media")
def synthetic_media() -> DataConfig:
    """``medfuse synth --media``: the synthetic set plus heart sound (audio), echo clip (video) and 3-lead ECG (signal).

    Heart sounds are 5 s at 2 kHz (one 5 s window each), ECGs 10 s at 250 Hz (2500 samples); clips are
    sampled to 16 frames at ``image_size``.
    """
    return replace(
        synthetic(), audio=SYNTHETIC_MEDIA["audio"], video=SYNTHETIC_MEDIA["video"], signal=SYNTHETIC_MEDIA["signal"],
        signal_rate=250.0, signal_length=2500, video_frames=16,
        audio_prep={"sample_rate": 2000, "band": (25.0, 400.0), "window_s": 5.0, "hop_s": 2.5},
    )


def preset(name: str) -> DataConfig:
    """Return a fresh :class:`DataConfig` for preset ``name``; unknown names fail with the close matches."""
    return PRESETS.get(name)()


def detect_preset(columns: Iterable[str]) -> str | None:
    """Return the name of the preset whose characteristic columns all appear in ``columns``, or None."""
    have = {str(c) for c in columns}
    best: tuple[int, str] | None = None
    for name, signature in _SIGNATURES.items():
        if signature <= have and (best is None or len(signature) > best[0]):
            best = (len(signature), name)
    return best[1] if best else None


def guess_config(columns: Iterable[str]) -> DataConfig | None:
    """Return a config built from common column names (image/image_path, text/report/caption, label, ...).

    Used when no preset matches; returns None when not even one modality column is recognised.
    """
    have = [str(c) for c in columns]
    lower = {c.lower(): c for c in have}

    def pick(*names: str) -> str | None:
        return next((lower[n] for n in names if n in lower), None)

    roles: dict[str, Any] = {
        "image": pick("image_path", "image", "img_path", "path", "filename", "file"),
        "text": pick("report", "text", "caption", "findings", "impression"),
        "audio": pick("audio_path", "audio", "wav"),
        "signal": pick("record_path", "signal_path", "signal", "record"),
        "video": pick("video_path", "video"),
        "question": pick("question"),
        "answer": pick("answer"),
        "answer_type": pick("answer_type"),
        "label": pick("label_name", "label", "class", "diagnosis", "target", "y"),
        "patient": pick("patient_id", "patient", "subject_id", "subject", "case_id"),
        "split": pick("split", "fold", "subset"),
        "subgroups": [lower[n] for n in ("sex", "gender", "age", "view", "site") if n in lower],
    }
    if not any(roles[m] for m in ("image", "text", "audio", "signal", "video")):
        return None
    if roles["question"] or roles["answer"]:
        roles["label"] = None
    return DataConfig(**roles)


def resolve_config(value: DataConfig | Mapping[str, Any] | str | None, columns: Iterable[str] | None = None) -> DataConfig:
    """Return a :class:`DataConfig` from a config, a mapping, a preset name, or None (detected from columns).

    A mapping may hold ``preset: NAME``: the preset's values are the defaults and the other keys override
    them. Raises :class:`ConfigError` when nothing is given and no preset or common column name fits.
    """
    if isinstance(value, DataConfig):
        return value
    if isinstance(value, str):
        return preset(value)
    if value is None:
        cols = list(columns or [])
        name = detect_preset(cols)
        if name is not None:
            return preset(name)
        guessed = guess_config(cols)
        if guessed is None:
            raise ConfigError(
                f"no data config given and no preset matches the columns {cols}; "
                f"name the roles (image=..., text=..., label=...) or a preset: {', '.join(PRESETS.names())}"
            )
        return guessed
    data = dict(value)
    name = data.pop("preset", None)
    if name is None:
        return DataConfig.from_mapping(data)
    base = {k: v for k, v in asdict(preset(str(name))).items()}
    unknown = [k for k in data if k not in base]
    if unknown:
        DataConfig.from_mapping({unknown[0]: data[unknown[0]]})  # raises with the close matches
    base.update(data)
    return DataConfig.from_mapping(base)


# Keys of a recipe's ``data:`` section that are not column roles.
_RECIPE_KEYS = {"manifest", "train_split", "val_split", "cache_dir", "validate", "decode_check", "max_rows"}


def load_data_config(
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    manifest: str | Path | None = None,
    preset: str | None = None,
) -> DataConfig:
    """Return a :class:`DataConfig` from a YAML file or mapping, a preset name, or the manifest's columns.

    ``source`` may be a plain roles mapping or a recipe with a ``data:`` section (its ``columns`` and role
    keys are used; ``manifest``/``train_split``/... are skipped). ``preset`` gives the defaults that the
    source's keys override. With neither, the preset is detected from ``manifest``'s columns.
    """
    from medfuse.core.config import load_yaml

    data: dict[str, Any] = {}
    if isinstance(source, (str, Path)):
        data = load_yaml(source)
    elif source is not None:
        data = dict(source)
    if isinstance(data.get("data"), Mapping):
        data = dict(data["data"])
    columns = data.pop("columns", None) or {}
    data = {k: v for k, v in data.items() if k not in _RECIPE_KEYS}
    data.update(columns)
    if preset is not None:
        data.setdefault("preset", preset)
    if data:
        return resolve_config(data)
    cols: list[str] = []
    if manifest is not None:
        from medfuse.data.manifest import read_manifest

        cols = read_manifest(manifest).columns
    return resolve_config(None, cols)
