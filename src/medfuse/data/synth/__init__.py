"""Synthetic multimodal chest radiograph data: images, reports, vitals and labels that fusion can learn from."""

from medfuse.data.synth.findings import LABELS, Finding
from medfuse.data.synth.generate import MANIFEST_COLUMNS, SynthResult, generate_synthetic
from medfuse.data.synth.reports import Report, write_report
from medfuse.data.synth.vitals import VITALS

__all__ = [
    "LABELS", "MANIFEST_COLUMNS", "VITALS", "Finding", "Report", "SynthResult", "generate_synthetic", "write_report",
]
