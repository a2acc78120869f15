"""DICOM header de-identification (PS3.15 Basic Profile) on pydicom's bundled files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is the 'dicom' extra")

from pydicom.datadict import keyword_for_tag  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from medfuse.core import DataError  # noqa: E402
from medfuse.data.dicom_deid import (  # noqa: E402
    DicomDeidOptions,
    UIDMap,
    deidentify_dicom,
    deidentify_dicom_dir,
)
from medfuse.text.deid.dicom_profile import PROFILE, resolve_action  # noqa: E402
from medfuse.text.deid.surrogates import derive_key  # noqa: E402

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _with_phi(ds: Dataset) -> Dataset:
    """Add identifying attributes of several kinds, a private block and nested sequences."""
    ds.PatientName = "Okonkwo^Ngozi"
    ds.PatientID = "MRN-4471902"
    ds.PatientBirthDate = "19310314"
    ds.PatientAddress = "1420 Birch Dr, Dayton OH"
    ds.OtherPatientIDs = "ALT-99812"
    ds.InstitutionName = "Mercy General Hospital"
    ds.InstitutionAddress = "77 West 33rd Street"
    ds.ReferringPhysicianName = "Lindqvist^Rebecca"
    ds.PerformingPhysicianName = "Haddad^Omar"
    ds.OperatorsName = "Quintero^Luis"
    ds.AccessionNumber = "ACC7731"
    ds.StudyID = "ST5521"
    ds.DeviceSerialNumber = "SN-88231-X"
    ds.StationName = "CTSCANNER07"
    ds.StudyDescription = "CT chest for Ngozi Okonkwo"
    ds.ImageComments = "call 555-123-4567"
    ds.StudyDate = "20210314"
    ds.StudyTime = "101500"
    request = Dataset()
    request.RequestedProcedureID = "RP-778"
    request.ScheduledProcedureStepID = "SPS-1"
    ds.RequestAttributesSequence = Sequence([request])
    step = Dataset()
    step.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.9"
    ds.ReferencedPerformedProcedureStepSequence = Sequence([step])  # X/Z/D: emptied
    code = Dataset()  # an unlisted sequence: kept, its items cleaned
    code.CodeValue = "71250"
    code.PersonName = "Marchetti^Luca"  # (0040,A123) D
    code.FrameOfReferenceUID = "1.2.3.4.5.6.7.8"  # U
    code.ReviewerName = "Szabo^Anna"  # X/Z
    ds.ProcedureCodeSequence = Sequence([code])
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "Okonkwo private copy")
    return ds


@pytest.fixture
def dicom_tree(tmp_path: Path) -> tuple[Path, dict[str, Dataset]]:
    """Input folder: CT_small and MR_small, two files of one study, an unreadable file."""
    src = tmp_path / "in"
    (src / "study").mkdir(parents=True)
    originals: dict[str, Dataset] = {}
    for name in ("CT_small.dcm", "MR_small.dcm"):
        ds = _with_phi(pydicom.dcmread(TEST_FILES / name))
        ds.save_as(src / name)
        originals[name] = pydicom.dcmread(src / name)
    first = _with_phi(pydicom.dcmread(TEST_FILES / "CT_small.dcm"))
    first.BurnedInAnnotation = "YES"
    second = _with_phi(pydicom.dcmread(TEST_FILES / "CT_small.dcm"))
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([ref])
    first.save_as(src / "study" / "a.dcm")
    second.save_as(src / "study" / "b.dcm")
    originals["study/a.dcm"] = pydicom.dcmread(src / "study" / "a.dcm")
    originals["study/b.dcm"] = pydicom.dcmread(src / "study" / "b.dcm")
    (src / "notes.dcm").write_bytes(b"this is not a DICOM file" * 10)
    shutil.copy(TEST_FILES / "no_meta.dcm", src / "garbled.dcm")
    return src, originals


def _walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def _phi_values(ds: Dataset) -> list[str]:
    keys = ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "OtherPatientIDs", "InstitutionName",
            "ReferringPhysicianName", "AccessionNumber", "StudyID", "DeviceSerialNumber", "StudyInstanceUID",
            "SOPInstanceUID", "SeriesInstanceUID", "StudyDate")
    return [str(ds[k].value) for k in keys if k in ds and str(ds[k].value)]


def test_folder_run_removes_identifying_attributes(dicom_tree, tmp_path):
    src, originals = dicom_tree
    audit = deidentify_dicom_dir(src, tmp_path / "out", seed=5)
    for name, before in originals.items():
        after = pydicom.dcmread(tmp_path / "out" / name)  # re-reads without force
        for tag, (action, keyword) in PROFILE.items():
            if tag >> 16 == 0x0002 or tag not in before:
                continue
            act = resolve_action(action)
            if act == "X":
                assert tag not in after, keyword
            elif act == "Z" and keyword not in ("PatientID", "PatientName"):
                value = after[tag].value
                assert value in ("", None) or len(value) == 0, (keyword, value)
            elif act == "D" and after[tag].VR != "SQ":
                assert str(after[tag].value) != str(before[tag].value), keyword
            elif act == "U" and after[tag].VR == "UI":
                assert str(after[tag].value).startswith("2.25.") and after[tag].value != before[tag].value, keyword
        assert after.PatientID.startswith("ANON-") and after.PatientName == after.PatientID
        assert after.PatientIdentityRemoved == "YES"
        assert after.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert "113100" in after.DeidentificationMethod and len(after.DeidentificationMethod) <= 64
        assert not [e for e in _walk(after) if e.tag.is_private]
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert len(after.ReferencedPerformedProcedureStepSequence) == 0
        item = after.ProcedureCodeSequence[0]
        assert item.CodeValue == "71250" and str(item.PersonName) == "ANONYMOUS" and item.ReviewerName == ""
        assert item.FrameOfReferenceUID.startswith("2.25.")
        np.testing.assert_array_equal(after.pixel_array, before.pixel_array)
        text = str(after)
        for value in _phi_values(before):
            assert value not in text, (name, value)
    assert audit.files_failed == 2
    assert {e["file"] for e in audit.errors} == {"notes.dcm", "garbled.dcm"}
    assert all("DICOM" in e["reason"] for e in audit.errors)
    assert audit.files["study/a.dcm"].warnings and "BurnedInAnnotation" in audit.files["study/a.dcm"].warnings[0]
    assert audit.totals["burned_in_annotation"] == 1 and audit.totals["private_removed"] >= 4
    log_text = (tmp_path / "out.audit.json").read_text()
    for before in originals.values():
        for value in _phi_values(before):
            assert value not in log_text, value
    assert json.loads(log_text)["files_failed"] == 2


def test_uids_are_consistent_within_a_study_and_distinct_across(dicom_tree, tmp_path):
    src, originals = dicom_tree
    deidentify_dicom_dir(src, tmp_path / "out", seed=5)
    out = {name: pydicom.dcmread(tmp_path / "out" / name) for name in originals}
    a, b = out["study/a.dcm"], out["study/b.dcm"]
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # references follow
    assert b.ReferencedImageSequence[0].ReferencedSOPClassUID == originals["study/b.dcm"].SOPClassUID
    assert a.SOPClassUID == originals["study/a.dcm"].SOPClassUID  # standard UIDs stay
    assert out["MR_small.dcm"].StudyInstanceUID != out["CT_small.dcm"].StudyInstanceUID
    assert out["CT_small.dcm"].StudyInstanceUID == a.StudyInstanceUID  # same original study, same new UID
    assert all(len(str(d.SOPInstanceUID)) <= 64 for d in out.values())
    again = tmp_path / "again"
    deidentify_dicom_dir(src, again, seed=5)
    assert pydicom.dcmread(again / "study" / "a.dcm").SOPInstanceUID == a.SOPInstanceUID
    other = tmp_path / "other"
    deidentify_dicom_dir(src, other, seed=6)
    assert pydicom.dcmread(other / "study" / "a.dcm").SOPInstanceUID != a.SOPInstanceUID


def test_options_keep_private_and_patient_characteristics():
    ds = _with_phi(pydicom.dcmread(TEST_FILES / "MR_small.dcm"))
    ds.PatientAge = "095Y"
    ds.PatientSex = "F"
    out, report = deidentify_dicom(ds, uid_map=UIDMap(derive_key(0)),
                                   options=DicomDeidOptions(keep_private=True, keep_patient_characteristics=True,
                                                            patient_pseudonym=False))
    assert any(e.tag.is_private for e in out)
    assert out.PatientAge == "090Y" and out.PatientSex == "F"
    assert out.PatientID == "" and "PatientAddress" not in out
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113108"]
    assert "private attributes retained" in list(out.DeidentificationMethod)
    assert report.counts["removed"] > 0 and report.counts["uid_replaced"] > 0 and not report.burned_in


def test_profile_table_matches_the_dicom_dictionary():
    assert len(PROFILE) >= 200
    for tag, (action, keyword) in PROFILE.items():
        assert keyword_for_tag(tag) == keyword, (hex(tag), keyword)
        resolve_action(action)
    listed = {keyword for _, keyword in PROFILE.values()}
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "PatientAddress",
                    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
                    "OperatorsName", "AccessionNumber", "StudyID", "DeviceSerialNumber", "StationName",
                    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
                    "MediaStorageSOPInstanceUID", "RequestAttributesSequence", "StudyDate"):
        assert keyword in listed, keyword


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        deidentify_dicom_dir(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "in").mkdir()
    with pytest.raises(DataError, match="outside the input"):
        deidentify_dicom_dir(tmp_path / "in", tmp_path / "in" / "out")
