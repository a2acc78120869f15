"""The ``deid:`` section of a data config and on-the-fly de-identification of texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from medfuse.core import ConfigError
from medfuse.core.config import check_choice
from medfuse.text.deid.engine import MODES, Deidentifier

__all__ = ["DeidConfig", "deidentify_texts"]


@dataclass
class DeidConfig:
    """De-identification settings.

    enabled: whether texts are de-identified (off by default: most public sets are already).
    mode: ``placeholder`` (``[NAME]``, ``[DATE]``, ...) or ``surrogate`` (consistent stand-ins).
    seed: keys the surrogates and date shifts (runs with the same seed agree).
    text_columns: which manifest columns hold text (None: the usual report/caption columns).
    """

    enabled: bool = False
    mode: str = "placeholder"
    seed: int = 0
    text_columns: list[str] | None = None

    def __post_init__(self) -> None:
        check_choice("deid.mode", self.mode, MODES)
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"deid.enabled: expected true or false, got {self.enabled!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"deid.seed: expected an integer, got {self.seed!r}")
        if isinstance(self.text_columns, str):
            self.text_columns = [self.text_columns]


@lru_cache(maxsize=8)
def _deidentifier(mode: str, seed: int) -> Deidentifier:
    return Deidentifier(mode=mode, seed=seed)


def deidentify_texts(
    texts: Sequence[str], cfg: DeidConfig, patient_ids: Sequence[str | None] | None = None
) -> list[str]:
    """Return ``texts`` de-identified by ``cfg`` (unchanged copies when ``cfg.enabled`` is false).

    ``patient_ids`` (one per text) keep each patient's date shift consistent in surrogate mode.
    """
    if not cfg.enabled:
        return list(texts)
    if patient_ids is not None and len(patient_ids) != len(texts):
        raise ConfigError(f"deidentify_texts: {len(texts)} texts but {len(patient_ids)} patient ids")
    deid = _deidentifier(cfg.mode, cfg.seed)
    ids = patient_ids if patient_ids is not None else [None] * len(texts)
    return [deid.redact(t, patient_id=p).text for t, p in zip(texts, ids)]
