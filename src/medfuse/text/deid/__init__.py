"""De-identification of clinical text: find HIPAA Safe Harbor identifiers and replace them.

>>> from medfuse.text.deid import Deidentifier
>>> Deidentifier().redact("Mrs. Jane Okafor, 92-year-old, MRN: 4471902").text
'Mrs. [NAME], [AGE]-year-old, MRN: [ID]'
"""

from medfuse.text.deid.audit import AuditLog, audit_path
from medfuse.text.deid.config import DeidConfig, deidentify_texts
from medfuse.text.deid.engine import MODES, Deidentifier, DeidResult
from medfuse.text.deid.ner import NERBackend, PresidioNER
from medfuse.text.deid.runner import deidentify_text_file
from medfuse.text.deid.spans import PHI_TYPES, PLACEHOLDERS, PHISpan, merge_spans
from medfuse.text.deid.surrogates import SurrogateMaker, derive_key

__all__ = [
    "MODES", "PHI_TYPES", "PLACEHOLDERS", "AuditLog", "DeidConfig", "DeidResult", "Deidentifier", "NERBackend",
    "PHISpan", "PresidioNER", "SurrogateMaker", "audit_path", "deidentify_text_file", "deidentify_texts",
    "derive_key", "merge_spans",
]
