"""The HTML report: every section present, self-contained, escaped, lenient with missing and odd pieces."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medfuse.evaluate.report import SECTIONS, render_report, unknown_keys, write_report
from medfuse.evaluate.report.html import fmt, fmt_p, png_src
from medfuse.evaluate.report.render import SectionSpec, render_section
from medfuse.evaluate.report.svg import Series, line_chart, nice_ticks, thin
from tests.report_fixture import build_results, build_task_results

SECTION_IDS = [spec.id for spec in SECTIONS]


class _Sections(HTMLParser):
    """Collects each section's class and text, and every src/href attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, Any]] = {}
        self.links: list[str] = []
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "section":
            self._current = values.get("id")
            self.sections[self._current or ""] = {"class": values.get("class", ""), "text": ""}
            self._depth = 0
        elif self._current is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.sections[self._current]["text"] += data


def parse(html: str) -> _Sections:
    parser = _Sections()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def full_html() -> str:
    return render_report(build_results())


def test_every_section_is_drawn_from_the_fixture(full_html: str) -> None:
    page = parse(full_html)
    for section_id in SECTION_IDS:
        assert full_html.count(f'id="{section_id}"') == 1, section_id
        assert page.sections[section_id]["class"] == "evaluated", section_id
        assert "Not evaluated" not in page.sections[section_id]["text"], section_id
    assert "extra" not in page.sections  # the fixture holds no key the report ignores


def test_report_is_self_contained(full_html: str) -> None:
    page = parse(full_html)
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in page.links)
    assert sum(link.startswith("data:") for link in page.links) == 6  # three Grad-CAM image pairs
    lowered = full_html.lower()
    for marker in ("<script", "<link", "@import", "url(", "<iframe", "<object"):
        assert marker not in lowered, marker
    assert set(re.findall(r"https?://[^\s\"'<>]+", full_html)) == {"http://www.w3.org/2000/svg"}


def test_every_svg_is_well_formed_xml(full_html: str) -> None:
    svgs = re.findall(r"<svg\b.*?</svg>", full_html, flags=re.S)
    assert len(svgs) >= 10
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.get("viewBox") and float(root.get("width", 0)) > 0 and float(root.get("height", 0)) > 0


def test_embedded_images_are_the_pngs_given() -> None:
    results = build_results()
    entry = results["artifacts"]["gradcam"][0]
    picture = Image.open(io.BytesIO(base64.b64decode(entry["overlay_png"])))
    assert picture.size == (64, 64) and picture.mode == "RGB"
    assert png_src(entry["overlay_png"]) == "data:image/png;base64," + entry["overlay_png"]
    assert png_src("not base64 !") is None
    assert png_src(base64.b64encode(b"GIF89a....").decode()) is None


def test_empty_results_show_every_section_as_not_evaluated(tmp_path: Any) -> None:
    path = write_report({}, tmp_path / "out")
    html = path.read_text(encoding="utf-8")
    assert path.name == "report.html"
    page = parse(html)
    for spec in SECTIONS:
        section = page.sections[spec.id]
        assert section["class"] == "missing"
        assert "Not evaluated." in section["text"] and spec.needs in section["text"]
    assert html.count("(not evaluated)") == len(SECTIONS)


def test_strings_from_data_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    results = {
        "task": evil,
        "metrics": {evil: {"value": 0.5, "ci95": None}},
        "artifacts": {"roc": {evil: {"fpr": [0, 1], "tpr": [0, 1], "auc": 0.5}},
                      "confusion": {"labels": [evil, "b"], "matrix": [[1, 2], [3, 4]]},
                      "gradcam": [{"title": evil, "overlay_png": '" onerror="x', "label": evil}]},
        "subgroups": {evil: {evil: {"n": 3, "small": True, "metrics": {"auroc": 0.5}, "gap": {"auroc": -0.1}}}},
        "model_card": {"intended_use": evil, "limitations": "a & b"},
        evil: "unknown",
    }
    html = render_report(results, title=evil)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b" in html
    assert 'onerror="x' not in html  # not a PNG: shown as a placeholder, never put into an attribute
    for svg in re.findall(r"<svg\b.*?</svg>", html, flags=re.S):
        ET.fromstring(svg)


def test_small_subgroups_are_flagged_and_kept(full_html: str) -> None:
    rows = re.findall(r'<tr class="small-group">(.*?)</tr>', full_html, flags=re.S)
    assert len(rows) == 1 and "site C" in rows[0] and "small n" in rows[0]
    assert "site A" in full_html and "site B" in full_html
    assert "Equalised-odds difference: <strong>" in full_html


def test_unknown_keys_are_listed_raw() -> None:
    results = build_results()
    results["notes"] = {"operator": "night shift"}
    results["artifacts"]["mystery_plot"] = [1, 2, 3]
    extra = unknown_keys(results)
    assert set(extra) == {"notes", "artifacts.mystery_plot"}
    html = render_report(results)
    section = parse(html).sections["extra"]
    assert "notes" in section["text"] and "night shift" in section["text"] and "mystery_plot" in section["text"]


