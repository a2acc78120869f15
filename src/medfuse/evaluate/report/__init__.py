"""The evaluation report: one self-contained HTML page from a ``results.json`` dictionary.

``write_report(results, out_dir)`` writes ``out_dir/report.html`` with inline CSS and SVG plots (ROC, PR,
reliability, confusion heat map, robustness and few-shot curves, bar charts), Grad-CAM overlays as
``data:`` images, subgroup tables and the model card. Nothing on the page reaches a network.
"""

from medfuse.evaluate.report.render import SECTIONS, render_report, unknown_keys, write_report

__all__ = ["SECTIONS", "render_report", "unknown_keys", "write_report"]
