"""The served model: loaded once, with its training-time input preparation and output naming.

Every method here runs in the service's single model thread (never two at once), so hooks that
explanations place on the model cannot see another request's forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.index.embed import Embedder, open_checkpoint
from medfuse.models.inference import probabilities
from medfuse.serve.config import GenerationRequest, ServeConfig
from medfuse.serve.errors import ApiError
from medfuse.serve.generation import GENERATED_NOTE, load_generator, stream_text

log = logging.getLogger(__name__)


@dataclass
class ModelInput:
    """One request's inputs, prepared: ``image`` ``(C, S, S)`` normalised, the decoded ``pixels`` (for
    explanations and generators), ``text``, ``vitals`` ``(F,)`` (NaN = missing), ``audio`` windows ``(W, T)``
    and ``video`` frames ``(T, C, S, S)`` normalised; None when not given."""

    image: Tensor | None = None
    pixels: np.ndarray | None = None
    text: str | None = None
    vitals: np.ndarray | None = None
    audio: Tensor | None = None
    video: Tensor | None = None


def _vitals_key(model: Any) -> str | None:
    from medfuse.models.encoders.signal import VitalsMLPEncoder

    inputs = dict(getattr(model, "inputs", {}) or {})
    for name, encoder in getattr(model, "encoders", {}).items():
        if isinstance(encoder, VitalsMLPEncoder):
            return inputs.get(name, name)
    return None


def _modality_key(model: Any, modality: str) -> str | None:
    """Return the batch key of the model's encoder of ``modality`` (``audio``, ``video``), or None.

    The kind is the encoder class's ``modality``; an instance's ``modality`` is the batch key it reads.
    """
    inputs = dict(getattr(model, "inputs", {}) or {})
    for name, encoder in getattr(model, "encoders", {}).items():
        if getattr(type(encoder), "modality", "") == modality:
            return inputs.get(name, name)
    return None


def _audio_preparation(config: Any, extra: dict[str, Any]) -> Any:
    """Return the ``AudioConfig`` recordings were prepared with in training: the data config's ``audio_prep``,
    else the checkpoint's ``extra["audio"]``, else the dataset's defaults."""
    from medfuse.core.config import from_dict
    from medfuse.data.audio import AudioConfig

    stored = getattr(config, "audio_prep", None) or extra.get("audio")
    return from_dict(AudioConfig, dict(stored), where="audio") if isinstance(stored, dict) else AudioConfig()


def _padded_windows(items: Sequence[ModelInput]) -> tuple[Tensor, Tensor]:
    """Return the items' audio windows zero-padded to ``(B, W, T)`` and the ``(B, W)`` mask of real windows."""
    clips = [i.audio if i.audio is not None else torch.zeros(0, 0) for i in items]
    out = torch.zeros(len(clips), max(c.shape[0] for c in clips), max(c.shape[1] for c in clips))
    mask = torch.zeros(out.shape[:2], dtype=torch.bool)
    for row, clip in enumerate(clips):
        out[row, : clip.shape[0], : clip.shape[1]] = clip
        mask[row, : clip.shape[0]] = True
    return out, mask


