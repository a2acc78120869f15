"""One progress reporter: the CLI switches it on, library code only calls it, tests leave it off."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("medfuse")

_enabled = False


def enable(flag: bool = True) -> None:
    """Switch progress display on (the CLI does this) or off."""
    global _enabled
    _enabled = flag


def enabled() -> bool:
    return _enabled


class Task:
    """A running task: ``update(advance, **fields)``; renders a live bar on a terminal, log lines elsewhere."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_log = 0.0
        self._bar: Any = None
        self._task_id: Any = None
        if _enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True,
            )
            self._bar.start()
            self._task_id = self._bar.add_task(description, total=total, info="")

    def update(self, advance: int = 1, **fields: Any) -> None:
        self.done += advance
        self.fields.update(fields)
        info = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        if self._bar is not None:
            self._bar.update(self._task_id, advance=advance, info=info)
        elif _enabled:
            now = time.perf_counter()
            if now - self._last_log >= 5.0 or (self.total is not None and self.done >= self.total):
                self._last_log = now
                of = f"/{self.total}" if self.total else ""
                log.info("%s %d%s %s", self.description, self.done, of, info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[Task]:
    """Context manager around :class:`Task`."""
    t = Task(description, total)
    try:
        yield t
    finally:
        t.close()
