"""The one error shape of the service: ``{"error": {"code", "message", "field"}}`` with a 4xx/5xx status."""

from __future__ import annotations

from typing import Any

# Status codes of the stable error codes (clients branch on ``code``; ``message`` is for people).
STATUS = {
    "bad_request": 400,
    "invalid_body": 400,
    "invalid_text": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "image_too_large": 413,
    "text_too_long": 413,
    "audio_too_long": 413,
    "video_too_long": 413,
    "video_too_large": 413,
    "unsupported_media_type": 415,
    "missing_field": 422,
    "unknown_field": 422,
    "duplicate_field": 422,
    "invalid_field": 422,
    "invalid_image": 422,
    "invalid_dicom": 422,
    "no_pixel_data": 422,
    "invalid_audio": 422,
    "invalid_video": 422,
    "invalid_vitals": 422,
    "unknown_vitals": 422,
    "unsupported_input": 422,
    "wrong_model": 422,
    "not_implemented": 501,
    "not_ready": 503,
    "overloaded": 503,
    "timeout": 504,
    "internal_error": 500,
}


class ApiError(Exception):
    """A request the service refuses: a stable ``code``, a message for people, the offending ``field``."""

    def __init__(self, code: str, message: str, field: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status if status is not None else STATUS.get(code, 400)

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        return error_body(self.code, self.message, self.field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """Return ``{"error": {"code", "message", "field"}}``."""
    return {"error": {"code": code, "message": message, "field": field}}
