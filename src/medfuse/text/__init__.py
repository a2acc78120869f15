"""Clinical text helpers: de-identification of reports (PHI found and replaced, with an audit)."""

from medfuse.text.deid import (
    PHI_TYPES,
    AuditLog,
    DeidConfig,
    Deidentifier,
    DeidResult,
    PHISpan,
    deidentify_text_file,
    deidentify_texts,
)

__all__ = [
    "PHI_TYPES", "AuditLog", "DeidConfig", "DeidResult", "Deidentifier", "PHISpan", "deidentify_text_file",
    "deidentify_texts",
]
