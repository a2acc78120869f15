"""The data config: which manifest column is the image, the text, the label, the patient, the split.

A :class:`DataConfig` names columns of a manifest as it is; nothing is renamed. It also holds the few
choices that decide what a sample looks like (image size, channels, window, text length limit, how
numeric subgroups such as age are banded). Presets for known data sets live in :mod:`medfuse.data.presets`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medfuse.core.config import check_choice, from_dict
from medfuse.core.errors import ConfigError, DataError
from medfuse.data.columns import band_label
from medfuse.data.manifest import is_missing, text_value
from medfuse.data.windowing import WindowArg, check_window

__all__ = ["DataConfig", "MODALITIES", "TASKS"]

TASKS = ("binary", "multiclass", "multilabel", "regression")
MODALITIES = ("image", "text", "vitals", "signal", "audio", "video")
DEFAULT_BANDS: dict[str, list[float]] = {"age": [18.0, 40.0, 65.0]}


@dataclass
class DataConfig:
    """Which column plays which role, and how samples are prepared.

    Roles (column names; None or empty means the role is not used):
      image, signal, audio, video: path columns (relative paths resolve against the manifest's folder).
      text: one column or a list of columns joined with a blank line (e.g. ``[case_history, case_findings]``).
      label: one column of class names/ids; with ``label_sep`` it holds several names (multi-label).
      labels: several 0/1 columns (multi-label), one per class.
      question, answer, answer_type: visual question answering.
      vitals: numeric columns, gathered into one ``(F,)`` vector (NaN where a value is missing).
      patient: groups rows of one patient (leakage checks, patient-level splits).
      split: the split column (any names: train/val/test, train/dev, train/validate, ...). The default
        ``split`` is dropped for a manifest without such a column (see :meth:`DataConfig.for_columns`).
      subgroups: columns reported separately in fairness analyses; numeric ones listed in ``bands``
        are cut into bands (age by default: ``<18, 18-39, 40-64, 65+``).
    Other settings:
      classes: the allowed label set in output order (inferred from the train split when None).
      label_names: display names for the classes (model card); defaults to ``classes`` / ``labels``.
      task: binary | multiclass | multilabel | regression (inferred from the roles when None).
      filters: ``{column: allowed values}``; other rows are set aside (counted, not silently dropped).
      optional: modalities that may be empty in a row (the sample then has ``present[m] = False``).
      allow_missing_vitals: empty vitals cells are missing values (NaN), not errors.
      max_text_chars: longer texts are errors in validation and cut to this length in datasets.
      image_size, channels, window, frame: image preparation (square side, 1 or 3 channels, the
        intensity window ``(center, width)``, ``"minmax"`` or ``"header"`` (DICOM) as in
        :func:`medfuse.data.images.load_image`, which frame of a multi-frame file).
      resize: ``crop`` (shorter side to image_size, then centre crop) or ``squash`` (whole image).
      mean, std: normalisation per channel (ImageNet statistics when None).
      signal_rate: waveforms are resampled to this rate (Hz; also the rate of files that state none).
      signal_length: waveforms are cut or zero-padded to this many samples (random cut in training).
      video_frames: frames sampled evenly from each video clip (resized to image_size).
      audio_prep: how recordings become windows: a :class:`medfuse.data.audio.AudioConfig` mapping (rate,
        band-pass, normalisation, windows, training augmentation); None: its defaults.
      deid: de-identification of the text on the fly: a ``medfuse.text.deid.DeidConfig`` or its mapping
        (``{enabled: true, mode: placeholder}``), ``true`` for the defaults switched on; None: off.
    """

    image: str | None = None
    text: str | list[str] | None = None
    label: str | None = None
    label_sep: str | None = None
    labels: list[str] = field(default_factory=list)
    label_names: list[str] | None = None
    classes: list[str] | None = None
    task: str | None = None
    question: str | None = None
    answer: str | None = None
    answer_type: str | None = None
    vitals: list[str] = field(default_factory=list)
    signal: str | None = None
    audio: str | None = None
    video: str | None = None
    patient: str | None = None
    split: str | None = "split"
    subgroups: list[str] = field(default_factory=list)
    bands: dict[str, list[float]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_BANDS.items()})
    filters: dict[str, Any] = field(default_factory=dict)
    optional: list[str] = field(default_factory=list)
    allow_missing_vitals: bool = True
    max_text_chars: int = 20000
    image_size: int = 224
    channels: int = 3
    window: WindowArg = None
    frame: int | str = "middle"
    resize: str = "crop"
    mean: list[float] | None = None
    std: list[float] | None = None
    signal_rate: float | None = None
    signal_length: int | None = None
    video_frames: int = 16
    audio_prep: dict[str, Any] | None = None
    deid: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.text, str):
            self.text = [self.text] if self.text else None
        elif self.text is not None:
            self.text = [str(t) for t in self.text] or None
        for name in ("labels", "vitals", "subgroups", "optional"):
            value = getattr(self, name)
            if value is None:
                value = []
            setattr(self, name, [value] if isinstance(value, str) else [str(v) for v in value])
        if self.label and self.labels:
            raise ConfigError("label and labels: use one ('label' names one column, 'labels' several 0/1 columns)")
        if self.label_sep is not None and not self.label:
            raise ConfigError("label_sep: needs 'label' (the column holding several names)")
        if self.label_sep == "":
            raise ConfigError("label_sep: must not be empty")
        if self.task is not None:
            check_choice("task", self.task, TASKS)
        if self.task in ("binary", "multiclass", "regression") and (self.labels or self.label_sep):
            raise ConfigError(f"task: '{self.task}' needs a single 'label' column without label_sep; got multi-label roles")
        if self.task == "multilabel" and self.label and not self.label_sep:
            raise ConfigError("task: 'multilabel' with a single 'label' column needs label_sep (e.g. ';')")
        if self.task is not None and not (self.label or self.labels):
            raise ConfigError(f"task: '{self.task}' needs 'label' or 'labels'")
        if self.classes is not None:
            self.classes = [text_value(c) for c in self.classes]
            if len(set(self.classes)) != len(self.classes) or not all(self.classes):
                raise ConfigError(f"classes: must be distinct, non-empty names, got {self.classes}")
            if self.task == "binary" and len(self.classes) != 2:
                raise ConfigError(f"classes: task 'binary' needs exactly 2 classes, got {self.classes}")
        if self.label_names is not None:
            expected = len(self.labels) if self.labels else (len(self.classes) if self.classes else None)
            if expected is not None and len(self.label_names) != expected:
                raise ConfigError(f"label_names: {len(self.label_names)} names given for {expected} classes")
        check_choice("channels", self.channels, (1, 3))
        check_choice("resize", self.resize, ("crop", "squash"))
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ConfigError(f"image_size: must be an integer >= 8, got {self.image_size!r}")
        if not isinstance(self.max_text_chars, int) or self.max_text_chars < 1:
            raise ConfigError(f"max_text_chars: must be a positive integer, got {self.max_text_chars!r}")
        if isinstance(self.window, list):
            self.window = tuple(self.window)  # type: ignore[assignment]
        check_window(self.window)
        if isinstance(self.window, tuple):
            self.window = (float(self.window[0]), float(self.window[1]))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                if len(value) not in (1, self.channels):
                    raise ConfigError(f"{name}: needs 1 or {self.channels} values (channels), got {value}")
                if name == "std" and any(float(v) <= 0 for v in value):
                    raise ConfigError(f"std: values must be > 0, got {value}")
        if self.signal_rate is not None and not float(self.signal_rate) > 0:
            raise ConfigError(f"signal_rate: must be > 0 Hz, got {self.signal_rate!r}")
        for name in ("signal_length", "video_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        bad_optional = [m for m in self.optional if m not in MODALITIES]
        if bad_optional:
            check_choice("optional", bad_optional[0], MODALITIES)
        for col, edges in self.bands.items():
            if list(edges) != sorted(edges) or len(set(edges)) != len(edges) or not edges:
                raise ConfigError(f"bands.{col}: edges must be increasing numbers, got {edges}")
        self.filters = {str(k): list(v) if isinstance(v, (list, tuple, set)) else [v] for k, v in self.filters.items()}
        self.deid = _deid_config(self.deid)
        self.audio_prep = _audio_prep(self.audio_prep)

    # ------------------------------------------------------------------ roles
    @property
    def text_columns(self) -> list[str]:
        """Text columns in join order (empty when text is not used)."""
        return list(self.text or [])

    @property
    def resolved_task(self) -> str | None:
        """The task: as set, else multilabel for ``labels``/``label_sep``, binary for 2 classes, multiclass."""
        if self.task is not None:
            return self.task
        if self.labels or self.label_sep:
            return "multilabel"
        if self.label:
            return "binary" if self.classes is not None and len(self.classes) == 2 else "multiclass"
        return None

    def modalities(self) -> list[str]:
        """Modalities this config reads, in a fixed order."""
        out = []
        for m in MODALITIES:
            if m == "text":
                if self.text_columns:
                    out.append(m)
            elif m == "vitals":
                if self.vitals:
                    out.append(m)
            elif getattr(self, m):
                out.append(m)
        return out

    def role_columns(self) -> dict[str, list[str]]:
        """Map each used role to its columns, e.g. ``{"image": ["image_path"], "text": ["caption"]}``."""
        roles: dict[str, list[str]] = {}
        for role in ("image", "signal", "audio", "video", "label", "question", "answer", "answer_type", "patient", "split"):
            value = getattr(self, role)
            if value:
                roles[role] = [value]
        for role, cols in (("text", self.text_columns), ("labels", self.labels), ("vitals", self.vitals), ("subgroups", self.subgroups)):
            if cols:
                roles[role] = list(cols)
        return roles

    def columns_used(self) -> list[str]:
        """Every column a role or filter names, each once, in role order."""
        seen: dict[str, None] = {}
        for cols in self.role_columns().values():
            for c in cols:
                seen.setdefault(c, None)
        for c in self.filters:
            seen.setdefault(c, None)
        return list(seen)

    def sample_columns(self) -> list[str]:
        """Columns that define a sample's content (duplicate detection compares these); subgroups excluded."""
        roles = self.role_columns()
        roles.pop("subgroups", None)
        seen: dict[str, None] = {}
        for cols in roles.values():
            for c in cols:
                seen.setdefault(c, None)
        return list(seen)

    def for_columns(self, columns: Iterable[str]) -> DataConfig:
        """Return this config for a manifest with ``columns``: the default split column is dropped when absent."""
        if self.split == "split" and "split" not in {str(c) for c in columns}:
            return dataclasses.replace(self, split=None)
        return self

    def check_columns(self, columns: Iterable[str], *, path: Any = None) -> None:
        """Raise :class:`DataError` naming each role column the manifest lacks and the close matches."""
        have = [str(c) for c in columns]
        missing = []
        for role, cols in self.role_columns().items():
            for c in cols:
                if c not in have:
                    close = difflib.get_close_matches(c, have, n=2, cutoff=0.6)
                    hint = f" (did you mean {' or '.join(repr(x) for x in close)}?)" if close else ""
                    missing.append(f"{role}='{c}'{hint}")
        missing += [f"filters='{c}'" for c in self.filters if c not in have]
        if missing:
            raise DataError(
                f"the manifest lacks the configured column(s) {', '.join(missing)}; it has: {', '.join(have)}",
                path=path,
            )

    def class_names(self) -> list[str] | None:
        """Display names of the outputs: ``label_names``, else ``labels`` or ``classes`` (None if unknown)."""
        if self.label_names is not None:
            return list(self.label_names)
        if self.labels:
            return list(self.labels)
        return list(self.classes) if self.classes is not None else None

    def subgroup_value(self, column: str, value: Any) -> str:
        """Return the subgroup a cell falls in: a band for banded numeric columns, else the text."""
        if column in self.bands:
            return band_label(value, self.bands[column])
        text = text_value(value)
        return "unknown" if is_missing(value) or not text else text

    def norm_stats(self) -> tuple[list[float], list[float]]:
        """Return per-channel (mean, std), each of length ``channels``."""
        mean = self.mean if self.mean is not None else (_IMAGENET_MEAN if self.channels == 3 else [sum(_IMAGENET_MEAN) / 3])
        std = self.std if self.std is not None else (_IMAGENET_STD if self.channels == 3 else [sum(_IMAGENET_STD) / 3])
        mean = [float(m) for m in mean] * (self.channels if len(mean) == 1 else 1)
        std = [float(s) for s in std] * (self.channels if len(std) == 1 else 1)
        return mean, std

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> DataConfig:
        """Build from a plain mapping (YAML), failing on unknown keys with the close matches."""
        return from_dict(cls, data, where="data")


_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]



def _deid_config(value: Any) -> Any:
    """Return a ``DeidConfig`` when medfuse.text.deid is importable, else the mapping; None/False: off."""
    if value is None or value is False:
        return None
    if value is True:
        value = {"enabled": True}
    if not isinstance(value, Mapping):
        return value  # already a config object
    value = {"enabled": True, **value}  # a deid section switches it on unless it says enabled: false
    try:
        from medfuse.text.deid.config import DeidConfig
    except ImportError:
        return dict(value)
    return from_dict(DeidConfig, dict(value), where="data.deid")


def _audio_prep(value: Any) -> dict[str, Any] | None:
    """Return the audio preparation as a checked, complete plain mapping (JSON-ready), or None for the defaults."""
    if value is None:
        return None
    from medfuse.core.config import to_dict
    from medfuse.data.audio import AudioConfig

    if isinstance(value, AudioConfig):
        return dict(to_dict(value))
    if not isinstance(value, Mapping):
        raise ConfigError(f"audio_prep: expected a mapping of AudioConfig fields (band, window_s, ...), got {value!r}")
    return dict(to_dict(from_dict(AudioConfig, dict(value), where="data.audio_prep")))
