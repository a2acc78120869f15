"""De-identify report files: one ``.txt``, a folder of ``.txt``, or a manifest (CSV/TSV/JSONL/Parquet).

Outputs keep the input's form: a text file for a text file, the same folder tree for a folder, the
same manifest format with the text columns replaced. An audit log (``<out>.audit.json``) counts what
was removed per file, column and PHI type. A file or row that cannot be read is reported and counted;
it never stops the run, and a cell that cannot be de-identified is blanked, never passed through.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medfuse.core import DataError, progress
from medfuse.text.deid.audit import AuditLog, audit_path
from medfuse.text.deid.engine import Deidentifier, DeidResult
from medfuse.text.deid.ner import NERBackend
from medfuse.text.deid.spans import PHISpan

__all__ = ["DEFAULT_TEXT_COLUMNS", "deidentify_text_file"]

log = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMNS = (
    "text", "report", "reports", "report_text", "caption", "findings", "impression", "case_history",
    "case_findings", "case_discussion", "history", "clinical_history", "indication", "note", "notes",
    "comments", "comment", "discussion", "narrative", "summary", "description",
)
_PATIENT_COLUMNS = ("patient_id", "patient", "subject_id", "subject")
_IDENTIFYING_COLUMNS = {"patient_id", "patient", "subject_id", "mrn", "name", "patient_name", "dob", "birth_date",
                        "date_of_birth", "ssn", "address", "phone", "email", "accession", "accession_number"}
_TEXT_SUFFIXES = {".txt", ".text"}
_MANIFEST_SUFFIXES = {".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"}


def deidentify_text_file(
    path: str | Path,
    out: str | Path,
    *,
    text_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    mode: str = "placeholder",
    seed: int = 0,
    ner: str | NERBackend | Callable[[str], list[PHISpan]] | None = None,
    secret: str | bytes | None = None,
) -> AuditLog:
    """Return the audit of de-identifying ``path`` into ``out`` (also written to ``<out>.audit.json``).

    ``path``: a ``.txt`` report, a folder of ``.txt`` reports (searched recursively) or a manifest.
    ``text_columns``: manifest columns to de-identify (default: the usual report/caption columns
    present, see :data:`DEFAULT_TEXT_COLUMNS`). ``id_column``: the patient column keying the date
    shift in surrogate mode (default: ``patient_id``/``patient``/``subject_id`` when present).
    Other columns are copied as they are; the audit warns about columns that look identifying.
    """
    path, out = Path(path), Path(out)
    if not path.exists():
        raise DataError("input not found; give a .txt file, a folder of .txt files or a manifest", path=path)
    if out.resolve() == path.resolve():
        raise DataError("the output would overwrite the input; choose another --out", path=out)
    deid = Deidentifier(mode=mode, seed=seed, ner=ner, secret=secret)
    audit = AuditLog("text", settings={"mode": mode, "input": path.name})
    if path.is_dir():
        _run_folder(deid, path, out, audit)
    elif path.suffix.lower() in _TEXT_SUFFIXES:
        target = out / path.name if out.is_dir() else out
        _run_text(deid, path, target, path.name, audit, raise_errors=True)
    elif path.suffix.lower() in _MANIFEST_SUFFIXES:
        _run_manifest(deid, path, out, audit, text_columns=text_columns, id_column=id_column)
    else:
        raise DataError(
            f"unsupported file type '{path.suffix}'; use .txt, a folder of .txt, or a manifest "
            f"({', '.join(sorted(_MANIFEST_SUFFIXES))})", path=path)
    audit.write(audit_path(out))
    log.info("%s", audit.summary())
    return audit


# ---------------------------------------------------------------- plain text
def _run_text(deid: Deidentifier, src: Path, dst: Path, name: str, audit: AuditLog, *, raise_errors: bool) -> None:
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not UTF-8 text; convert the file to UTF-8" if isinstance(exc, UnicodeDecodeError) else f"cannot read ({type(exc).__name__})"
        if raise_errors:
            raise DataError(reason, path=src) from None
        audit.fail(name, reason)
        return
    result = deid.redact(text)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(result.text, encoding="utf-8")
    audit.file(name).rows = 1
    audit.count(name, result.counts())


def _run_folder(deid: Deidentifier, src: Path, out: Path, audit: AuditLog) -> None:
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES)
    if not files:
        raise DataError("no .txt files in the folder", path=src)
    with progress.task("de-identifying reports", total=len(files)) as bar:
        for f in files:
            rel = f.relative_to(src)
            _run_text(deid, f, out / rel, rel.as_posix(), audit, raise_errors=False)
            bar.update(1)


# ---------------------------------------------------------------- manifests
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pick_columns(path: Path, available: list[str], samples: Callable[[str], list[Any]], given: Sequence[str] | None) -> list[str]:
    if given:
        missing = [c for c in given if c not in available]
        if missing:
            raise DataError(f"text column(s) {missing} not in the manifest; columns are: {', '.join(available)}", path=path)
        return list(given)
    found = [c for c in available if c.lower() in DEFAULT_TEXT_COLUMNS and any(isinstance(v, str) for v in samples(c))]
    if not found:
        raise DataError(
            f"no text column found (looked for {', '.join(DEFAULT_TEXT_COLUMNS[:8])}, ...); name them with "
            f"text_columns (--text-columns); columns are: {', '.join(available)}", path=path)
    return found


class _CachedDeidentifier:
    """Redacts each distinct (text, patient) once: manifests repeat a case's history on every image row."""

    def __init__(self, deid: Deidentifier) -> None:
        self.deid = deid
        self._cache: dict[tuple[str, str | None], DeidResult] = {}

    def redact(self, text: str, patient: str | None) -> DeidResult:
        key = (text, patient if self.deid.mode == "surrogate" else None)
        result = self._cache.get(key)
        if result is None:
            result = self._cache[key] = self.deid.redact(text, patient_id=patient)
        return result


