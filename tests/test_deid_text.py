"""De-identification of clinical text: detection quality, replacement modes, runners and the audit."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medfuse.core import ConfigError, DataError
from medfuse.core.config import from_dict
from medfuse.core.errors import OptionalDependencyError
from medfuse.core.optional import available
from medfuse.text.deid import (
    PHI_TYPES,
    DeidConfig,
    Deidentifier,
    PHISpan,
    deidentify_text_file,
    deidentify_texts,
    merge_spans,
)
from medfuse.text.deid.dates import find_dates, shift_date
from tests.conftest import shared_path
from tests.phi_corpus import make_corpus, score_spans

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, list[tuple[int, int, str]]]]:
    return make_corpus(300, seed=11)


@pytest.fixture(scope="module")
def deid() -> Deidentifier:
    return Deidentifier()


# ---------------------------------------------------------------- detection quality
def test_corpus_recall_and_precision_per_type(corpus, deid):
    predicted = [[(s.start, s.end, s.type) for s in deid.find(text)] for text, _ in corpus]
    scores = score_spans(corpus, predicted)
    assert set(scores) == set(PHI_TYPES), f"corpus or detector misses types: {sorted(set(PHI_TYPES) ^ set(scores))}"
    for kind, s in scores.items():
        assert s["true"] >= 20, f"too few {kind} spans in the corpus to measure ({s['true']})"
        assert s["recall"] >= 0.99, f"{kind}: recall {s['recall']:.3f} < 0.99 ({s})"
        assert s["precision"] >= 0.90, f"{kind}: precision {s['precision']:.3f} < 0.90 ({s})"


def test_corpus_is_varied_and_reproducible():
    a, b, c = make_corpus(60, seed=3), make_corpus(60, seed=3), make_corpus(60, seed=4)
    assert a == b and a != c
    texts = "\n".join(t for t, _ in a)
    for label in ("MRN", "MR#", "Acc", "DOB", "Dr.", "signed"):
        assert label.lower() in texts.lower()
    assert any(not spans for _, spans in make_corpus(200, seed=5)), "the corpus needs reports without PHI"


def test_score_spans_counts_misses_and_false_alarms():
    corpus = [("Dr. Ada Lovelace seen 03/14/2021", [(4, 16, "NAME"), (22, 32, "DATE")])]
    perfect = score_spans(corpus, [[(4, 16, "NAME"), (22, 32, "DATE")]])
    assert perfect["NAME"]["recall"] == perfect["DATE"]["precision"] == 1.0
    partial = score_spans(corpus, [[(4, 7, "NAME"), (22, 32, "ID"), (0, 2, "NAME")]])
    assert partial["NAME"]["recall"] == 0.0 and partial["DATE"]["recall"] == 0.0
    assert partial["NAME"]["precision"] == 0.5 and partial["ID"]["precision"] == 0.0


CLINICAL_TEXT = [
    "History of Parkinson's disease and Hodgkin lymphoma. Graves disease on methimazole.",
    "Crohn disease of the terminal ileum. Alzheimer dementia. Down syndrome. Cushing syndrome excluded.",
    "Addison disease. Wilson's disease. Bell's palsy on the left. Barrett esophagus. Hashimoto thyroiditis.",
    "Kaposi sarcoma. Paget disease of bone. Raynaud phenomenon. Sjogren syndrome. Tourette syndrome.",
    "Wernicke encephalopathy. Lesion near Broca's area. Positive Babinski sign. Negative Homan sign.",
    "Positive Murphy sign. Foley catheter in place. Swan-Ganz catheter in the right pulmonary artery.",
    "Glasgow Coma Scale 14. Apgar scores 8 and 9. Jones fracture. Colles fracture. Small Baker cyst.",
    "Free fluid in the pouch of Douglas. Circle of Willis is patent. Kerley B lines. Bence Jones protein.",
    "Wolff-Parkinson-White syndrome. Epstein-Barr virus. Guillain-Barre syndrome. Jackson-Pratt drain.",
    "Motor strength 4/5 on the left and 5/5 on the right. Grade 2/6 murmur. BP 128/76. Vision 20/40.",
    "Appendectomy in 2009. A 67-year-old man, age 45, 88 yo. 12 x 8 mm nodule, 1.5 cm. T2 hyperintense.",
    "Normal. Will follow up. May represent atelectasis. Mark the site. Findings discussed with the team.",
    "POSITIVE MURPHY SIGN. PARKINSON'S DISEASE. MR ANGIOGRAPHY OF THE HEAD. Left PA is enlarged.",
    "History of ACL tear, seen with MRI. Neoplasm Name: Pilocytic Astrocytoma. Chest CT, PA and lateral.",
]


@pytest.mark.parametrize("text", CLINICAL_TEXT)
def test_clinical_words_and_eponyms_survive(deid, text):
    assert deid.find(text) == [], [(s.text, s.type, s.source) for s in deid.find(text)]


def test_a_title_makes_an_eponym_a_name_without_touching_the_disease(deid):
    text = "Seen by Dr. Parkinson for Parkinson's disease; Dr. Graves follows her Graves disease."
    names = [s.text for s in deid.find(text) if s.type == "NAME"]
    assert names == ["Parkinson", "Graves"]
    assert deid.redact(text).text == "Seen by Dr. [NAME] for Parkinson's disease; Dr. [NAME] follows her Graves disease."


@pytest.mark.parametrize("text, expected", [
    ("Patient: SMITH, JOHN A\nMRN: 1234567", "Patient: [NAME]\nMRN: [ID]"),
    ("Mr. Okonkwo's daughter (ngozi.okonkwo@example.com) called 555-123-4567.",
     "Mr. [NAME]'s daughter ([EMAIL]) called [PHONE]."),
    ("A 92-year-old seen on March 14, 2021 at Mercy General Hospital, Dayton, OH 45402.",
     "A [AGE]-year-old seen on [DATE] at [LOCATION], [LOCATION], OH [LOCATION]."),
    ("Lives at 1420 Birch Dr. SSN 123-45-6789. Portal https://portal.x.org/p/1 from 10.0.0.12.",
     "Lives at [ADDRESS]. SSN [SSN]. Portal [URL] from [IP]."),
    ("Electronically signed by: Rebecca T. Lindqvist, MD on 03/16/2021 10:22",
     "Electronically signed by: [NAME], MD on [DATE] 10:22"),
])
def test_placeholder_mode(deid, text, expected):
    assert deid.redact(text).text == expected


@pytest.mark.parametrize("text, date", [
    ("on 03/14/2021.", "03/14/2021"), ("2021-03-14", "2021-03-14"), ("14 March 2021", "14 March 2021"),
    ("March 14, 2021", "March 14, 2021"), ("seen Mar 14th", "Mar 14th"), ("since 3/14", "3/14"),
    ("14-MAR-2021", "14-MAR-2021"), ("Sunday, March 14, 2021", "Sunday, March 14, 2021"), ("14Mar2021", "14Mar2021"),
    ("in March 2021", "March 2021"), ("the 2nd of January 2020", "2nd of January 2020"), ("DOB: 19500314", "19500314"),
])
def test_dates_are_found_whole(text, date):
    spans = find_dates(text)
    start = text.index(date)
    covered = {i for s in spans for i in range(s.start, s.end)}
    assert all(i in covered for i in range(start, start + len(date)) if text[i].isalnum()), (text, spans)


def test_years_and_fractions_are_not_dates():
    assert find_dates("Diagnosed in 2015, surgery in 2019, strength 5/5, take 1/2 tablet, 4/5 to 5/5.") == []


@pytest.mark.parametrize("text, shifted", [
    ("03/14/2021", "03/04/2021"), ("2021-03-14", "2021-03-04"), ("March 14, 2021", "March 4, 2021"),
    ("14 Mar 2021", "4 Mar 2021"), ("Mar 14th", "Mar 4th"), ("14-MAR-21", "04-MAR-21"), ("3/1/2021", "2/19/2021"),
    ("Sunday, March 14, 2021", "Thursday, March 4, 2021"), ("20210314", "20210304"), ("March 2021", "March 2021"),
])
def test_shift_date_keeps_the_format(text, shifted):
    assert shift_date(text, -10) == shifted


def test_ages_over_89_only(deid):
    for text in ("92-year-old", "age 95", "aged 91 years", "93 yo", "94 y/o", "96M", "in her late 90s",
                 "ninety-two years old", "a nonagenarian", "101 years of age"):
        assert [s.type for s in deid.find(text)] == ["AGE"], text
    for text in ("67-year-old", "age 45", "89 yo", "85 years of age", "12 F catheter", "age 90 days"):
        assert not [s for s in deid.find(text) if s.type == "AGE"], text


# ---------------------------------------------------------------- spans
def test_merge_spans_takes_the_union_and_the_strongest_type():
    text = "MRN: 20210314 and Dr. Austin"
    spans = [PHISpan(5, 13, "DATE", "20210314", "pattern:date-compact"), PHISpan(5, 13, "ID", "20210314", "context:id"),
             PHISpan(22, 28, "LOCATION", "Austin", "dictionary:city"), PHISpan(22, 28, "NAME", "Austin", "context:title"),
             PHISpan(0, 3, "ID", "MRN", "pattern:x"), PHISpan(2, 4, "NAME", "N:", "dictionary:x")]
    merged = merge_spans(spans, text)
    assert [(s.start, s.end, s.type) for s in merged] == [(0, 4, "ID"), (5, 13, "ID"), (22, 28, "NAME")]
    assert all(s.text == text[s.start:s.end] for s in merged)
    with pytest.raises(ValueError, match="unknown value"):
        PHISpan(0, 1, "PERSON", "x", "ner:x")


def test_find_rejects_non_text(deid):
    with pytest.raises(DataError, match="expected a text"):
        deid.find(42)  # type: ignore[arg-type]
    assert deid.find("") == [] and deid.redact("   ").text == "   "


# ---------------------------------------------------------------- surrogates
REPORT = ("Patient: SMITH, JOHN\nDOB: 03/14/1950. Mr. Smith was seen on 2021-03-01 by Dr. Okonkwo "
          "and again on 03/11/2021. Call 555-123-4567. MRN: 1234567. Lives in Dayton, OH 45402.")


def test_surrogates_are_consistent_and_keep_intervals():
    deid = Deidentifier(mode="surrogate", seed=7)
    out = deid.redact(REPORT, patient_id="p-1").text
    for original in ("SMITH", "JOHN", "Smith", "Okonkwo", "555-123-4567", "1234567", "Dayton", "45402", "03/14/1950"):
        assert original not in out
    again = Deidentifier(mode="surrogate", seed=7).redact(REPORT, patient_id="p-1").text
    assert out == again
    smith = deid.redact("Mr. Smith", patient_id="p-2").text.split()[-1]
    assert smith.upper() in out and smith in out  # SMITH and Smith map to the same surname, case kept
    assert Deidentifier(mode="surrogate", seed=8).redact(REPORT, patient_id="p-1").text != out
    dates = [s.text for s in Deidentifier().find(out) if s.type == "DATE"]
    first, second = dt.date.fromisoformat(dates[1]), dt.datetime.strptime(dates[2], "%m/%d/%Y").date()
    assert (second - first).days == 10
    shift = (first - dt.date(2021, 3, 1)).days
    assert -365 <= shift <= -1
    other = Deidentifier(mode="surrogate", seed=7).redact("seen on 2021-03-01", patient_id="p-9").text
    assert other != "seen on " + dates[1] or shift == 0  # another patient, another offset (almost surely)


def test_surrogate_ages_are_grouped():
    assert Deidentifier(mode="surrogate").redact("A 97-year-old woman").text == "A 90+-year-old woman"


def test_surrogates_do_not_depend_on_the_process_hash_seed():
    code = ("import sys; sys.path[:0] = ['src', '.']\n"
            "from medfuse.text.deid import Deidentifier\n"
            f"print(Deidentifier(mode='surrogate', seed=3).redact({REPORT!r}, patient_id='p').text)")
    outs = {
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout
        for h in (1, 2)
    }
    assert len(outs) == 1


# ---------------------------------------------------------------- NER back-end
def test_presidio_backend_fails_with_the_extra_when_absent():
    if available("presidio_analyzer"):
        pytest.skip("presidio_analyzer is installed; the missing-extra message cannot be checked")
    with pytest.raises(OptionalDependencyError, match=r"medfuse\[deid-ner\]"):
        Deidentifier(ner="presidio")


def test_a_custom_tagger_adds_spans():
    def tagger(text: str) -> list[PHISpan]:
        i = text.find("Zorblat")
        return [PHISpan(i, i + 7, "NAME", "Zorblat", "ner:test")] if i >= 0 else []

    assert Deidentifier(ner=tagger).redact("zeta Zorblat agreed.").text == "zeta [NAME] agreed."
    with pytest.raises(ConfigError, match="ner"):
        Deidentifier(ner=42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- config
def test_deid_config_and_on_the_fly_use():
    cfg = from_dict(DeidConfig, {"enabled": True, "mode": "surrogate", "seed": 2, "text_columns": "report"})
    assert cfg.text_columns == ["report"]
    with pytest.raises(ConfigError, match="mode"):
        DeidConfig(mode="redact")
    texts = ["Seen by Dr. Okonkwo on 03/14/2021.", "No PHI here."]
    assert deidentify_texts(texts, DeidConfig()) == texts
    out = deidentify_texts(texts, DeidConfig(enabled=True))
    assert out == ["Seen by Dr. [NAME] on [DATE].", "No PHI here."]
    shifted = deidentify_texts(texts, cfg, patient_ids=["a", "b"])
    assert "Okonkwo" not in shifted[0] and "03/14/2021" not in shifted[0]
    with pytest.raises(ConfigError, match="patient ids"):
        deidentify_texts(texts, cfg, patient_ids=["a"])


# ---------------------------------------------------------------- runners and audit
def _phi_strings(corpus) -> set[str]:
    return {text[s:e] for text, spans in corpus for s, e, _ in spans if e - s >= 4}


def _leaks(text: str, spans: list[tuple[int, int, str]], out: str) -> list[str]:
    """PHI values of ``text`` still in ``out`` (values that also occur outside PHI in ``text`` excepted)."""
    leaked = []
    for s, e, _ in spans:
        value = text[s:e]
        rest = text[:s] + " " * (e - s) + text[e:]
        if len(value) >= 4 and value in out and value not in rest:
            leaked.append(value)
    return leaked


def test_manifest_runner_formats_and_audit_without_phi(tmp_path, corpus):
    rows = corpus[:40]
    df = pd.DataFrame({
        "image_path": [f"img/{i}.png" for i in range(len(rows))],
        "report": [t for t, _ in rows],
        "patient_id": [f"p{i % 7}" for i in range(len(rows))],
        "label": [i % 2 for i in range(len(rows))],
    })
    phi = _phi_strings(rows)
    for suffix in (".csv", ".parquet", ".jsonl"):
        src = tmp_path / f"m{suffix}"
        out = tmp_path / f"out{suffix}"
        if suffix == ".csv":
            df.to_csv(src, index=False)
        elif suffix == ".parquet":
            df.to_parquet(src, index=False)
        else:
            src.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")) + "\n{broken\n")
        audit = deidentify_text_file(src, out, mode="placeholder")
        back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out) if suffix == ".parquet" else pd.read_json(out, lines=True)
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
        assert back["image_path"].tolist() == df["image_path"].tolist() and back["label"].tolist() == df["label"].tolist()
        leaks = [v for (text, spans), r in zip(rows, back["report"]) for v in _leaks(text, spans, r)]
        assert not leaks, leaks[:5]
        log_text = (tmp_path / f"out{suffix}.audit.json").read_text()
        leaked = [p for p in phi if p in log_text]
        assert not leaked, f"PHI in the audit: {leaked[:5]}"
        log = json.loads(log_text)
        assert log["rows_processed"] == len(df)
        assert log["totals"]["NAME"] > 0 and log["files"][src.name]["columns"]["report"]["DATE"] > 0
        assert any("patient_id" in w for w in log["files"][src.name]["warnings"])
        if suffix == ".jsonl":
            assert log["rows_failed"] == 1 and log["errors"][0]["row"] == len(df) + 1
        assert audit.summary().startswith("de-identified 1 text file(s)")


def test_manifest_runner_column_choice_and_bad_cells(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text(json.dumps({"note": "Seen by Dr. Okonkwo.", "other": "Dr. Okonkwo"}) + "\n"
                   + json.dumps({"note": 12345, "other": "x"}) + "\n")
    audit = deidentify_text_file(src, tmp_path / "o.jsonl", text_columns=["note"])
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rows[0] == {"note": "Seen by Dr. [NAME].", "other": "Dr. Okonkwo"}
    assert rows[1]["note"] is None and audit.errors[0]["column"] == "note"
    with pytest.raises(DataError, match="not in the manifest"):
        deidentify_text_file(src, tmp_path / "o2.jsonl", text_columns=["report"])
    (tmp_path / "none.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no text column"):
        deidentify_text_file(tmp_path / "none.csv", tmp_path / "o.csv")


def test_text_file_and_folder_runner(tmp_path, corpus):
    folder = tmp_path / "reports"
    (folder / "sub").mkdir(parents=True)
    for i, (text, _) in enumerate(corpus[:6]):
        (folder / ("sub" if i % 2 else ".") / f"r{i}.txt").write_text(text, encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    audit = deidentify_text_file(folder, tmp_path / "out")
    assert audit.files["bad.txt"].status == "failed" and "UTF-8" in (audit.files["bad.txt"].reason or "")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.txt")) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("r*.txt"))
    assert (tmp_path / "out.audit.json").is_file()
    single = deidentify_text_file(folder / "r0.txt", tmp_path / "one.txt")
    assert single.rows_processed == 1 and "[" in (tmp_path / "one.txt").read_text()
    with pytest.raises(DataError, match="overwrite"):
        deidentify_text_file(folder / "r0.txt", folder / "r0.txt")
    with pytest.raises(DataError, match="unsupported"):
        deidentify_text_file(tmp_path / "out.audit.json", tmp_path / "x.json")


@pytest.mark.shared
def test_few_false_alarms_on_published_reports():
    """MedPix texts are published de-identified: names and IDs found there are false alarms."""
    rows = [json.loads(line) for line in shared_path("medpix2", "manifest.jsonl").read_text().splitlines()]
    texts = list(dict.fromkeys(r[c] for r in rows for c in ("caption", "case_history", "case_findings") if r.get(c)))[:1200]
    deid = Deidentifier()
    found = [s for t in texts for s in deid.find(t) if s.type in ("NAME", "ID", "PHONE", "SSN", "ADDRESS")]
    assert len(found) <= 0.003 * len(texts), [(s.text, s.source) for s in found[:10]]
