"""The model registry: checkpoints registered under a name get versions, ``name@version`` resolves to a folder.

Built on MLflow's model registry in the same store as the runs. Registering copies the checkpoint into
the artifacts of its training run (``<out>/tracking.json``) or, for an untracked checkpoint, of a
``register`` run in the ``medfuse-registry`` experiment, so a version never changes when the folder it
came from does. The model card in the checkpoint's ``config.json`` becomes the version's description
and tags. ``medfuse evaluate --checkpoint name@3`` and ``name@latest`` resolve through
:func:`resolve_checkpoint`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from medfuse.core.errors import ConfigError
from medfuse.tracking.mlflow_cb import checkpoint_id, upload_checkpoint
from medfuse.tracking.store import Store, experiment_id, mlflow_client, read_run_file, resolve_store

log = logging.getLogger(__name__)

REGISTRY_EXPERIMENT = "medfuse-registry"
CACHE_ENV = "MEDFUSE_REGISTRY_CACHE"


@dataclass
class RegisteredVersion:
    """One version of a registered model: where its checkpoint is and what its card says."""

    name: str
    version: int
    source: str
    run_id: str | None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


def checkpoint_folder(path: str | Path) -> Path:
    """Return the checkpoint inside ``path``: the folder itself, or a training folder's ``model/``."""
    folder = Path(path).expanduser()
    if (folder / "config.json").is_file():
        return folder
    if (folder / "model" / "config.json").is_file():
        return folder / "model"
    raise ConfigError(f"{folder}: not a checkpoint folder (no config.json here or in model/)")


def _description(doc: dict[str, Any]) -> tuple[str, dict[str, str]]:
    from medfuse.models.card import ModelCard, render_markdown

    model = doc.get("model") or {}
    head = model.get("head") or {}
    facts = {"kind": model.get("kind"), "head": head.get("type"), "labels": ", ".join(doc.get("label_names") or []),
             "checkpoint_id": doc.get("checkpoint_id"), "medfuse": (doc.get("versions") or {}).get("medfuse")}
    facts = {k: v for k, v in facts.items() if v}
    card = ModelCard.from_dict(doc.get("card")) if doc.get("card") else ModelCard()
    tags = {f"medfuse.{k}": str(v) for k, v in facts.items()}
    for key, value in card.to_dict().items():
        if value:
            tags[f"card.{key}"] = (json.dumps(value) if not isinstance(value, str) else value)[:5000]
    return render_markdown(card, facts), tags


def register_checkpoint(checkpoint_dir: str | Path, name: str, store: str | Store | None = None) -> int:
    """Register a checkpoint (folder or training folder) as a new version of ``name``; return the version.

    store: the registry's store (default: the training run's store from ``tracking.json``, else the
    default store, see :func:`medfuse.tracking.store.resolve_store`).
    """
    from medfuse.models.checkpoint import read_checkpoint_config

    if not name or "@" in name or "/" in name:
        raise ConfigError(f"registry name '{name}': give a name without '@' or '/'")
    folder = checkpoint_folder(checkpoint_dir)
    doc = read_checkpoint_config(folder)
    record = read_run_file(folder)
    if record is not None and record.get("backend", "mlflow") != "mlflow":
        record = None
    resolved = resolve_store(store or (record or {}).get("store"))
    if record is not None and resolve_store(record.get("store")).uri != resolved.uri:
        record = None  # the training run lives in another store: register a copy here
    client = mlflow_client(resolved)
    from mlflow.exceptions import MlflowException

    ident = checkpoint_id(folder)
    if record is not None:
        run_id = str(record["run_id"])
        if ident and record.get("checkpoint_logged") == ident:
            source = f"{client.get_run(run_id).info.artifact_uri}/model"
        else:
            source = upload_checkpoint(client, run_id, folder, Path(record["folder"]))
    else:
        run = client.create_run(experiment_id(client, REGISTRY_EXPERIMENT, resolved), run_name=f"register {name}",
                                tags={"medfuse.kind": "register", "medfuse.checkpoint_dir": str(folder.resolve())})
        run_id = run.info.run_id
        source = upload_checkpoint(client, run_id, folder)
        client.set_terminated(run_id, "FINISHED")
    description, tags = _description(doc)
    tags["medfuse.checkpoint_dir"] = str(folder.resolve())
    try:
        client.create_registered_model(name, description=f"medfuse checkpoints registered as {name}")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, description=description,
                                          await_creation_for=0)
    log.info("registered %s as %s@%s (source %s)", folder, name, version.version, source)
    return int(version.version)


