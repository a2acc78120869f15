"""What cells mean for their roles: label targets (class index, multi-hot, number) and subgroup bands.

:class:`LabelEncoder` turns the label cells of a row into a target and names what is wrong with a cell
(:class:`CellError` with a short reason code such as ``unknown_label``) so validation can report it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medfuse.core.errors import DataError
from medfuse.data.manifest import is_missing, parse_number, text_value

if TYPE_CHECKING:
    from medfuse.data.config import DataConfig

__all__ = ["CellError", "LabelEncoder", "band_label", "infer_classes", "train_mask"]

def band_label(value: Any, edges: list[float]) -> str:
    """Return the band a number falls in, e.g. edges ``[18, 40, 65]``: ``<18``, ``18-39``, ``40-64``, ``65+``.

    Missing or non-numeric values give ``unknown``. Labels assume integer-like edges (ages in years).
    """
    try:
        number = parse_number(value)
    except ValueError:
        return "unknown"
    if number is None:
        return "unknown"
    i = bisect.bisect_right(edges, number)
    if i == 0:
        return f"<{_fmt(edges[0])}"
    if i == len(edges):
        return f"{_fmt(edges[-1])}+"
    return f"{_fmt(edges[i - 1])}-{_fmt(edges[i] - 1)}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class CellError(ValueError):
    """A cell's value is wrong: ``reason`` is a short code (``unknown_label``), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LabelEncoder:
    """Turns label cells into targets: class index, multi-hot vector or number.

    binary / multiclass: ``encode -> int`` in ``[0, len(classes))``.
    multilabel: ``encode -> (K,) float32`` multi-hot over ``classes``.
    regression: ``encode -> float``.
    """

    task: str
    classes: tuple[str, ...]
    column: str | None = None
    columns: tuple[str, ...] = ()
    sep: str | None = None

    @classmethod
    def from_config(cls, config: DataConfig, frame: Any) -> LabelEncoder | None:
        """Return the encoder for ``config``'s label roles, classes inferred from ``frame``'s train rows; None without labels."""
        task = config.resolved_task
        if task is None:
            return None
        if config.labels:
            return cls(task, tuple(config.labels), columns=tuple(config.labels))
        assert config.label is not None
        if task == "regression":
            return cls(task, (), column=config.label)
        classes = config.classes if config.classes is not None else infer_classes(frame, config)
        if config.task is None and config.classes is None and not config.label_sep:
            task = "binary" if len(classes) == 2 else "multiclass"
        if task == "binary" and len(classes) != 2:
            raise DataError(
                f"task 'binary' needs 2 classes, the train rows have {len(classes)}: {classes[:10]}; "
                "set 'classes' or task 'multiclass'",
                field=config.label,
            )
        return cls(task, tuple(classes), column=config.label, sep=config.label_sep)

    @property
    def n_outputs(self) -> int:
        """Number of model outputs: classes (or 1 for regression)."""
        return max(len(self.classes), 1)

    def encode(self, row: Mapping[str, Any]) -> int | float | Any:
        """Return the target of ``row`` (a mapping of column -> cell); raises :class:`CellError`."""
        import numpy as np

        if self.columns:
            out = np.zeros(len(self.columns), dtype=np.float32)
            for k, col in enumerate(self.columns):
                out[k] = _binary_cell(row.get(col), col)
            return out
        value = row.get(self.column)  # type: ignore[arg-type]
        if self.task == "regression":
            try:
                number = parse_number(value)
            except ValueError as exc:
                raise CellError("invalid_label", f"label: {exc}") from None
            if number is None:
                raise CellError("missing_label", "the label is empty")
            return number
        if self.sep is not None:
            from medfuse.data.splits import split_names

            names = split_names(value, self.sep)
            unknown = [n for n in names if n not in self.classes]
            if unknown:
                raise CellError("unknown_label", f"{unknown[0]!r} is not one of the {len(self.classes)} classes {_short(self.classes)}")
            out = np.zeros(len(self.classes), dtype=np.float32)
            for n in names:
                out[self.classes.index(n)] = 1.0
            return out
        if is_missing(value):
            raise CellError("missing_label", "the label is empty")
        name = text_value(value)
        if name not in self.classes:
            raise CellError("unknown_label", f"{name!r} is not one of the classes {_short(self.classes)}")
        return self.classes.index(name)


def _binary_cell(value: Any, column: str) -> float:
    try:
        number = parse_number(value)
    except ValueError as exc:
        raise CellError("invalid_label", f"{column}: {exc}") from None
    if number is None:
        raise CellError("missing_label", f"{column} is empty")
    if number not in (0.0, 1.0):
        raise CellError("invalid_label", f"{column} must be 0 or 1, got {text_value(value)!r}")
    return number


def _short(classes: Iterable[str], n: int = 8) -> str:
    items = list(classes)
    return "[" + ", ".join(items[:n]) + (", ..." if len(items) > n else "") + "]"


def train_mask(frame: Any, config: DataConfig) -> Any:
    """Return a boolean array marking the train rows (all rows when there is no split column or no train split)."""
    import numpy as np

    if not config.split or config.split not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    from medfuse.data.splits import canonical_split

    splits = frame[config.split].map(text_value)
    mask = (splits.map(canonical_split) == "train").to_numpy()
    return mask if mask.any() else np.ones(len(frame), dtype=bool)


def infer_classes(frame: Any, config: DataConfig) -> list[str]:
    """Return the sorted label names found in the train rows (numbers sort numerically)."""
    assert config.label is not None
    values = frame.loc[train_mask(frame, config), config.label].tolist()
    names: set[str] = set()
    for v in values:
        if config.label_sep:
            from medfuse.data.splits import split_names

            names.update(split_names(v, config.label_sep))
        elif not is_missing(v):
            names.add(text_value(v))
    return sorted(names, key=_class_sort_key)


def _class_sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)
