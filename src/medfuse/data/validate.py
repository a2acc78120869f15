"""Manifest validation: every row checked, bad rows quarantined with a reason, none lost.

Checks, in order (a row is set aside under the first reason found; the quarantine file lists all):

- ``unparsable_row``: a JSONL line that is not a JSON object, a CSV record with the wrong field count;
- ``filtered``: the row fails the config's ``filters`` (e.g. ``q_lang`` not ``en``); not an error, but counted;
- ``missing_path`` / ``empty_text`` / ``empty_question`` / ``empty_answer`` / ``missing_split``: a required
  cell is empty (modalities listed in ``optional`` may be empty);
- ``text_too_long``: the joined text is longer than ``max_text_chars``;
- ``missing_label`` / ``unknown_label`` / ``invalid_label``: the label is empty, outside ``classes`` (or the
  classes seen in the train split), or not 0/1 / not a number;
- ``not_numeric`` / ``non_finite_value`` / ``missing_value``: a vitals cell is text, an explicit non-finite
  number (``NaN``, ``inf``), or empty while ``allow_missing_vitals`` is false. An EMPTY cell is a missing
  value (NaN in the batch); an explicit ``NaN``/``inf`` is an error;
- ``missing_file`` / ``unreadable_file``: a referenced file is absent, or does not decode (images through
  :func:`medfuse.data.images.load_image`, audio through :func:`medfuse.data.audio.load_audio`, WFDB records:
  the ``.hea`` header parses and the signal files it names exist);
- ``duplicate_row``: the same values in every role column as an earlier kept row;
- ``patient_in_two_splits``: the patient's rows lie in several splits; rows outside the patient's majority
  split (ties: the split seen first) are set aside.

``read == kept + quarantined`` always holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medfuse.core import progress
from medfuse.data.columns import CellError, LabelEncoder
from medfuse.data.config import DataConfig
from medfuse.data.manifest import Manifest, is_missing, parse_number, read_manifest, row_as_dict, text_value
from medfuse.data.presets import resolve_config

__all__ = ["Issue", "ValidationReport", "default_quarantine_path", "join_text", "validate_manifest"]

log = logging.getLogger(__name__)
QUARANTINE_COLUMNS = ["line", "reason", "column", "message", "row"]


@dataclass(frozen=True)
class Issue:
    """One problem with one row: the file line, a short reason code, the column and a message."""

    line: int
    reason: str
    column: str | None
    message: str


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_manifest`: counts, the kept rows and the quarantine table.

    ``read``, ``kept``, ``quarantined`` are row counts (``read == kept + quarantined``). ``kept_frame`` holds
    the rows that passed (index: file line). ``quarantine_frame`` has one row per set-aside row with
    ``line, reason, column, message, row`` (``row``: the original row as a mapping, or the raw text of an
    unparsable line). ``reasons`` counts set-aside rows by their first reason; ``classes`` are the label
    classes in output order (given or inferred from the train split).
    """

    manifest: Manifest
    config: DataConfig
    kept_frame: pd.DataFrame
    quarantine_frame: pd.DataFrame
    reasons: dict[str, int]
    classes: list[str] | None = None
    quarantine_path: Path | None = None
    seconds: float = 0.0
    issues: list[Issue] = field(default_factory=list)

    @property
    def read(self) -> int:
        """Rows read (parsed and unparsable)."""
        return self.manifest.n_read

    @property
    def kept(self) -> int:
        """Rows that passed every check."""
        return len(self.kept_frame)

    @property
    def quarantined(self) -> int:
        """Rows set aside."""
        return len(self.quarantine_frame)

    @property
    def ok(self) -> bool:
        """True when no row was set aside."""
        return self.quarantined == 0

    def kept_manifest(self) -> Manifest:
        """Return a :class:`Manifest` over the kept rows (same path and root)."""
        return Manifest(path=self.manifest.path, root=self.manifest.root, dataframe=self.kept_frame, format=self.manifest.format)

    def summary(self) -> str:
        """One line: ``name: read N, kept K, quarantined Q (reason: n, ...)``."""
        parts = ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        tail = f" ({parts})" if parts else ""
        return f"{self.manifest.name}: read {self.read}, kept {self.kept}, quarantined {self.quarantined}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (no tables)."""
        return {
            "manifest": str(self.manifest.path) if self.manifest.path else None,
            "read": self.read,
            "kept": self.kept,
            "quarantined": self.quarantined,
            "reasons": dict(self.reasons),
            "classes": self.classes,
            "quarantine_file": str(self.quarantine_path) if self.quarantine_path else None,
            "seconds": round(self.seconds, 3),
        }


