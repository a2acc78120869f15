"""Registries, typed configs and overrides, optional-import errors, the CLI's sub-commands."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from medfuse.cli import build_parser, main
from medfuse.core import ConfigError, Registry, require
from medfuse.core.config import apply_overrides, check_choice, from_dict, to_dict
from medfuse.core.errors import DataError, OptionalDependencyError


def test_registry_suggests_close_matches() -> None:
    reg: Registry = Registry("fusion")
    for name in ("concat", "gated", "tensor"):
        reg.register(name)(type(name, (), {"__doc__": f"{name} fusion"}))
    assert reg.get("gated").__name__ == "gated"
    with pytest.raises(ConfigError, match=r"unknown fusion 'gatd'; did you mean 'gated'\? known: concat, gated, tensor"):
        reg.get("gatd")
    assert reg.describe("concat") == "concat fusion"


@dataclass
class Inner:
    lr: float = 0.1
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    epochs: int = 1
    note: str | None = None


def test_from_dict_nested_and_unknown_keys() -> None:
    cfg = from_dict(Outer, {"inner": {"lr": 1, "names": "a"}, "epochs": 3})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.inner.names == ["a"] and cfg.epochs == 3
    with pytest.raises(ConfigError, match=r"inner\.lrr.*did you mean 'inner\.lr'"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    assert to_dict(cfg) == {"inner": {"lr": 1.0, "names": ["a"]}, "epochs": 3, "note": None}


def test_overrides_parse_yaml_values() -> None:
    data = apply_overrides({"train": {"lr": 0.1}}, ["train.lr=3e-4", "train.tags=[a, b]", "model.fusion.type=gated"])
    assert data == {"train": {"lr": 3e-4, "tags": ["a", "b"]}, "model": {"fusion": {"type": "gated"}}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["nonsense"])


def test_check_choice_names_field_and_allowed() -> None:
    with pytest.raises(ConfigError, match=r"train.precision: unknown value 'bf61'.*known: fp32, bf16"):
        check_choice("train.precision", "bf61", ["fp32", "bf16"])


def test_require_names_the_extra() -> None:
    with pytest.raises(OptionalDependencyError, match=r"pip install 'medfuse\[index\]'"):
        require("no_such_module_xyz", extra="index", purpose="retrieval indexes")


def test_data_error_names_file_row_field() -> None:
    err = DataError("label 'x' not allowed", path="m.csv", row=7, field="label")
    assert str(err) == "m.csv, line 7, field 'label': label 'x' not allowed"


def test_cli_lists_every_design_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    text = capsys.readouterr().out
    for cmd in ("demo", "synth", "validate", "train", "evaluate", "predict", "index", "deid", "export", "serve", "models"):
        assert f"    {cmd}" in text, cmd
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(sub) >= {"demo", "synth", "validate", "train", "evaluate", "predict", "index", "deid", "export", "serve", "models"}