def _versions(client: Any, name: str) -> list[Any]:
    quoted = name.replace("'", "\\'")
    return list(client.search_model_versions(f"name = '{quoted}'"))


def _as_version(mv: Any) -> RegisteredVersion:
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    return RegisteredVersion(mv.name, int(mv.version), mv.source, mv.run_id, mv.description or "", dict(mv.tags or {}),
                             created)


def list_models(store: str | Store | None = None) -> list[RegisteredVersion]:
    """Return every registered version (by name, then version)."""
    client = mlflow_client(resolve_store(store), create=False)
    found = [_as_version(mv) for model in client.search_registered_models() for mv in _versions(client, model.name)]
    return sorted(found, key=lambda v: (v.name, v.version))


def get_version(ref: str, store: str | Store | None = None) -> RegisteredVersion:
    """Return the version ``name@N`` or ``name@latest`` names; errors list what is registered."""
    name, sep, wanted = str(ref).rpartition("@")
    if not sep or not name or not wanted:
        raise ConfigError(f"'{ref}': expected name@version or name@latest")
    client = mlflow_client(resolve_store(store), create=False)
    versions = sorted((_as_version(mv) for mv in _versions(client, name)), key=lambda v: v.version)
    if not versions:
        known = sorted(m.name for m in client.search_registered_models())
        raise ConfigError(f"'{ref}': no model '{name}' in the registry; registered: {', '.join(known) or 'none'} "
                          "(`medfuse registry register CHECKPOINT --name NAME` adds one)")
    if wanted == "latest":
        return versions[-1]
    if not wanted.isdigit() or int(wanted) not in {v.version for v in versions}:
        raise ConfigError(f"'{ref}': '{name}' has versions {', '.join(str(v.version) for v in versions)} "
                          "(or use @latest)")
    return next(v for v in versions if v.version == int(wanted))


def _local_source(source: str) -> Path | None:
    if source.startswith("file:"):
        return Path(unquote(urlparse(source).path))
    return Path(source) if "://" not in source and ":" not in source.split("/")[0] else None


def cache_root() -> Path:
    """Where remote registry checkpoints are downloaded: ``$MEDFUSE_REGISTRY_CACHE`` or ~/.cache/medfuse/registry."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medfuse" / "registry")


def resolve_checkpoint(ref: str | Path, store: str | Store | None = None) -> Path:
    """Return a local checkpoint folder for ``name@version``, ``name@latest`` or a folder path.

    Versions whose files are in a local artifact store are read in place; others are downloaded
    once into :func:`cache_root`.
    """
    path = Path(str(ref)).expanduser()
    if path.is_dir():
        return checkpoint_folder(path)
    if "@" not in str(ref):
        raise ConfigError(f"checkpoint '{ref}': no such folder; give a checkpoint folder or name@version "
                          "(`medfuse registry list` shows the registered ones)")
    resolved = resolve_store(store)
    version = get_version(str(ref), resolved)
    local = _local_source(version.source)
    if local is not None:
        if (local / "config.json").is_file():
            return local
        raise ConfigError(f"{version.ref}: its checkpoint {local} is gone (config.json missing)")
    target = cache_root() / version.name / str(version.version)
    if (target / "config.json").is_file() and checkpoint_id(target) == version.tags.get("medfuse.checkpoint_id"):
        return target
    import mlflow.artifacts

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=scratch,
                                                       tracking_uri=resolved.uri))
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(got), str(target))
    return checkpoint_folder(target)
