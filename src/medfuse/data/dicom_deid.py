"""De-identify DICOM headers by the PS3.15 Basic Application Level Confidentiality Profile.

:func:`deidentify_dicom` applies the profile table of :mod:`medfuse.text.deid.dicom_profile` to one
dataset (sequences included, file meta included), removes private attributes, replaces UIDs through
a :class:`UIDMap` shared by a run, and records what it did. :func:`deidentify_dicom_dir` does this for
a folder tree and writes an audit log. Pixel data is never changed: a file whose
``BurnedInAnnotation`` is ``YES`` is still processed, with a warning, because its pixels may show
names or dates that only a review or masking of the image removes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medfuse.core import DataError, progress, require
from medfuse.text.deid.audit import AuditLog, audit_path
from medfuse.text.deid.dicom_profile import (
    DEIDENTIFICATION_METHOD,
    PATIENT_CHARACTERISTICS,
    PROFILE,
    PROFILE_CODE,
    RETAIN_PATIENT_CHARACTERISTICS_CODE,
    masked_action,
    resolve_action,
)
from medfuse.text.deid.surrogates import derive_key

__all__ = ["DicomDeidOptions", "DicomDeidReport", "UIDMap", "deidentify_dicom", "deidentify_dicom_dir"]

log = logging.getLogger(__name__)

_DICOM_ROOT = "1.2.840.10008."  # UIDs defined by the standard (classes, transfer syntaxes): kept
_KEEP_UIDS = {0x00020010, 0x00020012, 0x00020002}  # TransferSyntax, ImplementationClass, MediaStorageSOPClass
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT", "UI"}
_DUMMIES = {"PN": "ANONYMOUS", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0",
            "DS": "0", "AE": "ANONYMOUS", "CS": "ANONYMOUS", "SH": "ANONYMOUS", "LO": "ANONYMOUS", "ST": "ANONYMOUS",
            "LT": "ANONYMOUS", "UT": "ANONYMOUS", "UC": "ANONYMOUS"}
_PATIENT_ID, _PATIENT_NAME, _PATIENT_AGE = 0x00100020, 0x00100010, 0x00101010


class UIDMap:
    """New UIDs for old ones: ``2.25.<integer>`` from a keyed hash, so a run (and any run with the same
    key) maps the same original to the same new UID, and different originals to different ones."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.mapping: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\x00")
        new = self.mapping.get(uid)
        if new is None:
            digest = hmac.new(self._key, b"uid\x00" + uid.encode(), hashlib.sha256).digest()
            new = self.mapping[uid] = "2.25." + str(int.from_bytes(digest[:16], "big"))
        return new

    def pseudonym(self, value: str) -> str:
        """Return a stable pseudonym for a patient identifier (``ANON-`` and 12 hex digits)."""
        digest = hmac.new(self._key, b"patient\x00" + str(value).strip().encode(), hashlib.sha256).hexdigest()
        return f"ANON-{digest[:12].upper()}"


@dataclass
class DicomDeidOptions:
    """Choices of a DICOM de-identification.

    keep_private: keep private attributes (they are removed by default; vendors hide names there).
    patient_pseudonym: write a keyed pseudonym as PatientID and PatientName instead of empty values,
      so files of one patient stay linked (patient-level splits) without naming the patient.
    keep_patient_characteristics: keep sex, age, size, weight (Retain Patient Characteristics
      Option, DCM 113108); ages over 89 become ``090Y``.
    empty_unlisted_person_names: also empty person names (VR PN) the table does not list.
    """

    keep_private: bool = False
    patient_pseudonym: bool = True
    keep_patient_characteristics: bool = False
    empty_unlisted_person_names: bool = True


@dataclass
class DicomDeidReport:
    """What :func:`deidentify_dicom` did to one dataset: counts per action and warnings."""

    counts: Counter[str] = field(default_factory=Counter)
    burned_in: bool = False
    warnings: list[str] = field(default_factory=list)


def _value_is_empty(elem: Any) -> bool:
    return elem.value is None or elem.value == "" or (hasattr(elem.value, "__len__") and len(elem.value) == 0)


def _empty(elem: Any) -> None:
    if elem.VR == "SQ":
        elem.value = []
    elif elem.VR in _TEXT_VRS:
        elem.value = ""
    else:
        elem.value = None