def default_quarantine_path(manifest_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Return ``<out_dir>/<manifest stem>.quarantine.csv`` (``out_dir`` defaults to the current folder)."""
    return Path(out_dir or ".") / f"{Path(manifest_path).stem}.quarantine.csv"


def join_text(row: Mapping[str, Any], columns: list[str]) -> str:
    """Return the non-empty text cells of ``row`` joined with a blank line, each stripped."""
    parts = [text_value(row.get(c)) for c in columns]
    return "\n\n".join(p for p in parts if p)


def validate_manifest(
    manifest_or_path: Manifest | str | Path,
    config: DataConfig | Mapping[str, Any] | str | None = None,
    *,
    quarantine_path: str | Path | None = None,
    check_files: bool = True,
    decode: bool = True,
    workers: int = 4,
) -> ValidationReport:
    """Return a :class:`ValidationReport` after checking every row of a manifest.

    ``config`` is a :class:`DataConfig`, a mapping, a preset name, or None (preset detected from the
    columns). ``check_files``: look at referenced files; ``decode``: also decode them (else existence only).
    ``quarantine_path``: write the set-aside rows there (``.csv`` or ``.jsonl``; a header-only file when none).
    Raises :class:`DataError` only for whole-file problems (unreadable manifest, configured column absent).
    """
    start = time.perf_counter()
    manifest = manifest_or_path if isinstance(manifest_or_path, Manifest) else read_manifest(manifest_or_path)
    frame = manifest.dataframe
    if manifest.columns or config is not None:
        cfg = resolve_config(config, manifest.columns).for_columns(manifest.columns)
    else:  # nothing parsed (every line bad): the rows are quarantined below, whatever the roles
        cfg = DataConfig(split=None)
    if len(frame):
        cfg.check_columns(manifest.columns, path=manifest.path)
    issues: dict[int, list[Issue]] = {}

    def add(line: int, reason: str, column: str | None, message: str) -> None:
        issues.setdefault(line, []).append(Issue(int(line), reason, column, message))

    for bad in manifest.bad_rows:
        add(bad.line, "unparsable_row", None, bad.reason)
    lines = [int(x) for x in frame.index]
    records = frame.to_dict("records") if len(frame) else []
    for line, row in zip(lines, records):
        _check_filters(row, cfg, line, add)
    unfiltered = frame.loc[[ln not in issues for ln in lines]] if len(frame) else frame
    encoder = LabelEncoder.from_config(cfg, unfiltered) if len(unfiltered) else None
    files: dict[tuple[str, Path], list[tuple[int, str]]] = {}
    for line, row in zip(lines, records):
        if line in issues:
            continue
        _check_row(row, cfg, encoder, manifest, line, add, files)
    if check_files and files:
        _check_files(files, cfg, decode, workers, issues, add)
    survivors = [(ln, row) for ln, row in zip(lines, records) if ln not in issues]
    _check_duplicates(survivors, cfg, add)
    survivors = [(ln, row) for ln, row in survivors if ln not in issues]
    _check_patients(survivors, cfg, add)

    bad_lines = set(issues)
    kept = frame.loc[[ln not in bad_lines for ln in lines]] if len(frame) else frame
    quarantine = _quarantine_table(issues, manifest)
    reasons = Counter(found[0].reason for found in issues.values())
    report = ValidationReport(
        manifest=manifest,
        config=cfg,
        kept_frame=kept,
        quarantine_frame=quarantine,
        reasons=dict(reasons),
        classes=list(encoder.classes) if encoder is not None and encoder.classes else None,
        issues=[i for ln in sorted(issues) for i in issues[ln]],
    )
    if report.read != report.kept + report.quarantined:  # an invariant, never user input
        raise AssertionError(f"validation lost rows: read {report.read} != kept {report.kept} + quarantined {report.quarantined}")
    if quarantine_path is not None:
        report.quarantine_path = write_quarantine(quarantine, quarantine_path)
    report.seconds = time.perf_counter() - start
    log.info("%s", report.summary())
    return report


def _check_filters(row: Mapping[str, Any], cfg: DataConfig, line: int, add: Any) -> None:
    for col, allowed in cfg.filters.items():
        value = text_value(row.get(col))
        if value not in {text_value(a) for a in allowed}:
            add(line, "filtered", col, f"{col}={value!r} is not among the kept values {allowed}")
            return


def _check_row(
    row: Mapping[str, Any],
    cfg: DataConfig,
    encoder: LabelEncoder | None,
    manifest: Manifest,
    line: int,
    add: Any,
    files: dict[tuple[str, Path], list[tuple[int, str]]],
) -> None:
    """Check one row's cells; referenced files are collected into ``files`` for a later parallel check."""
    for kind in ("image", "signal", "audio", "video"):
        column = getattr(cfg, kind)
        if not column:
            continue
        path = manifest.resolve(row.get(column))
        if path is None:
            if kind not in cfg.optional:
                add(line, "missing_path", column, f"the {kind} path is empty")
            continue
        files.setdefault((kind, path), []).append((line, column))
    if cfg.text_columns:
        text = join_text(row, cfg.text_columns)
        column = cfg.text_columns[0] if len(cfg.text_columns) == 1 else "+".join(cfg.text_columns)
        if not text and "text" not in cfg.optional:
            add(line, "empty_text", column, "the text is empty")
        elif len(text) > cfg.max_text_chars:
            add(line, "text_too_long", column, f"the text has {len(text)} characters (max_text_chars={cfg.max_text_chars})")
    for role in ("question", "answer"):
        column = getattr(cfg, role)
        if column and not text_value(row.get(column)):
            add(line, f"empty_{role}", column, f"the {role} is empty")
    if cfg.split and is_missing(row.get(cfg.split)):
        add(line, "missing_split", cfg.split, "the split is empty")
    if encoder is not None:
        try:
            encoder.encode(row)
        except CellError as exc:
            column = encoder.column or next((c for c in encoder.columns if c in str(exc)), None)
            add(line, exc.reason, column, str(exc))
    for column in cfg.vitals:
        value = row.get(column)
        try:
            number = parse_number(value)
        except ValueError as exc:
            reason = "non_finite_value" if str(exc).startswith("non-finite") else "not_numeric"
            add(line, reason, column, f"{column}: {exc}")
            continue
        if number is None and not cfg.allow_missing_vitals:
            add(line, "missing_value", column, f"{column} is empty (allow_missing_vitals is false)")


def _check_files(
    files: dict[tuple[str, Path], list[tuple[int, str]]],
    cfg: DataConfig,
    decode: bool,
    workers: int,
    issues: dict[int, list[Issue]],
    add: Any,
) -> None:
    """Check each distinct file once, in a thread pool, and add issues to every row that names it."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [key for key, users in files.items() if any(ln not in issues for ln, _ in users)]
    with progress.task("checking files", total=len(todo)) as bar, ThreadPoolExecutor(max(1, min(workers, 8))) as pool:
        results = pool.map(lambda key: check_file(key[0], key[1], cfg, decode=decode), todo)
        for key, problem in zip(todo, results):
            bar.update(1)
            if problem is None:
                continue
            reason, message = problem
            for line, column in files[key]:
                add(line, reason, column, message)


def _check_duplicates(survivors: list[tuple[int, Mapping[str, Any]]], cfg: DataConfig, add: Any) -> None:
    columns = cfg.sample_columns()
    first: dict[tuple[str, ...], int] = {}
    for line, row in survivors:
        key = tuple(text_value(row.get(c)) for c in columns)
        if key in first:
            add(line, "duplicate_row", None, f"same values in {', '.join(columns)} as line {first[key]}")
        else:
            first[key] = line


def _check_patients(survivors: list[tuple[int, Mapping[str, Any]]], cfg: DataConfig, add: Any) -> None:
    if not cfg.patient or not cfg.split:
        return
    by_patient: dict[str, dict[str, list[int]]] = {}
    for line, row in survivors:
        pid = text_value(row.get(cfg.patient))
        if pid:
            by_patient.setdefault(pid, {}).setdefault(text_value(row.get(cfg.split)), []).append(line)
    for pid, splits in by_patient.items():
        if len(splits) < 2:
            continue
        keep = max(splits, key=lambda s: (len(splits[s]), -min(splits[s])))
        counts = ", ".join(f"{s} ({len(v)} row{'s' if len(v) > 1 else ''})" for s, v in splits.items())
        for split, split_lines in splits.items():
            if split == keep:
                continue
            for line in split_lines:
                add(
                    line, "patient_in_two_splits", cfg.patient,
                    f"patient {pid!r} is in {split} and {keep}: {counts}; the rows outside {keep} are set aside",
                )


def _quarantine_table(issues: dict[int, list[Issue]], manifest: Manifest) -> pd.DataFrame:
    raw = {b.line: b.raw for b in manifest.bad_rows}
    frame = manifest.dataframe
    positions = {int(ln): i for i, ln in enumerate(frame.index)}
    rows = []
    for line in sorted(issues):
        found = issues[line]
        original: Any = row_as_dict(frame, positions[line]) if line in positions else raw.get(line, "")
        rows.append(
            {
                "line": line,
                "reason": found[0].reason,
                "column": found[0].column,
                "message": "; ".join(i.message for i in found),
                "row": original,
            }
        )
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def write_quarantine(quarantine: pd.DataFrame, path: str | Path) -> Path:
    """Write the quarantine table as CSV (``row`` as JSON text) or JSONL (``row`` as an object); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = quarantine.to_dict("records")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(_json_ready(rec), ensure_ascii=False) + "\n")
        return path
    table = quarantine.copy()
    table["row"] = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in table["row"]]
    table.to_csv(path, index=False)
    return path


