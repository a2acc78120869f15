"""Tracking parts that need no store: store resolution and checks, parameters, the tracking section,
per-row predictions and the paired tests between runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medfuse.core.errors import ConfigError
from medfuse.tracking.context import flatten_params, metric_key
from medfuse.tracking.paired import paired_tests
from medfuse.tracking.predictions import PredictionTable, predictions_frame, read_predictions
from medfuse.tracking.store import check_store, resolve_store


def test_store_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve_store()
    assert default.uri == f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"
    assert default.artifact_root == tmp_path / "runs" / "mlartifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_store().uri == "http://tracking.example:5000" and resolve_store().artifact_root is None
    assert resolve_store("other.db").uri == f"sqlite:///{tmp_path / 'other.db'}"
    (tmp_path / "folder").mkdir()
    assert resolve_store("folder").sqlite_path == tmp_path / "folder" / "mlruns.db"
    assert resolve_store("sqlite:////x/y/z.db").artifact_root == Path("/x/y/mlartifacts")


def test_store_check_fails_fast_on_a_locked_database(tmp_path: Path) -> None:
    store = resolve_store(tmp_path / "db.sqlite")
    check_store(store)
    holder = sqlite3.connect(str(store.sqlite_path))
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            check_store(store, timeout_s=0.05)
    finally:
        holder.rollback()
        holder.close()
    (tmp_path / "file.txt").write_text("not a folder")
    with pytest.raises(OSError):
        check_store(resolve_store(f"sqlite:///{tmp_path / 'file.txt' / 'db.sqlite'}"))


def test_reading_commands_never_create_a_store(tmp_path: Path) -> None:
    from medfuse.tracking.runs import list_runs

    with pytest.raises(ConfigError, match="no tracking store here"):
        list_runs(tmp_path / "typo.db")
    assert not (tmp_path / "typo.db").exists()


def test_params_are_flattened_and_keys_made_valid() -> None:
    params = flatten_params({"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "name": "x", "empty": {}, "n": None})
    assert params == {"optim.lr": "0.001", "optim.betas": "[0.9, 0.99]", "name": "x", "empty": "{}", "n": "null"}
    assert metric_key("i2t_R@1") == "i2t_R_at_1" and metric_key("val/ndcg@10") == "val/ndcg_at_10"
    assert len(flatten_params({"long": "x" * 2000})["long"]) == 500


def test_tracking_section_is_validated() -> None:
    from medfuse.tracking.callbacks import experiment_name, tracking_config

    with pytest.raises(ConfigError, match="mlflow"):
        tracking_config({"backend": "mlfow"})
    with pytest.raises(ConfigError):
        tracking_config({"experimnt": "x"})
    cfg = tracking_config({})
    assert cfg.backend == "auto" and cfg.log_checkpoint
    assert experiment_name(SimpleNamespace(name=None), cfg) == "medfuse"
    assert experiment_name(SimpleNamespace(name="chest"), cfg) == "chest"


def test_predictions_round_trip_and_paired_tests_align_rows(tmp_path: Path) -> None:
    from medfuse.evaluate.metrics import delong_test

    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, size=(n, 2)).astype(float)
    pa = np.clip(y * 0.6 + rng.random((n, 2)) * 0.5, 0, 1)
    pb = rng.random((n, 2))
    predictions_frame("multilabel", ["a", "b"], range(n), [f"p{i}" for i in range(n)], y, pa).to_csv(
        tmp_path / "a.csv", index=False)
    order = rng.permutation(n)[: n - 5]  # B scored a shuffled subset of the rows
    predictions_frame("multilabel", ["a", "b"], order, [f"p{i}" for i in order], y[order], pb[order]).to_csv(
        tmp_path / "b.csv", index=False)
    table_a, table_b = read_predictions(tmp_path / "a.csv"), read_predictions(tmp_path / "b.csv")
    assert table_a.task == "multilabel" and table_a.names == ["a", "b"] and table_a.patients is not None
    tests, notes = paired_tests(table_a, table_b, n_resamples=200)
    shared = np.sort(order)
    expected = delong_test(y[shared, 0], pa[shared, 0], pb[shared, 0])
    first = next(t for t in tests if t.output == "a")
    assert first.test == "DeLong" and first.n == n - 5
    assert first.p == pytest.approx(expected.p) and first.value_a == pytest.approx(expected.auc_a)
    assert any(t.output == "macro" and t.test == "paired bootstrap" for t in tests)
    assert any("55 shared rows" in note for note in notes)
    shifted = PredictionTable("multilabel", ["a", "b"], table_b.rows, 1 - table_b.y, table_b.probs)
    assert paired_tests(table_a, shifted)[0] == []


def test_multiclass_predictions_use_a_paired_bootstrap(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=50)
    good = np.eye(3)[y] * 0.7 + 0.1
    bad = rng.dirichlet(np.ones(3), size=50)
    for name, probs in (("good", good), ("bad", bad)):
        predictions_frame("multiclass", ["x", "y", "z"], range(50), [""] * 50, y, probs).to_csv(
            tmp_path / f"{name}.csv", index=False)
    tests, _ = paired_tests(read_predictions(tmp_path / "good.csv"), read_predictions(tmp_path / "bad.csv"),
                            n_resamples=300)
    assert [t.metric for t in tests] == ["accuracy"]
    assert tests[0].value_a == 1.0 and tests[0].p < 0.01
