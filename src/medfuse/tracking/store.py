"""Where tracked runs live: the tracking URI (SQLite by default), its artifact root, and ``tracking.json``.

The default store is ``runs/mlruns.db`` under the working directory (``sqlite:///<absolute path>``) with
artifacts in ``runs/mlartifacts``; ``tracking.uri`` in a recipe, ``--store`` on the command line or the
``MLFLOW_TRACKING_URI`` environment variable name another one (any MLflow tracking URI, or a path to a
``.db`` file or to a folder holding ``mlruns.db``).

A training folder that was tracked holds ``tracking.json`` naming its run and store, so that later
commands (``evaluate``, ``runs``, ``registry``) can attach to the same run.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfuse.core.errors import ConfigError
from medfuse.core.optional import require

DEFAULT_DB = Path("runs") / "mlruns.db"
ARTIFACTS_DIR = "mlartifacts"
RUN_FILE = "tracking.json"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass(frozen=True)
class Store:
    """A tracking store: its MLflow URI and, for SQLite stores, the local folder artifacts go to."""

    uri: str
    artifact_root: Path | None = None

    @property
    def sqlite_path(self) -> Path | None:
        """Return the database file of a ``sqlite:///`` store, else None."""
        if not self.uri.startswith("sqlite:///"):
            return None
        path = self.uri[len("sqlite:///"):]
        return None if path in ("", ":memory:") else Path(path)

    def artifact_location(self, experiment: str) -> str | None:
        """Return the artifact location for a new experiment (None: the server decides)."""
        if self.artifact_root is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"
        return (self.artifact_root / slug).as_uri()


def resolve_store(uri: str | Path | Store | None = None) -> Store:
    """Return the store named by ``uri``, else ``MLFLOW_TRACKING_URI``, else ``runs/mlruns.db`` here.

    ``uri`` may be an MLflow tracking URI (``sqlite:///...``, ``http://...``), a ``.db`` file or a folder
    (its ``mlruns.db``). SQLite stores keep artifacts in ``mlartifacts`` beside the database file.
    """
    if isinstance(uri, Store):
        return uri
    text = str(uri) if uri else os.environ.get("MLFLOW_TRACKING_URI", "")
    if not text:
        return _sqlite_store(Path.cwd() / DEFAULT_DB)
    if text.startswith("sqlite:///"):
        path = Store(text).sqlite_path
        return _sqlite_store(path) if path is not None else Store(text)
    if "://" in text or text.startswith("file:"):
        return Store(text)
    path = Path(text).expanduser()
    if path.is_dir() or (not path.suffix and not path.exists()):
        path = path / DEFAULT_DB.name
    return _sqlite_store(path)


def _sqlite_store(path: Path) -> Store:
    path = path.expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    return Store(f"sqlite:///{path}", path.parent / ARTIFACTS_DIR)


def check_store(store: Store, *, timeout_s: float = 2.0) -> None:
    """Raise quickly when a SQLite store cannot be written (missing rights, a file in the way, a lock).

    MLflow itself retries a failing database for about a minute and a half; this check fails in
    at most ``timeout_s`` with the cause, so a broken store never stalls a training run.
    """
    path = store.sqlite_path
    if path is None:
        return
    for folder in (path.parent, store.artifact_root):
        if folder is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)  # NotADirectoryError / FileExistsError under a file
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{path} is read-only")
    connection = sqlite3.connect(str(path), timeout=timeout_s)
    try:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock: fails when another writer holds it
        connection.rollback()
    finally:
        connection.close()


def mlflow_module() -> Any:
    """Return the imported ``mlflow`` package, or raise naming the ``tracking`` extra."""
    return require("mlflow", extra="tracking", purpose="experiment tracking and the model registry")


def mlflow_client(store: Store | str | None = None, *, create: bool = True) -> Any:
    """Return an ``MlflowClient`` on ``store`` (tracking and model registry), after :func:`check_store`.

    create: make a new SQLite store when there is none (else raise ``ConfigError``: reading commands
    should not leave an empty database behind a mistyped path).
    """
    resolved = resolve_store(store)
    path = resolved.sqlite_path
    if not create and path is not None and not path.is_file():
        raise ConfigError(f"{path}: no tracking store here; train with a 'tracking:' section in the recipe first, "
                          "or name the store with --store (or MLFLOW_TRACKING_URI)")
    mlflow_module()
    from mlflow.tracking import MlflowClient

    check_store(resolved)
    return MlflowClient(tracking_uri=resolved.uri, registry_uri=resolved.uri)


def experiment_id(client: Any, name: str, store: Store) -> str:
    """Return the id of experiment ``name`` in ``store``, creating (or restoring) it when needed."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(client.create_experiment(name, artifact_location=store.artifact_location(name)))
        except MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def write_run_file(out_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``tracking.json`` (atomically) into a training folder; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUN_FILE
    staging = out_dir / f".{RUN_FILE}.tmp"
    staging.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def read_run_file(folder: str | Path) -> dict[str, Any] | None:
    """Return the ``tracking.json`` of a training folder (or of the folder above a checkpoint), or None."""
    folder = Path(folder)
    for candidate in (folder / RUN_FILE, folder.parent / RUN_FILE):
        if candidate.is_file():
            try:
                record = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            if isinstance(record, dict) and record.get("run_id"):
                return {**record, "folder": str(candidate.parent)}
    return None
