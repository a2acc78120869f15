"""Synthetic multimodal chest data: images, reports, vitals and labels that fusion can learn from, and on
request a heart sound, an echo clip and an ECG per study."""

from medfuse.data.synth.cardiac import CardiacState
from medfuse.data.synth.findings import LABELS, Finding
from medfuse.data.synth.generate import MANIFEST_COLUMNS, SynthResult, generate_synthetic, manifest_columns
from medfuse.data.synth.media import MEDIA_COLUMNS
from medfuse.data.synth.reports import Report, write_report
from medfuse.data.synth.vitals import VITALS

__all__ = [
    "LABELS", "MANIFEST_COLUMNS", "MEDIA_COLUMNS", "VITALS", "CardiacState", "Finding", "Report", "SynthResult",
    "generate_synthetic", "manifest_columns", "write_report",
]
