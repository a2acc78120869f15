"""Response bodies of the HTTP API (pydantic models: validated on the way out, documented at ``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_image, payload_too_large")
    message: str = Field(description="what went wrong and what to do, for people")
    field: str | None = Field(None, description="the request field at fault, e.g. image or vitals.heart_rate")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Calibration(BaseModel):
    temperature: float = Field(description="logits are divided by this before the activation")
    calibrated: bool = Field(description="whether the temperature was fitted on validation data")
    validation_ece: float | None = Field(None, description="expected calibration error on validation (model card)")
    note: str


class Explanation(BaseModel):
    available: bool
    method: str | None = None
    target: str | None = Field(None, description="the label explained")
    probability: float | None = None
    overlay_png: str | None = Field(None, description="base64 PNG: the saliency map over the image region the model saw")
    reason: str | None = Field(None, description="why there is no explanation")


class DicomEcho(BaseModel):
    modality: str | None = None
    rows: int
    columns: int
    window: list[float] | None = Field(None, description="[center, width] used for display")


class AudioEcho(BaseModel):
    format: str = Field(description="wav | flac")
    seconds: float = Field(description="length of the recording")
    sample_rate: int = Field(description="the file's sample rate (the model's rate is in /v1/info)")
    windows: int = Field(description="windows the recording was cut into for the model")


class VideoEcho(BaseModel):
    format: str = Field(description="mp4 | avi | mkv | dicom")
    frames: int = Field(description="frames in the clip")
    sampled: int = Field(description="frames the model saw, evenly spaced")
    width: int
    height: int
    modality: str | None = Field(None, description="DICOM modality (e.g. US), after de-identification")


class InputsUsed(BaseModel):
    image: bool
    format: str | None = Field(None, description="png | jpeg | dicom")
    dicom: DicomEcho | None = None
    text: bool
    vitals: list[str] = Field(default_factory=list, description="the vitals given (others are treated as missing)")
    audio: AudioEcho | None = Field(None, description="the recording given, when one was")
    video: VideoEcho | None = Field(None, description="the clip given, when one was")


class ClassifyResponse(BaseModel):
    request_id: str
    kind: str = Field(description="diagnosis | dual_encoder (zero-shot)")
    task: str | None = None
    probabilities: dict[str, float] = Field(default_factory=dict, description="label -> calibrated probability")
    predictions: list[str] = Field(default_factory=list, description="labels at or above their threshold (arg-max for multi-class)")
    prediction: str | None = None
    thresholds: dict[str, float] | None = None
    values: dict[str, float] | None = Field(None, description="regression outputs")
    calibration: Calibration
    inputs: InputsUsed
    explanation: Explanation | None = None
    image_png: str | None = Field(None, description="base64 PNG of the region the model saw (when preview=true)")
    video_frames_png: list[str] | None = Field(None, description="base64 PNGs of the clip's frames the model saw "
                                               "(when preview=true)")
    batch_size: int = Field(description="how many requests shared this forward pass")


class EmbedResponse(BaseModel):
    request_id: str
    space: str = Field(description="dual_encoder (images and texts comparable) | fused (diagnosis features)")
    dim: int
    normalized: bool = True
    embeddings: dict[str, list[float]]


class CaseHit(BaseModel):
    rank: int
    score: float = Field(description="cosine similarity (or minus the squared distance for an l2 index)")
    case_id: str
    text: str = Field(description="the case's text, de-identified")
    labels: list[str] = Field(default_factory=list)
    image: str = Field("", description="the case's image path as written in the indexed manifest")
    thumbnail_png: str | None = None


class RetrieveResponse(BaseModel):
    request_id: str
    query: str = Field(description="image | text")
    hits: list[CaseHit]


class AnswerResponse(BaseModel):
    request_id: str
    method: str = Field(description="answer_classifier | generator")
    question: str
    answer: str
    candidates: dict[str, float] | None = Field(None, description="top answers with probabilities (classifier)")


class ReportSource(BaseModel):
    rank: int
    score: float
    case_id: str
    labels: list[str] = Field(default_factory=list)


class ReportResponse(BaseModel):
    request_id: str
    method: str = Field(description="retrieval | generator")
    draft: str
    note: str
    sources: list[ReportSource] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    ready: bool
    model_loaded: bool
    index_loaded: bool
    batching: dict[str, Any]


class InfoResponse(BaseModel):
    model: dict[str, Any]
    index: dict[str, Any] | None
    endpoints: dict[str, bool] = Field(description="which /v1 endpoints can answer with this model and index")
    limits: dict[str, Any]
    auth: bool


class StatsResponse(BaseModel):
    batching: dict[str, Any]
    responses: dict[str, int] = Field(description="status code -> count")
    errors: dict[str, int] = Field(description="error code -> count")
    latency_ms: dict[str, dict[str, float]] = Field(description="endpoint -> p50/p95/p99 of recent requests")
    pending: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "malformed body"), (401, "missing or wrong X-API-Key"),
        (413, "upload, image, text, recording or clip too large"),
        (415, "not multipart/JSON, or a file of a type the field does not take"), (422, "an invalid field"),
        (501, "not available for this model or index"), (503, "not ready or overloaded"), (504, "timed out"),
    )
}