class ModelService:
    """A checkpoint ready to serve: classify (batched), explain, embed and answer."""

    def __init__(self, cfg: ServeConfig) -> None:
        from medfuse.evaluate.tasks.base import output_names, threshold_values
        from medfuse.evaluate.tasks.sources import stored_classes

        self.cfg = cfg
        self.ckpt = open_checkpoint(cfg.checkpoint, cfg.resolved_device())
        self.embedder = Embedder(self.ckpt)
        self.model: Any = self.embedder.model
        self.kind = self.embedder.kind
        self.config = self.embedder.config
        self.device = self.embedder.device
        self.task = self.ckpt.config.head.type if self.ckpt.config.head is not None else None
        names = self.ckpt.label_names or self.config.class_names() or stored_classes(self.ckpt)
        self.names = [str(n) for n in names] if names else None
        self.temperature = float(self.ckpt.extra.get("temperature") or 1.0)
        self.has_temperature = self.ckpt.extra.get("temperature") is not None
        self.vitals_key = _vitals_key(self.model) if self.kind != "dual_encoder" else None
        self.vitals_names = list(self.config.vitals or self.ckpt.preprocessing.get("vitals") or []) if self.vitals_key else []
        dual = self.kind == "dual_encoder"
        self.audio_key = _modality_key(self.model, "audio") if not dual else None
        self.video_key = _modality_key(self.model, "video") if not dual else None
        self.audio_config = _audio_preparation(self.config, self.ckpt.extra) if self.audio_key else None
        count = int(self.ckpt.config.head.num_outputs) if self.ckpt.config.head is not None else len(self.names or [])
        self.outputs = output_names(self.names, count) if self.kind != "dual_encoder" else list(self.names or [])
        self.thresholds: dict[str, float] | None = None
        if self.task in ("binary", "multilabel"):
            cut = threshold_values(self.ckpt.thresholds, self.outputs, count)
            cuts = cut if isinstance(cut, list) else [cut] * count
            self.thresholds = dict(zip(self.outputs, (float(c) for c in cuts)))
        self.text_deid = _training_deid(self.config.deid)
        self.generator, self.generator_reason = load_generator(cfg.generator, str(self.device))

    # ------------------------------------------------------------------ description
    def calibration(self) -> dict[str, Any]:
        """Return the calibration note: the fitted temperature and the validation ECE from the model card."""
        metrics = self.ckpt.card.metrics if self.ckpt.card is not None else {}
        ece: float | None = metrics.get("ece")
        if self.kind == "dual_encoder":
            note = "Zero-shot probabilities from image-text similarity; they are not calibrated."
        elif self.has_temperature:
            note = f"Probabilities are temperature-scaled (T = {self.temperature:.3g}, fitted on the validation split)."
        else:
            note = "No calibration temperature was fitted for this model; probabilities are the raw model outputs."
        if ece is not None:
            note += f" Validation ECE recorded in the model card: {float(ece):.3f}."
        return {"temperature": self.temperature, "calibrated": self.has_temperature and self.kind != "dual_encoder",
                "validation_ece": float(ece) if ece is not None else None, "note": note}

    def reads(self) -> dict[str, bool]:
        """Return which inputs the model reads: image, text, vitals, audio, video."""
        return {"image": self.embedder.image_key is not None, "text": self.embedder.text_key is not None,
                "vitals": self.vitals_key is not None, "audio": self.audio_key is not None,
                "video": self.video_key is not None}

    def info(self) -> dict[str, Any]:
        """Return what a client needs to build requests: inputs, labels, vitals names, calibration."""
        card = self.ckpt.card
        return {
            "kind": self.kind,
            "task": self.task if self.kind != "vqa" else "vqa",
            "labels": self.outputs,
            "thresholds": self.thresholds,
            "inputs": self.reads(),
            "text_role": "question" if self.kind == "vqa" else ("report" if self.embedder.text_key else None),
            "vitals": self.vitals_names,
            "image": {"size": self.config.image_size, "channels": self.config.channels},
            "audio": {"sample_rate": self.audio_config.sample_rate, "window_s": self.audio_config.window_s,
                      "formats": ["wav", "flac"]} if self.audio_config is not None else None,
            "video": {"frames": self.config.video_frames, "size": self.config.image_size,
                      "formats": ["mp4", "avi", "mkv", "dicom"]} if self.video_key is not None else None,
            "generator": self.generator is not None,
            "streaming": self.generator is not None and callable(getattr(self.generator, "stream", None)),
            "calibration": self.calibration(),
            "explain": self.kind == "diagnosis" and self.embedder.image_key is not None,
            "card": {"name": card.name, "intended_use": card.intended_use, "limitations": card.limitations}
            if card is not None else None,
            "device": str(self.device),
        }

    # ------------------------------------------------------------------ batches
    def _batch(self, items: Sequence[ModelInput]) -> dict[str, Any]:
        size = len(items)
        batch: dict[str, Any] = {"index": torch.arange(size)}
        present: dict[str, Tensor] = {}
        image_key, text_key = self.embedder.image_key, self.embedder.text_key
        if image_key is not None and any(i.image is not None for i in items):
            shape = next(i.image for i in items if i.image is not None).shape
            batch[image_key] = torch.stack([i.image if i.image is not None else torch.zeros(shape) for i in items]).to(self.device)
            present[image_key] = torch.tensor([i.image is not None for i in items])
        if text_key is not None and any(i.text for i in items):
            batch[text_key] = [self._model_text(i.text) for i in items]
            present[text_key] = torch.tensor([bool(i.text) for i in items])
        if self.vitals_key is not None and any(i.vitals is not None for i in items):
            blank = np.full(len(self.vitals_names), np.nan, dtype=np.float32)
            vitals = torch.from_numpy(np.stack([i.vitals if i.vitals is not None else blank for i in items]))
            batch[self.vitals_key] = vitals.to(self.device)
            present[self.vitals_key] = torch.isfinite(vitals).any(dim=1)
        if self.audio_key is not None and any(i.audio is not None for i in items):
            windows, mask = _padded_windows(items)
            batch[self.audio_key], batch[f"{self.audio_key}_mask"] = windows.to(self.device), mask.to(self.device)
            present[self.audio_key] = torch.tensor([i.audio is not None for i in items])
        if self.video_key is not None and any(i.video is not None for i in items):
            shape = next(i.video for i in items if i.video is not None).shape
            batch[self.video_key] = torch.stack([i.video if i.video is not None else torch.zeros(shape)
                                                 for i in items]).to(self.device)
            present[self.video_key] = torch.tensor([i.video is not None for i in items])
        if not present:
            names = ", ".join(name for name, read in self.reads().items() if read)
            raise ApiError("missing_field", f"give at least one input the model reads ({names})", "image")
        batch["present"] = {k: v.to(self.device) for k, v in present.items()}
        return batch

    def _model_text(self, text: str | None) -> str:
        if not text:
            return ""
        text = text[: self.config.max_text_chars]
        return self.text_deid(text) if self.text_deid is not None else text

    @torch.no_grad()
    def classify_batch(self, items: Sequence[ModelInput]) -> list[dict[str, Any]]:
        """Return one result per item (calibrated probabilities, thresholded predictions), in one forward pass."""
        if self.kind == "dual_encoder":
            return self._zero_shot(items)
        logits = self.model(self._batch(items)).logits.float().cpu()
        if self.task == "regression":
            return [{"task": "regression", "values": dict(zip(self.outputs, row.tolist()))} for row in logits]
        probs = probabilities(logits, self.task or "multiclass", self.temperature)
        return [self._named(p) for p in probs]

    def _named(self, probs: Tensor) -> dict[str, Any]:
        values = [float(probs)] if probs.ndim == 0 else [float(v) for v in probs]
        out: dict[str, Any] = {"task": self.task, "probabilities": dict(zip(self.outputs, values))}
        if self.task == "multiclass" or self.kind == "vqa":
            out["prediction"] = self.outputs[int(np.argmax(values))]
            out["predictions"] = [out["prediction"]]
        elif self.thresholds is not None:
            out["predictions"] = [n for n, v in zip(self.outputs, values) if v >= self.thresholds[n]]
            if self.task == "binary":
                negative = self.names[0] if self.names and len(self.names) == 2 else f"not {self.outputs[0]}"
                out["prediction"] = self.outputs[0] if out["predictions"] else negative
        return out

    def _zero_shot(self, items: Sequence[ModelInput]) -> list[dict[str, Any]]:
        from medfuse.evaluate.tasks.zero_shot import PromptSet, zero_shot_probabilities

        if not self.names or len(self.names) < 2:
            raise ApiError("wrong_model", "this dual encoder knows no classes to score; use /v1/embed or /v1/retrieve")
        if any(i.image is None for i in items):
            raise ApiError("missing_field", "zero-shot classification needs an image", "image")
        embeds = self.embedder.images(torch.stack([i.image for i in items if i.image is not None]))
        task = "binary" if len(self.names) == 2 else "multiclass"
        probs, _ = zero_shot_probabilities(self.model, embeds, self.names, task, PromptSet())
        out = []
        for row in np.atleast_1d(probs) if task == "binary" else probs:
            values = [1.0 - float(row), float(row)] if task == "binary" else [float(v) for v in row]
            best = self.names[int(np.argmax(values))]
            out.append({"task": "zero_shot", "probabilities": dict(zip(self.names, values)), "prediction": best,
                        "predictions": [best]})
        return out

    # ------------------------------------------------------------------ explanations
    def explain(self, item: ModelInput, target: str | None) -> dict[str, Any]:
        """Return a saliency overlay (base64 PNG) for ``target`` (default: the top label), or why there is none."""
        if self.kind != "diagnosis" or item.image is None or item.pixels is None:
            reason = "explanations need an image and a diagnosis model" if self.kind == "diagnosis" else \
                f"explanations are not available for a {self.kind} model"
            return {"available": False, "reason": reason}
        try:
            from medfuse.evaluate.explain import attention_rollout, grad_cam, overlay, png_base64
        except ImportError:
            return {"available": False, "reason": "explanations are not available in this installation (medfuse.evaluate.explain)"}
        encoder = next((n for n, k in self.model.inputs.items() if k == self.embedder.image_key), "image")
        backbone = getattr(self.model.encoders[encoder], "model", None)
        batch = self._batch([item])
        with torch.no_grad():
            probs = probabilities(self.model(batch).logits.float().cpu(), self.task or "multiclass", self.temperature)[0]
        probs = probs.reshape(-1)
        index = int(probs.argmax()) if target is None else self.outputs.index(target)
        try:
            if backbone is not None and hasattr(backbone, "blocks") and hasattr(backbone, "patch_embed"):
                maps, method = attention_rollout(self.model, batch, encoder=encoder).maps, "attention rollout"
            else:
                chosen = 0 if probs.numel() == 1 else index
                maps, method = grad_cam(self.model, batch, target=chosen, encoder=encoder).maps, "grad-cam"
        except (ValueError, TypeError, RuntimeError) as exc:
            log.info("no explanation: %s", type(exc).__name__)
            return {"available": False, "reason": f"this image tower cannot be explained ({exc})"}
        display = self.embedder.prepare.display(item.pixels)
        return {"available": True, "method": method, "target": self.outputs[index],
                "probability": float(probs[index]), "overlay_png": png_base64(overlay(display, maps[0].cpu()))}

    def preview(self, pixels: np.ndarray) -> str:
        """Return the region the model sees as base64 PNG (browsers cannot show DICOM)."""
        from medfuse.serve.retrieval import png_base64

        return png_base64(self.embedder.prepare.display(pixels))

    def video_preview(self, frames: Tensor) -> list[str]:
        """Return the frames the model saw, ``(T, C, S, S)`` normalised, as base64 PNGs (browsers cannot play
        DICOM cine or Motion JPEG)."""
        from medfuse.serve.retrieval import png_base64

        pipeline = self.embedder.prepare.pipeline
        shown = (frames * pipeline.std.view(1, -1, 1, 1) + pipeline.mean.view(1, -1, 1, 1)).clamp(0.0, 1.0)
        shown = shown[:, 0] if shown.shape[1] == 1 else shown.permute(0, 2, 3, 1)
        return [png_base64(frame.numpy()) for frame in shown]

    # ------------------------------------------------------------------ embeddings, answers
    @torch.no_grad()
    def embed(self, item: ModelInput) -> dict[str, Any]:
        """Return L2-normalised embeddings: per modality for a dual encoder, the fused vector otherwise."""
        if self.kind == "dual_encoder":
            out: dict[str, list[float]] = {}
            if item.image is not None:
                out["image"] = self.embedder.images(item.image[None])[0].tolist()
            if item.text:
                out["text"] = self.embedder.texts([item.text])[0].tolist()
            if not out:
                raise ApiError("missing_field", "give an image or a text to embed", "image")
            return {"space": "dual_encoder", "dim": len(next(iter(out.values()))), "embeddings": out}
        fused = F.normalize(self.model(self._batch([item])).fused.float(), dim=-1)[0].cpu().tolist()
        return {"space": "fused", "dim": len(fused), "embeddings": {"fused": fused}}

    def answer(self, item: ModelInput, question: str) -> dict[str, Any]:
        """Return the answer to ``question`` about the image: the VQA classifier's, else the generator's."""
        if self.kind == "vqa":
            with torch.no_grad():
                logits = self.model(self._batch([ModelInput(item.image, item.pixels, question)])).logits.float().cpu()
            probs = probabilities(logits, "multiclass", self.temperature)[0]
            top = torch.topk(probs, min(5, probs.numel()))
            return {"method": "answer_classifier", "answer": self.outputs[int(top.indices[0])],
                    "candidates": {self.outputs[int(i)]: float(p) for p, i in zip(top.values, top.indices)}}
        if self.generator is None:
            raise ApiError("not_implemented", f"this {self.kind} model does not answer questions, and {self.generator_reason}")
        text = self.generator(GenerationRequest("answer", item.pixels, question))
        return {"method": "generator", "answer": str(text)}

    def draft(self, item: ModelInput, context: str) -> dict[str, Any]:
        """Return a report drafted by the generator for the image, with ``context`` (may be empty)."""
        if self.generator is None:
            raise ApiError("not_implemented", f"report drafting needs a generative model; {self.generator_reason}")
        text = self.generator(GenerationRequest("report", item.pixels, context))
        return {"method": "generator", "draft": str(text), "note": GENERATED_NOTE}

    def answer_pieces(self, item: ModelInput, question: str) -> tuple[dict[str, Any], Iterator[str]]:
        """Return the answer's other fields and its text in pieces: the generator's as it decodes, the
        classifier's in one piece. The pieces join to :meth:`answer`'s ``answer``."""
        if self.kind == "vqa":
            out = self.answer(item, question)
            return {"method": out["method"], "candidates": out["candidates"]}, iter([out["answer"]])
        if self.generator is None:
            raise ApiError("not_implemented", f"this {self.kind} model does not answer questions, and {self.generator_reason}")
        return {"method": "generator"}, stream_text(self.generator, GenerationRequest("answer", item.pixels, question))

    def draft_pieces(self, item: ModelInput, context: str) -> tuple[dict[str, Any], Iterator[str]]:
        """Return the generated draft's other fields and its text in pieces (joined: :meth:`draft`'s ``draft``)."""
        if self.generator is None:
            raise ApiError("not_implemented", f"report drafting needs a generative model; {self.generator_reason}")
        pieces = stream_text(self.generator, GenerationRequest("report", item.pixels, context))
        return {"method": "generator", "note": GENERATED_NOTE}, pieces


def _training_deid(deid: Any) -> Callable[[str], str] | None:
    """Return the text de-identification the model was trained with (None when off)."""
    if deid is None:
        return None
    try:
        from medfuse.core.config import from_dict
        from medfuse.text.deid import DeidConfig, deidentify_texts
    except ImportError as exc:
        raise ConfigError("the checkpoint was trained on de-identified text, but medfuse.text.deid is unavailable") from exc
    config = deid if isinstance(deid, DeidConfig) else from_dict(DeidConfig, {"enabled": True} if deid is True else dict(deid),
                                                                  where="data.deid")
    if not config.enabled:
        return None
    return lambda text: deidentify_texts([text], config)[0]
