"""The audit log of a de-identification run: what was processed and how much was removed, never what.

The log holds counts (per PHI type or header action, per file, per column), rows processed, and
failures with their reason. It never holds a removed value: reasons are written by medfuse and name
the file, row and field, not their content.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AuditLog", "audit_path"]


def audit_path(out: str | Path) -> Path:
    """Return where the audit of a run writing ``out`` goes: ``<out>.audit.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".audit.json")


@dataclass
class FileAudit:
    """Counts and status of one input file."""

    status: str = "ok"  # ok | failed | skipped
    rows: int = 0
    rows_failed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    columns: dict[str, Counter[str]] = field(default_factory=dict)
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "rows": self.rows, "counts": dict(sorted(self.counts.items()))}
        if self.rows_failed:
            out["rows_failed"] = self.rows_failed
        if self.columns:
            out["columns"] = {c: dict(sorted(v.items())) for c, v in self.columns.items()}
        if self.reason:
            out["reason"] = self.reason
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


@dataclass
class AuditLog:
    """Counts of a run over many files; ``write`` stores it as JSON, ``summary`` gives one line."""

    kind: str  # "text" or "dicom"
    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileAudit] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def file(self, name: str) -> FileAudit:
        """Return the entry of file ``name`` (created on first use)."""
        return self.files.setdefault(name, FileAudit())

    def count(self, name: str, counts: dict[str, int], *, column: str | None = None) -> None:
        """Add ``counts`` (PHI type or action -> n) to file ``name`` (and its ``column``)."""
        entry = self.file(name)
        entry.counts.update(counts)
        if column is not None:
            entry.columns.setdefault(column, Counter()).update(counts)

    def fail(self, name: str, reason: str, *, row: int | None = None, column: str | None = None) -> None:
        """Record a failure: the whole file when ``row`` is None, else one row (or cell)."""
        entry = self.file(name)
        if row is None:
            entry.status = "failed"
            entry.reason = reason
        else:
            entry.rows_failed += 1
        error: dict[str, Any] = {"file": name, "reason": reason}
        if row is not None:
            error["row"] = row
        if column is not None:
            error["column"] = column
        self.errors.append(error)

    def warn(self, name: str, reason: str) -> None:
        """Record a warning about file ``name`` (it was still processed)."""
        self.file(name).warnings.append(reason)

    @property
    def totals(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for entry in self.files.values():
            total.update(entry.counts)
        return dict(sorted(total.items()))

    @property
    def rows_processed(self) -> int:
        return sum(entry.rows for entry in self.files.values())

    @property
    def files_failed(self) -> int:
        return sum(entry.status == "failed" for entry in self.files.values())

    @property
    def warnings(self) -> int:
        return sum(len(entry.warnings) for entry in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the log as plain JSON-ready data."""
        return {
            "kind": self.kind,
            "settings": self.settings,
            "files_processed": sum(e.status == "ok" for e in self.files.values()),
            "files_failed": self.files_failed,
            "rows_processed": self.rows_processed,
            "rows_failed": sum(e.rows_failed for e in self.files.values()),
            "warnings": self.warnings,
            "totals": self.totals,
            "files": {name: entry.to_dict() for name, entry in sorted(self.files.items())},
            "errors": self.errors,
            "started": self.started,
            "finished": self.finished,
        }

    def write(self, path: str | Path) -> Path:
        """Write the log as JSON to ``path`` and return it."""
        self.finished = self.finished or time.time()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        """Return one line: files, rows, what was removed, failures and warnings."""
        totals = ", ".join(f"{k}={v}" for k, v in self.totals.items()) or "nothing"
        ok = sum(e.status == "ok" for e in self.files.values())
        text = f"de-identified {ok} {self.kind} file(s), {self.rows_processed} row(s): {totals}"
        if self.files_failed or self.errors:
            text += f"; {self.files_failed} file(s) failed, {len(self.errors)} error(s)"
        if self.warnings:
            text += f"; {self.warnings} warning(s)"
        return text
