"""One-off predictions for files: one JSON-ready dict per input, a bad file reported and skipped.

Images (PNG/JPEG/16-bit/DICOM) are read with :func:`medfuse.data.images.load_image` and prepared as at
training (the checkpoint's data config or recorded preprocessing); audio files go to a model with an
audio encoder. A diagnosis model gives probabilities per label and thresholded predictions; a VQA model
answers ``text`` as the question; a dual encoder gives zero-shot probabilities over its classes when it
knows them, else the image embedding.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from medfuse.core.errors import ConfigError, DataError
from medfuse.data import DataConfig, ImagePipeline, prepare_image
from medfuse.evaluate.tasks.base import model_kind, output_names, threshold_values
from medfuse.evaluate.tasks.sources import inference_config, resolve_checkpoint, stored_classes
from medfuse.evaluate.tasks.zero_shot import PromptSet, zero_shot_probabilities
from medfuse.models import LoadedCheckpoint
from medfuse.models.inference import model_device, probabilities, to_device, unwrap

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})


class _Predictor:
    """A loaded checkpoint with the input preparation and output naming of its training."""

    def __init__(self, ckpt: LoadedCheckpoint) -> None:
        self.ckpt = ckpt
        self.model = unwrap(ckpt.model).eval()
        self.kind = model_kind(self.model, ckpt)
        self.config: DataConfig = inference_config(ckpt)
        self.pipeline = ImagePipeline(*self.config.norm_stats())
        self.temperature = float(ckpt.extra.get("temperature") or 1.0)
        self.inputs = set(dict(getattr(self.model, "inputs", {}) or {}).values())
        if self.kind == "dual_encoder":
            self.inputs = {getattr(self.model, "image_key", "image"), getattr(self.model, "text_key", "text")}
        self.task = ckpt.config.head.type if ckpt.config.head is not None else None
        names = ckpt.label_names or self.config.class_names() or stored_classes(ckpt)
        self.names = [str(n) for n in names] if names else None

    # ------------------------------------------------------------------ inputs
    def image(self, path: Path) -> torch.Tensor:
        from medfuse.data.images import load_image

        cfg = self.config
        pixels = load_image(path, channels=cfg.channels, window=cfg.window, frame=cfg.frame)
        prepared = prepare_image(pixels, cfg.image_size, channels=cfg.channels, resize=cfg.resize)
        return self.pipeline(torch.from_numpy(prepared)).unsqueeze(0)

    def audio(self, path: Path) -> torch.Tensor:
        from medfuse.core.config import from_dict
        from medfuse.data.audio import AudioConfig, load_audio_windows

        stored = self.ckpt.extra.get("audio")
        audio_cfg = from_dict(AudioConfig, stored, where="audio") if isinstance(stored, Mapping) else AudioConfig()
        windows = np.ascontiguousarray(load_audio_windows(path, audio_cfg), dtype=np.float32)
        return torch.from_numpy(windows).unsqueeze(0)

    def batch(self, path: Path, text: str | None, vitals: torch.Tensor | None) -> dict[str, Any]:
        batch: dict[str, Any] = {"index": torch.zeros(1, dtype=torch.int64)}
        present: dict[str, torch.Tensor] = {}
        is_audio = path.suffix.lower() in AUDIO_SUFFIXES
        if is_audio:
            if "audio" not in self.inputs:
                raise DataError("this model has no audio encoder; give an image", path=path)
            batch["audio"] = self.audio(path)
            batch["audio_mask"] = torch.ones(batch["audio"].shape[:2], dtype=torch.bool)
            present["audio"] = torch.ones(1, dtype=torch.bool)
        else:
            image_key = getattr(self.model, "image_key", "image")
            if image_key not in self.inputs:
                raise DataError("this model reads no image; give a file of the modality it reads", path=path)
            batch[image_key] = self.image(path)
            present[image_key] = torch.ones(1, dtype=torch.bool)
        for key in ("text", "question", getattr(self.model, "text_key", "text")):
            if key in self.inputs and self.kind != "dual_encoder":
                batch[key] = [text or ""]
                present[key] = torch.tensor([bool(text)])
        if self.kind == "vqa" and not text:
            raise DataError("a VQA model needs a question: pass text=...", path=path)
        if "vitals" in self.inputs and vitals is not None:
            batch["vitals"] = vitals.view(1, -1)
            present["vitals"] = torch.tensor([bool(torch.isfinite(vitals).any())])
        batch["present"] = present
        return batch

    def vitals_vector(self, vitals: Sequence[float] | Mapping[str, float] | str | None) -> torch.Tensor | None:
        if vitals is None:
            return None
        if isinstance(vitals, str):  # JSON from the command line: a list or {column: value}
            try:
                vitals = json.loads(vitals)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"vitals: not valid JSON ({exc}); give a list or {{column: value}}") from None
            if not isinstance(vitals, (list, dict)):
                raise ConfigError("vitals: give a JSON list or {column: value} mapping")
        if isinstance(vitals, Mapping):
            columns = list(self.config.vitals)
            if not columns:
                raise ConfigError("vitals: the checkpoint records no vitals columns; pass a list in training order")
            unknown = [k for k in vitals if k not in columns]
            if unknown:
                raise ConfigError(f"vitals: unknown column(s) {unknown}; known: {', '.join(columns)}")
            values = [float(vitals[c]) if vitals.get(c) is not None else float("nan") for c in columns]
        else:
            values = [float("nan") if v is None else float(v) for v in vitals]
        return torch.tensor(values, dtype=torch.float32)

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, Any]:
        device = model_device(self.model)
        batch = to_device(batch, device)
        if self.kind == "dual_encoder":
            return self._zero_shot(batch)
        logits = self.model(batch).logits.float().cpu()
        if self.kind == "vqa":
            probs = logits.softmax(-1)[0]
            vocab = self.names or [str(i) for i in range(len(probs))]
            top = torch.topk(probs, min(5, len(probs)))
            return {"answer": vocab[int(probs.argmax())],
                    "probabilities": {vocab[int(i)]: float(p) for p, i in zip(top.values, top.indices)}}
        task = self.task or "multiclass"
        if task == "regression":
            return {"values": logits[0].tolist()}
        probs = probabilities(logits, task, self.temperature)[0]
        count = 1 if probs.ndim == 0 else len(probs)
        names = output_names(self.names, count)
        cut = threshold_values(self.ckpt.thresholds, names, count)
        if task == "binary":
            p, cut_value = float(probs), float(cut if not isinstance(cut, list) else cut[0])
            negative = self.names[0] if self.names and len(self.names) == 2 else f"not {names[0]}"
            return {"probabilities": {names[0]: p}, "prediction": names[0] if p >= cut_value else negative,
                    "threshold": cut_value}
        values = probs.tolist()
        out: dict[str, Any] = {"probabilities": dict(zip(names, values))}
        if task == "multiclass":
            out["prediction"] = names[int(np.argmax(values))]
        else:
            cuts = cut if isinstance(cut, list) else [float(cut)] * count
            out["predictions"] = [n for n, p, c in zip(names, values, cuts) if p >= c]
            out["threshold"] = cut
        return out

    def _zero_shot(self, batch: dict[str, Any]) -> dict[str, Any]:
        encode = cast(Callable[..., torch.Tensor], self.model.encode_image)
        key = str(getattr(self.model, "image_key", "image"))
        image = torch.nn.functional.normalize(encode(batch[key]).float(), dim=-1)
        if not self.names:
            return {"embedding": image[0].cpu().tolist()}
        task = "multiclass" if len(self.names) > 2 else "binary"
        probs, _ = zero_shot_probabilities(self.model, image.cpu(), self.names, task, PromptSet())
        if task == "binary":
            return {"probabilities": {self.names[1]: float(probs[0])},
                    "prediction": self.names[1] if probs[0] >= 0.5 else self.names[0]}
        return {"probabilities": dict(zip(self.names, probs[0].tolist())),
                "prediction": self.names[int(np.argmax(probs[0]))]}


def predict_files(
    checkpoint: str | Path | LoadedCheckpoint,
    inputs: Sequence[str | Path],
    *,
    text: str | Sequence[str] | None = None,
    vitals: Sequence[float] | Mapping[str, float] | str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one JSON-ready dict per input file: ``{"file", "probabilities", "prediction(s)", ...}``.

    text: one text for every input, or one per input (a VQA model's question). vitals: the vitals
    vector in training column order, or ``{column: value}`` (also as a JSON string). A file that cannot be read or scored
    yields ``{"file": ..., "error": "..."}`` and the others continue.
    """
    files = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    if text is not None and not isinstance(text, str) and len(text) != len(files):
        raise ConfigError(f"text: {len(text)} texts for {len(files)} inputs; give one text or one per input")
    predictor = _Predictor(resolve_checkpoint(checkpoint))
    vector = predictor.vitals_vector(vitals)
    for i, path in enumerate(files):
        item_text = text if text is None or isinstance(text, str) else text[i]
        try:
            out = predictor.predict(predictor.batch(path, item_text, vector))
        except Exception as exc:  # one bad file is reported; the others are still predicted
            message = str(exc) or type(exc).__name__
            log.warning("%s", message if str(path) in message else f"{path}: {message}")
            yield {"file": str(path), "error": message}
            continue
        yield {"file": str(path), "kind": predictor.kind, **out}
