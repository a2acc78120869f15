"""Manifests read as they are (line numbers, bad rows), cell parsing, DataConfig and presets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medfuse.core.errors import ConfigError, DataError
from medfuse.data import (
    CellError,
    DataConfig,
    LabelEncoder,
    Manifest,
    band_label,
    detect_preset,
    guess_config,
    load_data_config,
    parse_number,
    preset,
    read_manifest,
    resolve_config,
    text_value,
)
from medfuse.data.presets import PRESETS


def test_csv_line_numbers_follow_the_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "image_path,report,label\r\n"
        "a.png,plain,0\r\n"
        "\r\n"
        'b.png,"two\nlines",1\r\n'
        "c.png,too,many,fields\r\n"
        "d.png,,0\r\n",
        encoding="utf-8",
    )
    m = read_manifest(path)
    assert list(m.lines) == [2, 4, 7]
    assert m.dataframe.loc[4, "report"] == "two\nlines"
    assert m.dataframe.loc[7, "report"] == ""  # empty cell kept as text, not NaN
    assert [(b.line, "expected 3 fields, found 4" in b.reason) for b in m.bad_rows] == [(6, True)]
    assert m.n_read == 4
    assert m.root == tmp_path
    assert m.resolve("x/y.png") == tmp_path / "x" / "y.png"
    assert m.resolve("") is None


def test_csv_keeps_text_exactly(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("\ufeffid,hr\n007,NaN\n8,\n", encoding="utf-8")
    frame = read_manifest(path).dataframe
    assert list(frame.columns) == ["id", "hr"]  # BOM stripped
    assert frame["id"].tolist() == ["007", "8"]
    assert frame["hr"].tolist() == ["NaN", ""]


def test_jsonl_bad_lines_are_not_fatal(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"image_path": "a.png", "hr": 70}\n'
        "\n"
        '{"image_path": "b.png", "hr": NaN}\n'
        '{"image_path": "c.png", broken\n'
        "[1, 2]\n"
        '{"image_path": "d.png", "hr": null, "extra": "x"}\n',
        encoding="utf-8",
    )
    m = read_manifest(path)
    assert list(m.lines) == [1, 3, 6]
    assert [b.line for b in m.bad_rows] == [4, 5]
    assert "not valid JSON" in m.bad_rows[0].reason and "JSON object" in m.bad_rows[1].reason
    assert m.dataframe.loc[3, "hr"] == "NaN"  # a NaN literal stays visible as text
    assert m.columns == ["image_path", "hr", "extra"]
    assert m.n_read == 5


def test_parquet_rows_are_numbered_from_one(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame({"image_path": ["a.png", "b.png"], "age": [30, 40]}).to_parquet(path)
    m = read_manifest(path)
    assert list(m.lines) == [1, 2] and m.dataframe["age"].tolist() == [30, 40] and m.format == "parquet"


def test_whole_file_problems_raise_with_the_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "m.txt").write_text("a\n1\n")
    with pytest.raises(DataError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.txt")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="appears twice") as info:
        read_manifest(tmp_path / "dup.csv")
    assert info.value.row == 1 and info.value.path.endswith("dup.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_manifest(tmp_path / "empty.csv")


def test_from_dataframe_numbers_rows_like_a_csv():
    m = Manifest.from_dataframe(pd.DataFrame({"a": [1, 2, 3]}), root="/data")
    assert list(m.lines) == [2, 3, 4] and str(m.root) == "/data" and m.name == "<memory>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("72", 72.0), (" 36.6 ", 36.6), (5, 5.0), (np.float32(1.5), 1.5), ("", None), ("N/A", None),
     (None, None), (float("nan"), None), (pd.NA, None)],
)
def test_parse_number_values_and_missing(value, expected):
    assert parse_number(value) == expected


@pytest.mark.parametrize(("value", "message"), [("NaN", "non-finite"), ("inf", "non-finite"),
                                                (float("inf"), "non-finite"), ("fast", "not a number")])
def test_parse_number_rejects_explicit_non_finite_and_text(value, message):
    with pytest.raises(ValueError, match=message):
        parse_number(value)


def test_text_value():
    assert text_value(3.0) == "3" and text_value(float("nan")) == "" and text_value(" a ") == "a"
    assert text_value(None) == "" and text_value(True) == "true"


def test_band_label():
    edges = [18.0, 40.0, 65.0]
    assert [band_label(v, edges) for v in ("3", 18, "39.5", 40, 64, "65", "", "N/A", "old")] == [
        "<18", "18-39", "18-39", "40-64", "40-64", "65+", "unknown", "unknown", "unknown"]


def test_data_config_validates_fields():
    with pytest.raises(ConfigError, match="task: unknown value 'multi'"):
        DataConfig(label="y", task="multi")
    with pytest.raises(ConfigError, match="channels"):
        DataConfig(image="p", channels=2)
    with pytest.raises(ConfigError, match="label and labels"):
        DataConfig(label="y", labels=["a"])
    with pytest.raises(ConfigError, match="window"):
        DataConfig(image="p", window=(40, 0))
    with pytest.raises(ConfigError, match="exactly 2 classes"):
        DataConfig(label="y", task="binary", classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match="did you mean 'data.image'"):
        DataConfig.from_mapping({"imag": "path"})
    cfg = DataConfig.from_mapping({"image": "p", "text": "report", "window": [40, 400], "filters": {"lang": "en"}})
    assert cfg.text_columns == ["report"] and cfg.window == (40.0, 400.0) and cfg.filters == {"lang": ["en"]}
    assert cfg.norm_stats()[0] == pytest.approx([0.485, 0.456, 0.406])
    gray = DataConfig(image="p", channels=1)
    assert len(gray.norm_stats()[0]) == 1


def test_data_config_roles_and_task():
    cfg = preset("synthetic")
    assert cfg.resolved_task == "multilabel" and cfg.modalities() == ["image", "text", "vitals"]
    assert "consolidation" in cfg.columns_used() and "sex" not in cfg.sample_columns()
    assert preset("pneumoniamnist").resolved_task == "binary"
    assert preset("medpix2").resolved_task == "multiclass"
    with pytest.raises(DataError, match=r"lacks the configured column\(s\) image='image_path' \(did you mean 'image_paths'\?\)"):
        cfg.check_columns(["image_paths", "report"])


SHARED_COLUMNS = {
    "medpix2": ["image_path", "case_id", "split", "modality_type", "modality", "plane", "location",
                "location_category", "age", "sex", "caption", "case_title", "case_history", "case_findings",
                "case_diagnosis", "differential_diagnosis", "topic_category", "acr_code"],
    "slake": ["image_path", "question", "answer", "answer_type", "q_lang", "split", "modality", "location",
              "base_type", "img_id"],
    "pneumoniamnist": ["image_path", "label", "label_name", "split"],
    "heartsound2016": ["audio_path", "record_id", "label", "label_name", "source_db", "split", "sample_rate", "duration_s"],
    "ecg_cinc2021": ["record_path", "record_id", "source", "leads", "sample_rate", "n_samples", "age", "sex",
                     "dx_snomed", "dx_names", "split"],
    "synthetic": ["image_path", "patient_id", "study_id", "split", "sex", "age", "view", "report", "heart_rate",
                  "resp_rate", "spo2", "temperature", "wbc", "crp", "consolidation", "effusion", "cardiomegaly",
                  "nodule", "pneumothorax"],
}


@pytest.mark.parametrize("name", sorted(SHARED_COLUMNS))
def test_detect_preset_from_columns(name):
    columns = SHARED_COLUMNS[name]
    assert detect_preset(columns) == name
    preset(name).check_columns(columns)  # every preset fits its own manifest


def test_detect_preset_unknown_and_guess():
    assert detect_preset(["a", "b"]) is None
    cfg = guess_config(["Image", "Report", "Diagnosis", "subject_id", "fold", "sex"])
    assert (cfg.image, cfg.text_columns, cfg.label, cfg.patient, cfg.split, cfg.subgroups) == (
        "Image", ["Report"], "Diagnosis", "subject_id", "fold", ["sex"])
    assert guess_config(["x", "y"]) is None
    with pytest.raises(ConfigError, match="no preset matches"):
        resolve_config(None, ["x", "y"])


def test_resolve_config_preset_with_overrides():
    cfg = resolve_config({"preset": "medpix2", "label": "modality_type", "image_size": 64})
    assert cfg.label == "modality_type" and cfg.image_size == 64 and cfg.patient == "case_id"
    with pytest.raises(ConfigError, match="did you mean"):
        resolve_config({"preset": "medpix2", "imagesize": 64})
    with pytest.raises(ConfigError, match="unknown data preset 'medpx2'; did you mean 'medpix2'"):
        resolve_config("medpx2")
    assert set(PRESETS.names()) >= set(SHARED_COLUMNS)


def test_load_data_config_from_recipe_yaml(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  manifest: m.csv\n  train_split: train\n  preset: slake\n  columns:\n    image_size: 96\n")
    cfg = load_data_config(recipe)
    assert cfg.question == "question" and cfg.image_size == 96 and cfg.filters == {"q_lang": ["en"]}
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio_path,record_id,label,label_name,split\n")
    assert load_data_config(manifest=manifest).audio == "audio_path"
    assert load_data_config({"image": "img"}, preset="pneumoniamnist").image == "img"


def test_label_encoder_kinds():
    frame = pd.DataFrame({"y": ["b", "a", "c", "z"], "split": ["train", "train", "train", "val"],
                          "dx": ["x;y", "", "y", "w"], "f1": ["1", "0", "", "2"]})
    enc = LabelEncoder.from_config(DataConfig(label="y"), frame)
    assert enc.classes == ("a", "b", "c") and enc.task == "multiclass"  # classes from train rows only
    assert enc.encode({"y": "c"}) == 2
    with pytest.raises(CellError) as info:
        enc.encode({"y": "z"})
    assert info.value.reason == "unknown_label"
    with pytest.raises(CellError) as info:
        enc.encode({"y": ""})
    assert info.value.reason == "missing_label"
    multi = LabelEncoder.from_config(DataConfig(label="dx", label_sep=";"), frame)
    assert multi.classes == ("x", "y") and multi.encode({"dx": "y;x"}).tolist() == [1.0, 1.0]
    assert multi.encode({"dx": ""}).tolist() == [0.0, 0.0]
    cols = LabelEncoder.from_config(DataConfig(labels=["f1"]), frame)
    assert cols.encode({"f1": "1"}).tolist() == [1.0]
    with pytest.raises(CellError, match="must be 0 or 1"):
        cols.encode({"f1": "2"})
    reg = LabelEncoder.from_config(DataConfig(label="f1", task="regression"), frame)
    assert reg.encode({"f1": "2"}) == 2.0 and math.isclose(reg.encode({"f1": " 0 "}), 0.0)
    binary = LabelEncoder.from_config(DataConfig(label="y", classes=["a", "b"]), frame)
    assert binary.task == "binary"
    with pytest.raises(DataError, match="needs 2 classes"):
        LabelEncoder.from_config(DataConfig(label="y", task="binary"), frame)