def _dummy(elem: Any) -> None:
    if elem.VR == "SQ":
        elem.value = []
    elif elem.VR in _DUMMIES:
        elem.value = _DUMMIES[elem.VR][:16] if elem.VR in ("SH", "AE", "CS") else _DUMMIES[elem.VR]
    else:
        elem.value = None


def _map_uids(elem: Any, uid_map: UIDMap) -> int:
    values = elem.value if isinstance(elem.value, list) or type(elem.value).__name__ == "MultiValue" else [elem.value]
    new = [uid_map(v) if v and not str(v).startswith(_DICOM_ROOT) else v for v in values]
    changed = sum(1 for a, b in zip(values, new) if a != b)
    elem.value = new if len(new) != 1 else new[0]
    return changed


def _is_instance_uid(elem: Any) -> bool:
    keyword = elem.keyword or ""
    return elem.VR == "UI" and elem.tag not in _KEEP_UIDS and not keyword.endswith("ClassUID") and keyword != "TransferSyntaxUID"


def _cap_age(elem: Any) -> None:
    text = str(elem.value or "")
    if len(text) == 4 and text[:3].isdigit() and text[3] == "Y" and int(text[:3]) > 89:
        elem.value = "090Y"


def _clean(ds: Any, uid_map: UIDMap, options: DicomDeidOptions, report: DicomDeidReport) -> None:
    """Apply the profile to every attribute of ``ds``, recursing into sequence items."""
    for tag in list(ds.keys()):
        tag_int = int(tag)
        if tag_int & 0xFFFF == 0 and tag_int >> 16 != 0x0002:
            del ds[tag]  # group lengths are stale once attributes go
            continue
        if (tag_int >> 16) % 2 == 1:
            if not options.keep_private:
                del ds[tag]
                report.counts["private_removed"] += 1
            continue
        listed = PROFILE.get(tag_int)
        action = resolve_action(listed[0]) if listed else masked_action(tag_int)
        if options.keep_patient_characteristics and tag_int in PATIENT_CHARACTERISTICS:
            action = "K"
        if action == "X":
            del ds[tag]
            report.counts["removed"] += 1
            continue
        try:
            elem = ds[tag]
        except Exception:  # noqa: BLE001 - a value pydicom cannot decode: drop it rather than keep unknown content
            del ds[tag]
            report.counts["removed_undecodable"] += 1
            continue
        if action is None:
            if elem.VR == "UI" and _is_instance_uid(elem) and elem.value:
                report.counts["uid_replaced"] += _map_uids(elem, uid_map)
            elif elem.VR == "PN" and options.empty_unlisted_person_names and not _value_is_empty(elem):
                _empty(elem)
                report.counts["emptied"] += 1
            elif elem.VR == "SQ":
                for item in elem.value:
                    _clean(item, uid_map, options, report)
            continue
        if action == "Z":
            if not _value_is_empty(elem):
                _empty(elem)
                report.counts["emptied"] += 1
        elif action == "D":
            # A sequence to dummy (graphic annotations, observer identities) may hold free text: emptied.
            _dummy(elem)
            report.counts["dummied"] += 1
        elif action == "U":
            if elem.VR == "SQ":
                for item in elem.value:
                    _clean(item, uid_map, options, report)
            elif elem.value:
                report.counts["uid_replaced"] += _map_uids(elem, uid_map)
        elif action == "K":
            if tag_int == _PATIENT_AGE:
                _cap_age(elem)
            if elem.VR == "SQ":
                for item in elem.value:
                    _clean(item, uid_map, options, report)