def _redact_cell(deid: _CachedDeidentifier, value: Any, patient: str | None, name: str, row: int, column: str,
                 audit: AuditLog) -> Any:
    """Return the de-identified cell; cells that are not text are blanked and reported."""
    if _is_missing(value) or value == "":
        return value
    if not isinstance(value, str):
        audit.fail(name, f"expected text, got {type(value).__name__}; the cell was blanked", row=row, column=column)
        return None
    try:
        result = deid.redact(value, patient)
    except Exception as exc:  # noqa: BLE001 - one bad cell must not stop the run; the message may quote PHI
        log.debug("de-identification failed in %s row %d column %s: %s", name, row, column, type(exc).__name__)
        audit.fail(name, f"de-identification failed ({type(exc).__name__}); the cell was blanked", row=row, column=column)
        return None
    audit.count(name, result.counts(), column=column)
    return result.text


def _patient_column(available: list[str], id_column: str | None, path: Path) -> str | None:
    if id_column is not None:
        if id_column not in available:
            raise DataError(f"id column '{id_column}' not in the manifest; columns are: {', '.join(available)}", path=path)
        return id_column
    return next((c for c in _PATIENT_COLUMNS if c in available), None)


def _warn_identifying(audit: AuditLog, name: str, available: list[str], columns: list[str]) -> None:
    for c in available:
        if c.lower() in _IDENTIFYING_COLUMNS and c not in columns:
            audit.warn(name, f"column '{c}' may identify patients and was copied as it is; drop or pseudonymize it")


def _run_manifest(deid: Deidentifier, path: Path, out: Path, audit: AuditLog, *, text_columns: Sequence[str] | None,
                  id_column: str | None) -> None:
    suffix = path.suffix.lower()
    cached = _CachedDeidentifier(deid)
    if suffix in (".jsonl", ".ndjson"):
        _run_jsonl(cached, path, out, audit, text_columns=text_columns, id_column=id_column)
        return
    import pandas as pd

    name = path.name
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types on a damaged file
        raise DataError(f"cannot read the manifest ({type(exc).__name__}); check the file format", path=path) from None
    available = [str(c) for c in df.columns]
    columns = _pick_columns(path, available, lambda c: df[c].head(200).tolist(), text_columns)
    patient_col = _patient_column(available, id_column, path)
    patients = [None if _is_missing(v) else str(v) for v in df[patient_col].tolist()] if patient_col else [None] * len(df)
    audit.settings["text_columns"] = columns
    _warn_identifying(audit, name, available, columns)
    with progress.task(f"de-identifying {name}", total=len(df) * len(columns)) as bar:
        for column in columns:
            values = df[column].tolist()
            new = [_redact_cell(cached, v, patients[i], name, i + 1, column, audit) for i, v in enumerate(values)]
            df[column] = pd.Series(new, index=df.index, dtype=object)
            bar.update(len(values))
    audit.file(name).rows = len(df)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, sep="\t" if suffix == ".tsv" else ",", index=False)


def _run_jsonl(deid: _CachedDeidentifier, path: Path, out: Path, audit: AuditLog, *, text_columns: Sequence[str] | None,
               id_column: str | None) -> None:
    # Line by line rather than pandas: a broken line is reported and left out, the others keep their types.
    name = path.name
    records: list[tuple[int, dict[str, Any]]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the manifest ({type(exc).__name__}); it must be UTF-8 JSON lines", path=path) from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            audit.fail(name, "not valid JSON; the row was left out", row=i)
            continue
        if not isinstance(record, dict):
            audit.fail(name, f"expected a JSON object, got {type(record).__name__}; the row was left out", row=i)
            continue
        records.append((i, record))
    available = list(dict.fromkeys(k for _, r in records for k in r))
    columns = _pick_columns(path, available, lambda c: [r.get(c) for _, r in records[:200]], text_columns)
    patient_col = _patient_column(available, id_column, path)
    audit.settings["text_columns"] = columns
    _warn_identifying(audit, name, available, columns)
    with progress.task(f"de-identifying {name}", total=len(records)) as bar:
        for line_no, record in records:
            pid = record.get(patient_col) if patient_col else None
            patient = None if _is_missing(pid) else str(pid)
            for column in columns:
                if column in record:
                    record[column] = _redact_cell(deid, record[column], patient, name, line_no, column, audit)
            bar.update(1)
    audit.file(name).rows = len(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for _, record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