def _json_ready(rec: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in rec.items():
        out[k] = None if v is not None and not isinstance(v, (str, dict, list)) and is_missing(v) else v
    return out


def check_file(kind: str, path: Path, cfg: DataConfig, *, decode: bool = True) -> tuple[str, str] | None:
    """Return ``(reason, message)`` when the ``kind`` file (image/audio/signal/video) at ``path`` is bad, else None.

    Signals given as a WFDB record name (no extension) are found through their ``.hea`` header; without
    ``decode`` the header is parsed and the signal files it names must exist.
    """
    from medfuse.core.errors import ConfigError, DataError, OptionalDependencyError

    wfdb = kind == "signal" and (path.suffix.lower() in (".hea", ".mat", ".dat") or not path.exists())
    header = path.with_suffix(".hea") if path.suffix.lower() in (".hea", ".mat", ".dat") else path.with_name(path.name + ".hea")
    target = header if wfdb else path
    if not target.is_file():
        return "missing_file", f"{kind} file not found: {target}"
    try:
        if kind == "signal":
            from medfuse.data.waveform import load_waveform, read_wfdb_header

            if wfdb:
                for signal in read_wfdb_header(header).signals:
                    if not (header.parent / signal.file_name).is_file():
                        return "missing_file", f"signal file named in {header.name} not found: {header.parent / signal.file_name}"
            if decode:
                load_waveform(path, sample_rate=cfg.signal_rate)
        elif not decode:
            return None
        elif kind == "image":
            from medfuse.data.images import load_image

            load_image(path, channels=1, window=cfg.window if cfg.window != "header" else None, frame=cfg.frame)
        elif kind == "audio":
            from medfuse.data.audio import load_audio

            if load_audio(path)[0].size == 0:
                return "unreadable_file", f"audio file has no samples: {path}"
        elif kind == "video":
            from medfuse.data.video import load_video

            load_video(path, num_frames=2, size=8)
    except (ConfigError, OptionalDependencyError):
        raise  # a setting or a missing extra: every row would fail the same way
    except DataError as exc:
        return "unreadable_file", str(exc)
    except Exception as exc:  # decoders raise many types on corrupt input; the row is set aside, not the run
        return "unreadable_file", f"{path}: {type(exc).__name__}: {exc}"
    return None
