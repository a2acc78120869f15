"""Similar cases from a FAISS index, and reports drafted from the nearest cases' texts."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medfuse.core.errors import ConfigError
from medfuse.serve.engine import ModelInput, ModelService
from medfuse.serve.errors import ApiError

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 96
DRAFT_NOTE = ("Drafted from the most similar indexed case(s), not generated for this image: review, correct and "
              "complete it before any use.")


def png_base64(image: np.ndarray) -> str:
    """Return base64 PNG text of a float image in [0, 1] (``(H, W)`` or ``(H, W, 3)``) or a uint8 one."""
    from PIL import Image

    data = image if image.dtype == np.uint8 else np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class CaseIndex:
    """A retrieval index opened for serving, checked against the served model."""

    def __init__(self, directory: str | Path, service: ModelService, *, redact: bool = True) -> None:
        from medfuse.index import FaissIndex

        self.index = FaissIndex.load(directory)
        self.service = service
        dim = service.embedder.dim
        if self.index.dim != dim:
            raise ConfigError(f"index {directory}: holds {self.index.dim}-d vectors but the served checkpoint embeds "
                              f"{dim}-d ones; build the index with this checkpoint (medfuse index build)")
        self.modality = str(self.index.info.get("modality", "image"))
        self.root = Path(self.index.info["root"]) if self.index.info.get("root") else None
        self.has_texts = any(str(m.get("text") or "").strip() for m in self.index.meta)
        self._redactor = _redactor() if redact else None

    def info(self) -> dict[str, Any]:
        return {"count": len(self.index), "kind": self.index.kind, "metric": self.index.metric,
                "modality": self.modality, "space": self.index.info.get("space"), "has_texts": self.has_texts,
                "queries": self.query_modalities()}

    def query_modalities(self) -> list[str]:
        """Modalities a query may be: both for a dual encoder, the indexed one for fused features."""
        if self.service.embedder.space == "dual_encoder":
            return [m for m in ("image", "text") if self.service.embedder.reads(m)]
        return [self.modality]

    def search(self, item: ModelInput, k: int, *, thumbnails: bool = False) -> list[dict[str, Any]]:
        """Return the ``k`` nearest cases to the item's image (or text) with redacted texts."""
        modality = "image" if item.image is not None else "text"
        if modality not in self.query_modalities():
            raise ApiError("unsupported_input", f"this index holds {self.modality} features of a {self.service.kind} "
                           f"model; query it with: {', '.join(self.query_modalities())}", modality)
        embedder = self.service.embedder
        if item.image is not None:
            query = embedder.images(item.image[None])
        elif item.text:
            query = embedder.texts([item.text])
        else:
            raise ApiError("missing_field", "give an image or a text to search with", "image")
        hits = []
        for rank, hit in enumerate(self.index.search(query.numpy(), k)[0], start=1):
            meta = hit.meta
            entry = {"rank": rank, "score": round(hit.score, 6), "case_id": str(meta.get("case_id", "")),
                     "text": self._redact(str(meta.get("text") or "")), "labels": list(meta.get("labels") or []),
                     "image": str(meta.get("image") or "")}
            if thumbnails:
                entry["thumbnail_png"] = self._thumbnail(str(entry["image"]))
            hits.append(entry)
        return hits

    def draft(self, item: ModelInput, k: int = 3) -> dict[str, Any]:
        """Return a draft report: the nearest case's text, with the other near cases as alternatives."""
        if not self.has_texts:
            raise ApiError("not_implemented", "the loaded index holds no texts to draft a report from")
        hits = [h for h in self.search(item, max(k, 1)) if h["text"].strip()]
        if not hits:
            raise ApiError("not_implemented", "no similar indexed case has a text to draft from")
        return {"method": "retrieval", "draft": hits[0]["text"], "note": DRAFT_NOTE,
                "sources": [{k2: h[k2] for k2 in ("rank", "score", "case_id", "labels")} for h in hits],
                "alternatives": [h["text"] for h in hits[1:]]}

    def _redact(self, text: str) -> str:
        if not text or self._redactor is None:
            return text
        return self._redactor(text)

    def _thumbnail(self, relative: str) -> str | None:
        if not relative or self.root is None:
            return None
        from medfuse.data.images import load_image
        from medfuse.data.transforms import prepare_image

        path = self.root / relative
        try:
            pixels = load_image(path, channels=1)
        except Exception as exc:  # a missing or unreadable case image only loses its thumbnail
            log.debug("no thumbnail for an indexed case (%s)", type(exc).__name__)
            return None
        return png_base64(prepare_image(pixels, THUMBNAIL_SIDE, channels=1, resize="crop")[0])


def _redactor() -> Any:
    try:
        from medfuse.text.deid import Deidentifier
    except ImportError:
        log.warning("medfuse.text.deid is unavailable: indexed case texts are returned as stored")
        return None
    deid = Deidentifier()
    return lambda text: deid.redact(text).text
