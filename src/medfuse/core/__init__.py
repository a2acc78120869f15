"""The floor under every medfuse package: registries, typed configs, errors, optional imports, progress."""

from medfuse.core.errors import ConfigError, DataError, MedfuseError
from medfuse.core.optional import require
from medfuse.core.registry import Registry

__all__ = ["ConfigError", "DataError", "MedfuseError", "Registry", "require"]