def test_malformed_section_data_shows_a_visible_note() -> None:
    def broken(results: Any, sources: Any) -> str:
        raise ValueError("matrix is not square")

    html, has_data = render_section(SectionSpec("confusion", "Confusion", broken, "nothing"), {}, [])
    assert has_data and "Could not be drawn" in html and "matrix is not square" in html


def test_odd_shapes_do_not_break_the_page() -> None:
    results = {
        "metrics": {"auroc": {"value": None, "ci95": None}, "accuracy": 0.9},
        "artifacts": {
            "roc": {"x": {"fpr": [0, None, 1], "tpr": [0, 0.5, float("nan")]}},
            "robustness": {"missing_modality": {"image": {"rates": [0, 0.5], "values": [0.9]}}},
            "reliability": {"confidence": [None, 0.3], "accuracy": [None, 0.2], "count": [0, 5]},
            "few_shot": {"k": [1, 2], "values": [0.5, None]},
        },
    }
    page = parse(render_report(results))
    assert "n/a" in page.sections["summary"]["text"]
    assert "unreadable: 2 levels, 1 values" in page.sections["robustness"]["text"]
    assert page.sections["curves"]["class"] == "evaluated"
    assert page.sections["calibration"]["class"] == "evaluated"


def test_runner_layout_is_read(tmp_path: Any) -> None:
    results = build_task_results()
    html = write_report(results, tmp_path).read_text(encoding="utf-8")
    page = parse(html)
    for section_id in ("summary", "curves", "confusion", "calibration", "robustness", "subgroups", "efficiency",
                       "modality", "few-shot", "model-card"):
        assert page.sections[section_id]["class"] == "evaluated", section_id
    for section_id in ("gradcam", "retrieval", "generation", "vqa"):
        assert page.sections[section_id]["class"] == "missing", section_id
    per_label = results["tasks"]["classification"]["artifacts"]["per_label"]
    assert f"normal (AUC {fmt(per_label['normal']['auroc'])})" in html  # the area comes from the per-label table
    summary = page.sections["summary"]["text"]
    assert "not run: VQA scores VQA models" in summary and "failed: RuntimeError" in summary
    assert "After temperature scaling" in html and "mean ± 1 standard deviation over seeds" in html
    assert "&lt;40" in html and "small n" in page.sections["subgroups"]["text"]
    p_value = results["tasks"]["modality_comparison"]["artifacts"]["configurations"][1]["p_value"]
    assert fmt_p(p_value) in page.sections["modality"]["text"]
    assert set(unknown_keys(results)) == {"tasks.classification.artifacts.task", "tasks.classification.artifacts.labels",
                                          "tasks.fairness.artifacts.columns"}


def test_line_chart_maps_data_to_the_plot_area() -> None:
    svg = line_chart([Series("a", [0, 1], [0, 1])], title="t", x_label="x", y_label="y",
                     x_range=(0, 1), y_range=(0, 1), width=380)
    # plot area: left 50, top 10, width 318, height 210
    assert 'd="M50.0,220.0 L368.0,10.0"' in svg
    gap = line_chart([Series("a", [0, 0.5, 0.6, 1], [0, None, 0.6, 1])], title="t", x_label="x", y_label="y",
                     x_range=(0, 1), y_range=(0, 1))
    path = re.search(r'<path d="([^"]+)" fill="none"', gap)
    assert path is not None and path.group(1).count("M") == 2  # the missing point splits the line


def test_ticks_and_thinning() -> None:
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.71, 0.93) == [0.75, 0.8, 0.85, 0.9]
    kept = thin(list(range(10_000)), list(range(10_000)), limit=400)
    assert len(kept) <= 400 and kept[0] == 0 and kept[-1] == 9_999


def test_number_formats() -> None:
    assert fmt(0.91234) == "0.9123" and fmt(12345) == "12,345" and fmt(36.0) == "36"
    assert fmt(float("nan")) == "n/a" and fmt(None) == "—" and fmt(True) == "yes"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.0312) == "0.031" and fmt_p(None) == "—"


def test_numpy_values_are_read_like_plain_ones() -> None:
    results = {"metrics": {"auroc": {"value": np.float32(0.75), "ci95": np.array([0.7, 0.8])}},
               "artifacts": {"confusion": {"labels": ["a", "b"], "matrix": np.array([[3, 1], [2, 4]])},
                             "efficiency": {"params": np.int64(1_234_567)}}}
    page = parse(render_report(results))
    assert "0.7500" in page.sections["summary"]["text"] and "[0.7000, 0.8000]" in page.sections["summary"]["text"]
    assert page.sections["confusion"]["class"] == "evaluated"
    assert "1.23 M" in page.sections["efficiency"]["text"]