def _code_item(dataset_cls: Any, code: tuple[str, str, str]) -> Any:
    item = dataset_cls()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def deidentify_dicom(ds: Any, *, uid_map: UIDMap, options: DicomDeidOptions | None = None) -> tuple[Any, DicomDeidReport]:
    """Return ``(ds, report)``: ``ds`` de-identified in place by the Basic Profile, and what was done.

    ``uid_map`` must be shared by all files of a run so references between them stay consistent.
    Pixel data is not changed; ``report.burned_in`` says when the header declares burned-in text.
    """
    pydicom = require("pydicom", extra="dicom", purpose="DICOM de-identification")
    options = options or DicomDeidOptions()
    report = DicomDeidReport()
    # The patient pseudonym comes from the original PatientID, read before anything changes.
    original_id = str(ds.get("PatientID", "") or "")
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES":
        report.burned_in = True
        report.warnings.append(
            "BurnedInAnnotation is YES: the pixels may show names or dates; they were not changed, review or mask the image")
    _clean(ds, uid_map, options, report)
    if options.patient_pseudonym and original_id.strip():
        pseudonym = uid_map.pseudonym(original_id)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        report.counts["pseudonymized"] += 1
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        _clean(file_meta, uid_map, DicomDeidOptions(keep_private=True, patient_pseudonym=False), report)
        if "SOPInstanceUID" in ds:
            file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    methods = [DEIDENTIFICATION_METHOD] + (["private attributes retained"] if options.keep_private else [])
    ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
    codes = [PROFILE_CODE] + ([RETAIN_PATIENT_CHARACTERISTICS_CODE] if options.keep_patient_characteristics else [])
    ds.DeidentificationMethodCodeSequence = pydicom.Sequence([_code_item(pydicom.Dataset, c) for c in codes])
    return ds, report


# ---------------------------------------------------------------- folders
def _read(pydicom: Any, path: Path) -> Any:
    """Return the dataset in ``path``; raise DataError with a reason that quotes no file content."""
    from pydicom.errors import InvalidDicomError

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file ({type(exc).__name__})", path=path) from None
    try:
        return pydicom.dcmread(io.BytesIO(raw))
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        except Exception:  # noqa: BLE001 - any parse failure means: not DICOM
            ds = None
        if ds is None or not any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "PatientID", "Modality")):
            raise DataError("not a DICOM file (no DICM preamble and no DICOM header)", path=path) from None
        return ds
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files
        raise DataError(f"DICOM header is unreadable or truncated ({type(exc).__name__})", path=path) from None


def deidentify_dicom_dir(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    keep_private: bool = False,
    secret: str | bytes | None = None,
    options: DicomDeidOptions | None = None,
) -> AuditLog:
    """Return the audit of de-identifying every file under ``in_dir`` into the same tree under ``out_dir``.

    UIDs are replaced consistently across the run (keyed by ``secret``, else by ``seed``). Files that
    are not DICOM or cannot be read are counted with the reason and skipped; ``DICOMDIR`` index files
    are skipped (they name patients; rebuild them from the output). The audit goes to
    ``<out_dir>.audit.json``.
    """
    pydicom = require("pydicom", extra="dicom", purpose="DICOM de-identification")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise DataError("not a folder; give the folder that holds the DICOM files", path=in_dir)
    if out_dir.resolve() == in_dir.resolve() or in_dir.resolve() in out_dir.resolve().parents:
        raise DataError("the output folder must lie outside the input folder; choose another --out", path=out_dir)
    options = replace(options or DicomDeidOptions(), keep_private=keep_private or (options is not None and options.keep_private))
    uid_map = UIDMap(derive_key(seed, secret))
    audit = AuditLog("dicom", settings={"profile": PROFILE_CODE[0], "keep_private": options.keep_private,
                                        "patient_pseudonym": options.patient_pseudonym,
                                        "keep_patient_characteristics": options.keep_patient_characteristics})
    files = sorted(p for p in in_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    with progress.task("de-identifying DICOM", total=len(files)) as bar:
        for path in files:
            name = path.relative_to(in_dir).as_posix()
            bar.update(1)
            if path.name.upper() == "DICOMDIR":
                audit.file(name).status = "skipped"
                audit.warn(name, "DICOMDIR index skipped: it lists patients; rebuild it from the output")
                continue
            try:
                ds = _read(pydicom, path)
                ds, report = deidentify_dicom(ds, uid_map=uid_map, options=options)
                target = out_dir / path.relative_to(in_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(target)
            except DataError as exc:
                audit.fail(name, exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the run; messages may quote values
                log.debug("DICOM de-identification failed for %s: %s", name, type(exc).__name__)
                audit.fail(name, f"could not be de-identified ({type(exc).__name__}); the file was not written")
                continue
            entry = audit.file(name)
            entry.rows = 1
            audit.count(name, dict(report.counts))
            if report.burned_in:
                audit.count(name, {"burned_in_annotation": 1})
            for warning in report.warnings:
                audit.warn(name, warning)
                log.warning("%s: %s", name, warning)
    audit.settings["uids_replaced"] = len(uid_map.mapping)
    audit.write(audit_path(out_dir))
    log.info("%s", audit.summary())
    return audit
