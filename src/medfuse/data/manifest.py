"""Manifests read as they are: CSV/TSV, JSONL and Parquet, with the file line of every row.

A manifest is a table with one row per sample. Nothing is renamed or converted on reading:

- CSV/TSV cells stay text exactly as written (an empty cell is ``""``), so an empty cell (a missing
  value) can be told apart from an explicit ``NaN``. The header is line 1, so the first data row is
  line 2; a quoted cell that spans lines moves the following rows' line numbers accordingly.
- JSONL values keep their JSON types; ``null`` or an absent key is a missing value, and the non-standard
  literals ``NaN``/``Infinity`` are kept as the text ``"NaN"``/``"Infinity"`` so that validation reports
  them. Line numbers are those of the file (blank lines are skipped but counted).
- Parquet columns keep their types; the "line" of a row is its 1-based row number. A float NaN (in
  Parquet, or made by pandas for an absent JSON value) reads as a missing value; infinities are errors.

A row that cannot be parsed (a JSONL line that is not a JSON object, a CSV record with the wrong number
of fields) does not stop reading: it is kept in :attr:`Manifest.bad_rows` with its line number and the
reason, so validation can quarantine it and the counts still add up.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medfuse.core.errors import DataError

__all__ = [
    "BadRow",
    "Manifest",
    "is_missing",
    "parse_number",
    "read_manifest",
    "text_value",
    "MANIFEST_SUFFIXES",
]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")
LINE_INDEX = "line"

# Cells that mean "no value" when they are text.
_MISSING_TEXT = {"", "n/a", "na", "none", "null"}


@dataclass(frozen=True)
class BadRow:
    """A manifest row that could not be parsed: its line, the raw text and why."""

    line: int
    raw: str
    reason: str


@dataclass
class Manifest:
    """A manifest table with its origin.

    ``dataframe`` has one row per parsed sample; its index (named ``line``) holds the row's line number
    in the file, so any filtered view still knows where each row came from. ``root`` is the folder that
    relative paths in the manifest resolve against (the manifest's own folder by default).
    """

    path: Path | None
    root: Path
    dataframe: pd.DataFrame
    bad_rows: list[BadRow] = field(default_factory=list)
    format: str = "csv"

    @property
    def lines(self) -> np.ndarray:
        """(N,) int64 line number of each parsed row, in row order."""
        return np.asarray(self.dataframe.index, dtype=np.int64)

    @property
    def columns(self) -> list[str]:
        """Column names in file order."""
        return [str(c) for c in self.dataframe.columns]

    @property
    def n_read(self) -> int:
        """Rows read from the file: parsed rows plus unparsable ones."""
        return len(self.dataframe) + len(self.bad_rows)

    @property
    def name(self) -> str:
        """The manifest's file name, or ``<memory>`` for an in-memory table."""
        return self.path.name if self.path is not None else "<memory>"

    def resolve(self, value: Any) -> Path | None:
        """Return the absolute path a cell refers to (relative paths resolve against ``root``), or None if empty."""
        text = text_value(value)
        if not text:
            return None
        p = Path(os.path.expanduser(text))
        return p if p.is_absolute() else self.root / p

    def where(self, line: int | None = None) -> str:
        """A ``file:line`` label for messages."""
        base = str(self.path) if self.path is not None else "<memory>"
        return f"{base}:{line}" if line is not None else base

    @classmethod
    def from_dataframe(
        cls, dataframe: pd.DataFrame, *, root: str | Path = ".", path: str | Path | None = None
    ) -> Manifest:
        """Wrap an in-memory table; rows are numbered from 2 (as if a CSV header were line 1)."""
        frame = dataframe.reset_index(drop=True).copy()
        frame.index = pd.Index(np.arange(2, len(frame) + 2, dtype=np.int64), name=LINE_INDEX)
        return cls(path=Path(path) if path else None, root=Path(root), dataframe=frame, format="memory")


def read_manifest(path: str | Path, *, root: str | Path | None = None) -> Manifest:
    """Return the :class:`Manifest` at ``path`` (CSV, TSV, JSONL or Parquet, chosen by extension).

    Raises :class:`DataError` when the file is missing, empty, of an unknown kind, or has no header;
    single bad rows never raise (see :attr:`Manifest.bad_rows`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found; check the path", path=path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        frame, bad, fmt = *_read_delimited(path, "\t" if suffix == ".tsv" else ","), suffix[1:]
    elif suffix in (".jsonl", ".ndjson"):
        frame, bad, fmt = *_read_jsonl(path), "jsonl"
    elif suffix in (".parquet", ".pq"):
        frame, bad, fmt = _read_parquet(path), [], "parquet"
    else:
        raise DataError(
            f"unknown manifest format '{suffix}'; use one of {', '.join(MANIFEST_SUFFIXES)}", path=path
        )
    return Manifest(
        path=path, root=Path(root) if root is not None else path.parent, dataframe=frame, bad_rows=bad, format=fmt
    )


def _read_delimited(path: Path, delimiter: str) -> tuple[pd.DataFrame, list[BadRow]]:
    """Parse a CSV/TSV with the csv module so each record keeps its first line number."""
    rows: list[list[str]] = []
    lines: list[int] = []
    bad: list[BadRow] = []
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"cannot open manifest: {exc}", path=path) from None
    with handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("manifest is empty: it needs a header line", path=path) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the header: {exc}", path=path, row=1) from None
        header = [h.strip() for h in header]
        if not any(header):
            raise DataError("the header line is empty", path=path, row=1)
        _check_header(header, path)
        start = reader.line_num + 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                bad.append(BadRow(start, "", f"cannot parse the record: {exc}"))
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip() and len(header) > 1):
                continue  # blank line
            if len(record) != len(header):
                raw = delimiter.join(record)
                bad.append(BadRow(line, raw, f"expected {len(header)} fields, found {len(record)}"))
                continue
            rows.append(record)
            lines.append(line)
    frame = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    frame.index = pd.Index(np.asarray(lines, dtype=np.int64), name=LINE_INDEX)
    return frame, bad


def _check_header(header: list[str], path: Path) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(f"column '{name}' appears twice in the header; rename one", path=path, row=1)
        seen.add(name)


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[BadRow]]:
    """Parse JSONL line by line; a line that is not a JSON object becomes a :class:`BadRow`."""
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[BadRow] = []
    try:
        handle = path.open("r", encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot open manifest: {exc}", path=path) from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                # Non-standard NaN/Infinity literals are kept as text so validation can name them.
                obj = json.loads(text, parse_constant=lambda s: s)
            except json.JSONDecodeError as exc:
                bad.append(BadRow(number, text.rstrip("\r\n"), f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            if not isinstance(obj, dict):
                bad.append(BadRow(number, text.rstrip("\r\n"), f"expected a JSON object, got {type(obj).__name__}"))
                continue
            records.append(obj)
            lines.append(number)
    columns: dict[str, None] = {}
    for rec in records:
        for key in rec:
            columns.setdefault(str(key), None)
    frame = pd.DataFrame.from_records(records, columns=list(columns)) if records else pd.DataFrame()
    frame.index = pd.Index(np.asarray(lines, dtype=np.int64), name=LINE_INDEX)
    return frame, bad


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataError(f"cannot read Parquet manifest: {exc}", path=path) from None
    frame = frame.reset_index(drop=True)
    frame.index = pd.Index(np.arange(1, len(frame) + 1, dtype=np.int64), name=LINE_INDEX)
    return frame


def is_missing(value: Any) -> bool:
    """Return True for a cell with no value: None, NA, a float NaN, or blank/``N/A``-like text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.floating) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TEXT


def text_value(value: Any) -> str:
    """Return a cell as stripped text; missing cells give ``""`` and integral floats lose their ``.0``."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value).strip()


def parse_number(value: Any) -> float | None:
    """Return a cell as a finite float, or None when the cell is missing.

    Missing means None/NA, an empty or ``N/A``-like text cell, or a NaN float that the table itself
    produced for an absent value. Explicit non-finite text (``"NaN"``, ``"inf"``) and infinite floats raise
    ``ValueError("non-finite value ...")``; other text raises ``ValueError("not a number ...")``.
    """
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, np.integer)):
        return float(value)
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise ValueError(f"non-finite value {value!r}")
        return float(value)
    text = str(value).strip()
    if text.lower() in _MISSING_TEXT:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text[:40]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"non-finite value {text!r}")
    return number


def row_as_dict(frame: pd.DataFrame, position: int, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """Return row ``position`` of ``frame`` as JSON-ready plain values (missing cells as None)."""
    row = frame.iloc[position]
    keys = list(columns) if columns is not None else list(frame.columns)
    return {str(k): _plain(row[k]) for k in keys}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
