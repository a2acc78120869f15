"""Validation quarantines exactly the faulty rows, with the right reasons, and loses none."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfuse.core.errors import DataError
from medfuse.data import DataConfig, default_quarantine_path, read_manifest, validate_manifest

CONFIG = DataConfig(
    image="image_path", text="report", label="label", classes=["normal", "pneumonia"], vitals=["heart_rate"],
    patient="patient_id", split="split", subgroups=["sex", "age"],
)
COLUMNS = ["image_path", "patient_id", "split", "report", "heart_rate", "label", "sex", "age"]


def _png(path: Path, value: int = 100) -> None:
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (12, 10), dtype=np.uint8), mode="L").save(path)


def _faulty_rows(root: Path) -> tuple[list[list[str]], dict[int, str]]:
    """Rows (file line = position + 2) and the expected reason for each faulty line."""
    (root / "img").mkdir()
    for name in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"):
        _png(root / "img" / f"{name}.png", ord(name))
    (root / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not image data")
    full = (root / "img" / "a.png").read_bytes()
    (root / "img" / "truncated.png").write_bytes(full[: len(full) // 2])
    rows = [
        ["img/a.png", "p1", "train", "clear lungs", "72", "normal", "F", "34"],          # 2 ok
        ["img/b.png", "p2", "train", "opacity", "88", "pneumonia", "M", "71"],          # 3 ok
        ["img/missing.png", "p3", "train", "text", "70", "normal", "F", "50"],          # 4 missing file
        ["img/corrupt.png", "p4", "train", "text", "70", "normal", "M", "50"],          # 5 corrupt image
        ["img/c.png", "p5", "train", "text", "70", "flu", "F", "50"],                   # 6 unknown label
        ["img/d.png", "p6", "train", "   ", "70", "normal", "M", "50"],                 # 7 empty text
        ["img/e.png", "p7", "train", "text", "NaN", "normal", "F", "50"],               # 8 explicit NaN vital
        ["img/f.png", "p8", "train", "text", "", "pneumonia", "M", ""],                 # 9 ok: missing vital
        ["img/g.png", "p9", "train", "text", "fast", "normal", "F", "50"],              # 10 not numeric
        ["img/a.png", "p1", "train", "clear lungs", "72", "normal", "F", "34"],          # 11 duplicate of 2
        ["img/h.png", "p10", "train", "text", "60", "normal", "M", "20"],               # 12 ok
        ["img/i.png", "p10", "train", "text 2", "61", "normal", "M", "20"],             # 13 ok
        ["img/j.png", "p10", "val", "text 3", "62", "normal", "M", "20"],               # 14 patient leak
        ["img/truncated.png", "p11", "val", "text", "70", "normal", "F", "50"],         # 15 truncated image
        ["img/b.png", "p12", "val", "other text", "90", "pneumonia", "F", "90"],        # 16 ok
    ]
    expected = {4: "missing_file", 5: "unreadable_file", 6: "unknown_label", 7: "empty_text",
                8: "non_finite_value", 10: "not_numeric", 11: "duplicate_row", 14: "patient_in_two_splits",
                15: "unreadable_file"}
    return rows, expected


def _write_csv(path: Path, rows: list[list[str]], extra_line: str | None = None) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        if extra_line:
            fh.write(extra_line + "\n")


def _quarantine_reasons(report) -> dict[int, str]:
    return dict(zip(report.quarantine_frame["line"].tolist(), report.quarantine_frame["reason"].tolist()))


def test_injected_faults_csv(tmp_path):
    rows, expected = _faulty_rows(tmp_path)
    _write_csv(tmp_path / "manifest.csv", rows, extra_line="img/a.png,p13,train,too,many,fields,x,y,z")
    expected = {**expected, 17: "unparsable_row"}
    out = tmp_path / "out" / "q.csv"
    report = validate_manifest(tmp_path / "manifest.csv", CONFIG, quarantine_path=out)
    assert _quarantine_reasons(report) == expected
    assert report.read == 16 and report.kept == 6 and report.quarantined == 10
    assert report.read == report.kept + report.quarantined
    assert list(report.kept_frame.index) == [2, 3, 9, 12, 13, 16]
    assert report.reasons == {"missing_file": 1, "unreadable_file": 2, "unknown_label": 1, "empty_text": 1,
                              "non_finite_value": 1, "not_numeric": 1, "duplicate_row": 1,
                              "patient_in_two_splits": 1, "unparsable_row": 1}
    assert report.classes == ["normal", "pneumonia"]
    by_line = {r["line"]: r for r in report.quarantine_frame.to_dict("records")}
    assert "same values" in by_line[11]["message"] and "line 2" in by_line[11]["message"]
    assert "'p10'" in by_line[14]["message"] and "val" in by_line[14]["message"] and "train" in by_line[14]["message"]
    assert by_line[6]["column"] == "label" and "'flu'" in by_line[6]["message"]
    assert by_line[8]["column"] == "heart_rate" and "non-finite" in by_line[8]["message"]
    assert "missing.png" in by_line[4]["message"]
    # the quarantine file lists every bad row with its line, column, reason and the original row
    with out.open(newline="", encoding="utf-8") as fh:
        written = list(csv.DictReader(fh))
    assert [int(r["line"]) for r in written] == sorted(expected)
    assert json.loads(written[0]["row"]) == dict(zip(COLUMNS, rows[2]))
    assert written[-1]["row"].startswith("img/a.png,p13")  # raw text of the unparsable record
    assert report.to_dict()["quarantined"] == 10 and "quarantined 10" in report.summary()


def test_injected_faults_jsonl_with_unparsable_line(tmp_path):
    rows, expected = _faulty_rows(tmp_path)
    lines = [json.dumps(dict(zip(COLUMNS, r))) for r in rows]
    lines.insert(5, '{"image_path": "img/a.png", "patient_id": ')  # file line 6: cut off
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # JSONL lines are 1-based file lines: CSV line L is JSONL line L-1, shifted by one after the insert
    shift = {ln: (ln - 1 if ln - 1 < 6 else ln) for ln in expected}
    want = {shift[ln]: reason for ln, reason in expected.items()} | {6: "unparsable_row"}
    out = tmp_path / "q.jsonl"
    report = validate_manifest(tmp_path / "manifest.jsonl", CONFIG, quarantine_path=out)
    assert _quarantine_reasons(report) == want
    assert report.read == 16 and report.kept == 6 and report.read == report.kept + report.quarantined
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == sorted(want)
    first = next(r for r in records if r["reason"] == "missing_file")
    assert first["row"]["image_path"] == "img/missing.png"


def test_file_checks_can_be_skipped_or_shallow(tmp_path):
    rows, _ = _faulty_rows(tmp_path)
    _write_csv(tmp_path / "m.csv", rows)
    no_files = validate_manifest(tmp_path / "m.csv", CONFIG, check_files=False)
    assert not {"missing_file", "unreadable_file"} & set(no_files.reasons)
    shallow = validate_manifest(tmp_path / "m.csv", CONFIG, decode=False)
    assert shallow.reasons.get("missing_file") == 1 and "unreadable_file" not in shallow.reasons
    for report in (no_files, shallow):
        assert report.read == report.kept + report.quarantined == 15


def test_row_with_several_problems_counts_once(tmp_path):
    _png(tmp_path / "a.png")
    _write_csv(tmp_path / "m.csv", [["a.png", "p1", "train", "", "inf", "flu", "F", "3"]])
    report = validate_manifest(tmp_path / "m.csv", CONFIG)
    assert report.quarantined == 1 and sum(report.reasons.values()) == 1
    message = report.quarantine_frame.loc[0, "message"]
    assert "text is empty" in message and "'flu'" in message and "non-finite" in message


def test_missing_vitals_policy_and_text_length(tmp_path):
    _png(tmp_path / "a.png")
    _write_csv(tmp_path / "m.csv", [["a.png", "p1", "train", "x" * 50, "", "normal", "F", "3"],
                                    ["a.png", "p2", "train", "short", "70", "normal", "F", "3"]])
    strict = DataConfig(**{**CONFIG.__dict__, "allow_missing_vitals": False, "max_text_chars": 20})
    report = validate_manifest(tmp_path / "m.csv", strict)
    assert _quarantine_reasons(report) == {2: "text_too_long"}
    assert "allow_missing_vitals is false" in report.quarantine_frame.loc[0, "message"]
    strict_text_ok = DataConfig(**{**CONFIG.__dict__, "allow_missing_vitals": False})
    assert _quarantine_reasons(validate_manifest(tmp_path / "m.csv", strict_text_ok)) == {2: "missing_value"}
    assert validate_manifest(tmp_path / "m.csv", CONFIG).quarantined == 0


def test_optional_modalities_and_filters(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"image_path": "", "question": "q1", "answer": "a", "q_lang": "en", "split": "train"},
        {"image_path": "", "question": "q2", "answer": "a", "q_lang": "zh", "split": "train"},
        {"image_path": "", "question": "", "answer": "a", "q_lang": "en", "split": "train"},
    ]) + "\n")
    cfg = DataConfig(image="image_path", question="question", answer="answer", filters={"q_lang": "en"})
    report = validate_manifest(path, cfg)
    assert _quarantine_reasons(report) == {1: "missing_path", 2: "filtered", 3: "missing_path"}
    optional = DataConfig(image="image_path", question="question", answer="answer", filters={"q_lang": "en"},
                          optional=["image"])
    report = validate_manifest(path, optional)
    assert _quarantine_reasons(report) == {2: "filtered", 3: "empty_question"}
    assert report.read == report.kept + report.quarantined == 3


def test_multilabel_columns_and_majority_split(tmp_path):
    _png(tmp_path / "a.png")
    rows = [["a.png", "p1", "val", "t1", "1"], ["a.png", "p1", "train", "t2", "0"], ["a.png", "p1", "val", "t3", "2"],
            ["a.png", "p2", "train", "t4", "1"], ["a.png", "p2", "test", "t5", ""]]
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["image_path", "patient_id", "split", "report", "effusion"], *rows])
    cfg = DataConfig(image="image_path", text="report", labels=["effusion"], patient="patient_id", split="split")
    report = validate_manifest(tmp_path / "m.csv", cfg)
    # line 4 has an invalid label; of p1's remaining rows val (1) and train (1) tie: the split seen first stays
    assert _quarantine_reasons(report) == {3: "patient_in_two_splits", 4: "invalid_label", 6: "missing_label"}


def test_audio_files(tmp_path):
    sf = pytest.importorskip("soundfile")
    t = np.linspace(0, 1, 2000, endpoint=False)
    sf.write(tmp_path / "ok.wav", (0.3 * np.sin(2 * np.pi * 50 * t)).astype(np.float32), 2000, subtype="PCM_16")
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with (tmp_path / "a.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["audio_path", "label"], ["ok.wav", "normal"], ["cut.wav", "normal"], ["no.wav", "abnormal"]])
    report = validate_manifest(tmp_path / "a.csv", DataConfig(audio="audio_path", label="label", split=None))
    assert _quarantine_reasons(report) == {3: "unreadable_file", 4: "missing_file"}
    assert "truncated" in report.quarantine_frame.loc[0, "message"]



def test_wfdb_records(tmp_path):
    from scipy.io import savemat

    rec = tmp_path / "records"
    rec.mkdir()
    samples = np.arange(20, dtype=np.int16).reshape(2, 10)
    for name in ("r1", "r5"):
        savemat(rec / f"{name}.mat", {"val": samples}, format="4")
    good = "{0} 2 500 10\n{0}.mat 16 1000/mV 16 0 0 {1} 0 I\n{0}.mat 16 1000/mV 16 0 0 {2} 0 II\n"
    (rec / "r1.hea").write_text(good.format("r1", int(samples[0].sum()), int(samples[1].sum())))
    (rec / "r2.hea").write_text("r2 1 500 10\nr2.mat 16 1000/mV 16 0 0 0 0 I\n")  # its .mat is absent
    (rec / "r3.hea").write_text("garbage\n")
    (rec / "r5.hea").write_text(good.format("r5", 1, 2))  # checksums do not match the data: damaged
    with (tmp_path / "e.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["record_path", "dx"], ["records/r1", "a"], ["records/r2", "a"],
                                  ["records/r3", "a"], ["records/r4", "a"], ["records/r5", "a"]])
    cfg = DataConfig(signal="record_path", split=None)
    shallow = validate_manifest(tmp_path / "e.csv", cfg, decode=False)
    assert _quarantine_reasons(shallow) == {3: "missing_file", 4: "unreadable_file", 5: "missing_file"}
    full = validate_manifest(tmp_path / "e.csv", cfg)
    assert _quarantine_reasons(full) == {3: "missing_file", 4: "unreadable_file", 5: "missing_file", 6: "unreadable_file"}
    assert "checksum" in full.quarantine_frame.set_index("line").loc[6, "message"]


def test_preset_detected_and_column_errors(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image_path,label,label_name,split\na.png,0,normal,train\na.png,1,pneumonia,val\n")
    report = validate_manifest(read_manifest(tmp_path / "m.csv"))
    assert report.config.label == "label_name" and report.kept == 2
    with pytest.raises(DataError, match="lacks the configured column"):
        validate_manifest(tmp_path / "m.csv", {"image": "image_path", "text": "report"})
    (tmp_path / "nosplit.csv").write_text("image_path,label\na.png,x\n")
    assert validate_manifest(tmp_path / "nosplit.csv", {"image": "image_path", "label": "label"}).kept == 1
    (tmp_path / "bad.jsonl").write_text("{oops\n[1]\n")
    all_bad = validate_manifest(tmp_path / "bad.jsonl")
    assert (all_bad.read, all_bad.kept, all_bad.reasons) == (2, 0, {"unparsable_row": 2})
    assert default_quarantine_path("/x/data/manifest.jsonl", tmp_path) == tmp_path / "manifest.quarantine.csv"
