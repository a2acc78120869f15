"""``ManifestDataset``: rows of a (validated) manifest as samples for the batch contract.

A sample is a dict: ``index`` (position in the dataset), ``line`` (file line), ``patient_id``, the
modalities the config names (``image`` ``(C, S, S)``, ``text`` str, ``vitals`` ``(F,)`` with NaN for missing,
``audio`` ``(W, T)`` windows), ``labels`` (class index, multi-hot ``(K,)`` or number), ``question`` /
``answer`` / ``answer_type`` strings, ``signal`` ``(C, T)``, ``video`` ``(T, C, S, S)``, ``subgroups`` (column -> value, age banded) and ``present`` (modality ->
bool). :class:`medfuse.data.loader.Collate` turns a list of them into a batch.

A sample that fails to load (corrupt file, unreadable audio) never stops a run: the dataset logs it once,
counts it (across DataLoader workers) and returns a marker ``{"index", "line", "failed"}`` that the collate
drops. Later epochs skip the failed row without retrying.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medfuse.core.errors import ConfigError
from medfuse.data.cache import ImageCache, cache_key
from medfuse.data.columns import CellError, LabelEncoder
from medfuse.data.config import DataConfig
from medfuse.data.manifest import Manifest, parse_number, read_manifest, text_value
from medfuse.data.presets import resolve_config
from medfuse.data.splits import resolve_split
from medfuse.data.transforms import Augment, ImagePipeline, prepare_image

__all__ = ["ManifestDataset", "prepare_video"]

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


class ManifestDataset(Dataset):
    """Samples from the rows of one split of a manifest.

    Args:
        source: a :class:`~medfuse.data.validate.ValidationReport` (its kept rows, config and classes), a
            :class:`Manifest`, or a manifest path (read as is; run validation first for a report of bad rows).
        config: column roles (config, mapping, preset name, or None: the report's config or the preset
            detected from the columns).
        split: which split (``val`` also finds ``validate``/``dev``); None: every row.
        train: draw training augmentation (``augment``, default :class:`Augment`); else eval transform.
        augment: augmentation settings; ``False`` turns augmentation off even when ``train``.
        batch_transforms: return uint8 images and let the collate augment/normalise the whole batch
            (``True``), or leave them uint8 in the batch for :func:`~medfuse.data.loader.finish_images` to
            transform on the device (``"device"``; then call it with :attr:`pipeline`).
        cache_dir: keep prepared uint8 images in a memory-mapped cache there (decode once).
        classes: label classes in output order (default: the config's, the report's, or inferred from train).
        audio: :class:`medfuse.data.audio.AudioConfig` (or its mapping) for the ``audio`` role (default: the
            config's ``audio_prep``); a training set draws its augmentation.
        max_rows: keep only the first rows (quick runs).
    """

    def __init__(
        self,
        source: Any,
        config: DataConfig | Mapping[str, Any] | str | None = None,
        split: str | None = None,
        *,
        train: bool = False,
        augment: Augment | bool | None = None,
        batch_transforms: bool | str = False,
        cache_dir: str | Path | None = None,
        classes: Sequence[str] | None = None,
        audio: Any = None,
        max_rows: int | None = None,
    ) -> None:
        manifest, config, classes = _unpack_source(source, config, classes)
        cfg = resolve_config(config, manifest.columns).for_columns(manifest.columns)
        cfg.check_columns(manifest.columns, path=manifest.path)
        if classes is not None and cfg.label and cfg.resolved_task != "regression":
            cfg = dataclasses.replace(cfg, classes=list(classes))
        self.manifest = manifest
        self.config = cfg
        frame = _apply_filters(manifest, cfg)
        self.encoder = LabelEncoder.from_config(cfg, frame) if len(frame) else None
        self.split = None
        if split is not None:
            if not cfg.split:
                raise ConfigError(f"split: '{split}' asked for, but the config names no split column")
            self.split = resolve_split(split, frame[cfg.split].map(text_value).unique())
            frame = frame[frame[cfg.split].map(text_value) == self.split]
        if max_rows is not None:
            frame = frame.iloc[: int(max_rows)]
        self.frame = frame
        if batch_transforms not in (False, True, "device"):
            raise ConfigError(f"batch_transforms: expected False, True or 'device', got {batch_transforms!r}")
        self.train = train
        self.batch_transforms = batch_transforms
        aug = Augment() if augment is None or augment is True else (augment or None)
        self.pipeline = ImagePipeline(*cfg.norm_stats(), augment=aug if train else None)
        self._prepare_rows(audio)
        self.cache = self._make_cache(cache_dir) if cache_dir is not None and cfg.image else None
        self._failed = torch.zeros(len(frame), dtype=torch.bool).share_memory_()
        self._deid = _deid_function(cfg.deid)
        self._deid_memo: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ setup
    def _prepare_rows(self, audio: Any) -> None:
        cfg, frame = self.config, self.frame
        records = frame.to_dict("records")
        n = len(records)
        self.lines = np.asarray(frame.index, dtype=np.int64)
        self.patient_ids = [text_value(r.get(cfg.patient)) if cfg.patient else "" for r in records]
        self.paths: dict[str, list[Path | None]] = {
            kind: [self.manifest.resolve(r.get(getattr(cfg, kind))) for r in records]
            for kind in ("image", "audio", "signal", "video") if getattr(cfg, kind)
        }
        # one integer per distinct file: samples that share an image (questions about one scan) share a key
        self.file_keys = {kind: _file_keys(paths) for kind, paths in self.paths.items()}
        self.texts = [_join(r, cfg.text_columns)[: cfg.max_text_chars] for r in records] if cfg.text_columns else None
        self.vqa = {role: [text_value(r.get(getattr(cfg, role))) for r in records]
                    for role in ("question", "answer", "answer_type") if getattr(cfg, role)}
        self.subgroups = {c: [cfg.subgroup_value(c, r.get(c)) for r in records] for c in cfg.subgroups}
        self.vitals = np.full((n, len(cfg.vitals)), np.nan, dtype=np.float32)
        for i, r in enumerate(records):
            for j, c in enumerate(cfg.vitals):
                try:
                    value = parse_number(r.get(c))
                except ValueError:
                    value = None  # validation reports these; here they are missing values
                if value is not None:
                    self.vitals[i, j] = value
        self._bad_labels: dict[int, str] = {}
        self.targets = self._encode_targets(records)
        self.audio_config = _audio_config(audio if audio is not None else cfg.audio_prep) if cfg.audio else None

    def _encode_targets(self, records: list[dict[str, Any]]) -> np.ndarray | None:
        enc = self.encoder
        if enc is None:
            return None
        n = len(records)
        if enc.task in ("binary", "multiclass"):
            out: np.ndarray = np.full(n, IGNORE_INDEX, dtype=np.int64)
        elif enc.task == "multilabel":
            out = np.full((n, len(enc.classes)), np.nan, dtype=np.float32)
        else:
            out = np.full(n, np.nan, dtype=np.float32)
        for i, r in enumerate(records):
            try:
                out[i] = enc.encode(r)
            except CellError as exc:
                if exc.reason != "missing_label":
                    self._bad_labels[i] = f"{exc.reason}: {exc}"
        return out

    def _make_cache(self, cache_dir: str | Path) -> ImageCache:
        cfg = self.config
        paths = [str(p) if p is not None else "" for p in self.paths["image"]]
        prep = {"size": cfg.image_size, "channels": cfg.channels, "window": cfg.window, "frame": cfg.frame, "resize": cfg.resize}
        key = cache_key(paths, prep, self.manifest.path)
        return ImageCache(cache_dir, key, len(paths), cfg.channels, cfg.image_size)

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def task(self) -> str | None:
        """binary | multiclass | multilabel | regression, or None without labels."""
        return self.encoder.task if self.encoder is not None else None

    @property
    def classes(self) -> list[str] | None:
        """Label classes in output order (None without labels or for regression)."""
        return list(self.encoder.classes) if self.encoder is not None and self.encoder.classes else None

    @property
    def label_names(self) -> list[str] | None:
        """Display names of the outputs for the model card (``label_names`` of the config, else the classes)."""
        return self.config.label_names if self.config.label_names is not None else self.classes

    @property
    def modalities(self) -> list[str]:
        """Modalities the samples carry."""
        return self.config.modalities()

    def label_matrix(self) -> np.ndarray:
        """Return targets as ``(N, K)`` float32: one-hot (multi-class/binary), multi-hot, or ``(N, 1)`` numbers.

        Rows with a missing label are all zeros (classification) or NaN (multi-label, regression).
        """
        if self.targets is None or self.encoder is None:
            raise ConfigError("label_matrix: the config names no label column ('label' or 'labels')")
        if self.encoder.task in ("binary", "multiclass"):
            out = np.zeros((len(self), len(self.encoder.classes)), dtype=np.float32)
            ok = self.targets >= 0
            out[np.flatnonzero(ok), self.targets[ok]] = 1.0
            return out
        return self.targets.reshape(len(self), -1).astype(np.float32)

    def preprocessing(self) -> dict[str, Any]:
        """Return what a checkpoint needs to prepare inputs the same way (JSON-ready)."""
        mean, std = self.config.norm_stats()
        return {
            "image_size": self.config.image_size, "channels": self.config.channels, "resize": self.config.resize,
            "window": self.config.window, "mean": mean, "std": std, "max_text_chars": self.config.max_text_chars,
            "vitals": list(self.config.vitals), "task": self.task, "classes": self.classes, "label_names": self.label_names,
        }

    @property
    def n_failed(self) -> int:
        """Samples that failed to load so far (all processes)."""
        return int(self._failed.sum())

    @property
    def failed_indices(self) -> list[int]:
        """Positions of the samples that failed to load so far."""
        return torch.nonzero(self._failed).flatten().tolist()

    def group_keys(self, kind: str = "image") -> list[int]:
        """Return one integer per sample naming its ``kind`` file (image/audio/signal/video); -1 where absent."""
        if kind not in self.file_keys:
            raise ConfigError(f"train.group_by: '{kind}' is not an input of this data set (it has: {sorted(self.file_keys)})")
        return self.file_keys[kind].tolist()

    def collate_fn(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the batch of ``samples`` (see :class:`medfuse.data.loader.Collate`)."""
        from medfuse.data.loader import Collate

        return Collate(self.pipeline, defer=self.batch_transforms == "device")(samples)

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return sample ``index`` (see the module docstring), or a failure marker the collate drops."""
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        line = int(self.lines[index])
        if bool(self._failed[index]):
            return {"index": index, "line": line, "failed": "failed earlier"}
        try:
            if index in self._bad_labels:
                raise CellError("bad_label", self._bad_labels[index])
            return self._load(index, line)
        except Exception as exc:  # one unreadable sample must not stop a run: log once, count, skip
            self._failed[index] = True
            log.warning("%s: skipping the sample: %s", self.manifest.where(line), exc)
            return {"index": index, "line": line, "failed": str(exc)}

    def _load(self, index: int, line: int) -> dict[str, Any]:
        cfg = self.config
        sample: dict[str, Any] = {"index": index, "line": line, "patient_id": self.patient_ids[index]}
        present: dict[str, bool] = {}
        if cfg.image:
            path = self.paths["image"][index]
            present["image"] = path is not None
            sample["image"] = self._image(index, path)
            sample["image_key"] = int(self.file_keys["image"][index])
        if self.texts is not None:
            text = self.texts[index]
            sample["text"] = self._deidentified(text, self.patient_ids[index]) if self._deid is not None and text else text
            present["text"] = bool(text)
        if cfg.vitals:
            sample["vitals"] = torch.from_numpy(self.vitals[index].copy())
            present["vitals"] = bool(np.isfinite(self.vitals[index]).any())
        if cfg.audio:
            path = self.paths["audio"][index]
            present["audio"] = path is not None
            sample["audio"] = self._audio(path)
        if cfg.signal:
            path = self.paths["signal"][index]
            present["signal"] = path is not None
            sample["signal"] = self._signal(path)
        if cfg.video:
            path = self.paths["video"][index]
            present["video"] = path is not None
            sample["video"] = self._video(path)
        if self.targets is not None:
            target = self.targets[index]
            sample["labels"] = int(target) if target.ndim == 0 and target.dtype == np.int64 else (
                float(target) if target.ndim == 0 else torch.from_numpy(target.copy()))
        for role, values in self.vqa.items():
            sample[role] = values[index]
        if self.subgroups:
            sample["subgroups"] = {c: v[index] for c, v in self.subgroups.items()}
        sample["present"] = present
        return sample

    def _deidentified(self, text: str, patient_id: str) -> str:
        """Return ``text`` de-identified (memoised per process: case texts repeat across images)."""
        assert self._deid is not None
        key = (text, patient_id)
        if key not in self._deid_memo:
            self._deid_memo[key] = self._deid(text, patient_id)
        return self._deid_memo[key]

    def _image(self, index: int, path: Path | None) -> torch.Tensor:
        """Return the image ``(C, S, S)``: uint8 with ``batch_transforms``, else transformed float."""
        cfg = self.config
        if path is None:
            shape = (cfg.channels, cfg.image_size, cfg.image_size)
            return torch.zeros(shape, dtype=torch.uint8 if self.batch_transforms else torch.float32)
        pixels = self.cache.get(index) if self.cache is not None else None
        if pixels is None:
            pixels = self.decode_image(path)
            if self.cache is not None:
                self.cache.put(index, pixels)
        if not pixels.flags.writeable:  # e.g. a memory-mapped cache entry: torch wants a writable buffer
            pixels = pixels.copy()
        tensor = torch.from_numpy(pixels)
        return tensor if self.batch_transforms else self.pipeline(tensor)

    def decode_image(self, path: Path) -> np.ndarray:
        """Return the image at ``path`` decoded and prepared: uint8 ``(C, S, S)``."""
        from medfuse.data.images import load_image

        cfg = self.config
        image = load_image(path, channels=cfg.channels, window=cfg.window, frame=cfg.frame)
        return prepare_image(image, cfg.image_size, channels=cfg.channels, resize=cfg.resize)

    def _audio(self, path: Path | None) -> torch.Tensor:
        from medfuse.data.audio import load_audio_windows

        if path is None:
            return torch.zeros(0, 0)
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if self.train else None
        windows = load_audio_windows(path, self.audio_config, rng=rng)
        return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))

    def _signal(self, path: Path | None) -> torch.Tensor:
        """Return the waveform ``(C, T)`` float32 (missing samples as 0), resampled and cut as configured."""
        from medfuse.data.waveform import crop_or_pad, load_waveform, resample_waveform

        cfg = self.config
        if path is None:
            return torch.zeros(0, cfg.signal_length or 0)
        wave = load_waveform(path, sample_rate=cfg.signal_rate)
        if cfg.signal_rate is not None and wave.sample_rate != cfg.signal_rate:
            wave = resample_waveform(wave, cfg.signal_rate)
        signal = np.nan_to_num(wave.signal, nan=0.0)
        if cfg.signal_length is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if self.train else None
            signal = crop_or_pad(signal, cfg.signal_length, mode="random" if self.train else "center", rng=rng)
        return torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))

    def _video(self, path: Path | None) -> torch.Tensor:
        """Return ``video_frames`` frames ``(T, C, S, S)`` normalised like images."""
        cfg = self.config
        if path is None:
            return torch.zeros(cfg.video_frames, cfg.channels, cfg.image_size, cfg.image_size)
        return prepare_video(path, cfg, self.pipeline)

    def __repr__(self) -> str:
        return (f"ManifestDataset({self.manifest.name}, split={self.split!r}, n={len(self)}, "
                f"modalities={self.modalities}, task={self.task})")


def prepare_video(path: Path, config: DataConfig, pipeline: ImagePipeline) -> torch.Tensor:
    """Return the clip at ``path`` as samples carry it: ``config.video_frames`` frames ``(T, C, S, S)``, sampled
    evenly, resized to ``config.image_size`` and normalised with ``pipeline``'s mean and std like images."""
    from medfuse.data.video import load_video

    clip = load_video(path, num_frames=config.video_frames, size=config.image_size, channels=config.channels)
    frames = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
    frames = frames.unsqueeze(1) if frames.ndim == 3 else frames.permute(0, 3, 1, 2)
    mean, std = pipeline.mean.view(1, -1, 1, 1), pipeline.std.view(1, -1, 1, 1)
    return (frames - mean) / std


def _unpack_source(source: Any, config: Any, classes: Sequence[str] | None) -> tuple[Manifest, Any, Sequence[str] | None]:
    from medfuse.data.validate import ValidationReport

    if isinstance(source, ValidationReport):
        return source.kept_manifest(), config if config is not None else source.config, classes or source.classes
    if isinstance(source, Manifest):
        manifest = source
    elif isinstance(source, (str, Path)):
        manifest = read_manifest(source)
    else:
        raise ConfigError(f"source: expected a ValidationReport, Manifest or path, got {type(source).__name__}")
    if manifest.bad_rows:
        log.warning("%s: %d unparsable row(s) left out; run `medfuse validate` for the list",
                    manifest.where(), len(manifest.bad_rows))
    return manifest, config, classes


def _apply_filters(manifest: Manifest, cfg: DataConfig) -> Any:
    frame = manifest.dataframe
    if not cfg.filters or not len(frame):
        return frame
    keep = np.ones(len(frame), dtype=bool)
    for col, allowed in cfg.filters.items():
        names = {text_value(a) for a in allowed}
        keep &= frame[col].map(text_value).isin(names).to_numpy()
    if not keep.all():
        log.info("%s: %d row(s) set aside by filters %s", manifest.where(), int((~keep).sum()), cfg.filters)
    return frame.loc[keep]


def _file_keys(paths: Sequence[Path | None]) -> np.ndarray:
    """Return ``(N,)`` int64: the same integer for the same file, ``-1`` where there is none."""
    ids: dict[Path, int] = {}
    return np.asarray([-1 if p is None else ids.setdefault(p, len(ids)) for p in paths], dtype=np.int64)


def _join(row: Mapping[str, Any], columns: list[str]) -> str:
    from medfuse.data.validate import join_text

    return join_text(row, columns)


def _audio_config(value: Any) -> Any:
    from medfuse.data.audio import AudioConfig

    if value is None:
        return AudioConfig()
    if isinstance(value, AudioConfig):
        return value
    from medfuse.core.config import from_dict

    return from_dict(AudioConfig, value, where="audio")


def _deid_function(deid: Any) -> Callable[[str, str], str] | None:
    """Return ``(text, patient_id) -> de-identified text`` for the config's ``deid`` settings, or None when off."""
    if deid is None:
        return None
    if isinstance(deid, Mapping):  # a plain mapping: turn it into the text package's config
        from medfuse.core.config import from_dict
        from medfuse.text.deid import DeidConfig

        deid = from_dict(DeidConfig, dict(deid), where="data.deid")
    if not getattr(deid, "enabled", False):
        return None
    return functools.partial(_deidentify, config=deid)


def _deidentify(text: str, patient_id: str, *, config: Any) -> str:
    from medfuse.text.deid import deidentify_texts

    return deidentify_texts([text], config, [patient_id or None])[0]
