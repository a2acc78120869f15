"""Experiment tracking and the model registry: MLflow runs from training, evaluations, list/show/compare,
name@version checkpoints, and trainings that survive a broken store or a missing MLflow."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from medfuse.core.errors import ConfigError, OptionalDependencyError
from medfuse.tracking.context import sha256_file
from medfuse.tracking.predictions import read_predictions

if importlib.util.find_spec("mlflow") is None:
    pytest.skip("the tracking extra (mlflow) is not installed", allow_module_level=True)

IMAGE = {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1, "output_tokens": False}}


def _recipe(manifest: Path, tracking: dict[str, Any] | None, lr: float = 1e-3) -> Any:
    from medfuse.train import load_recipe

    return load_recipe(data={
        "task": "classification", "seed": 0, "name": "tiny-tracking",
        "data": {"manifest": str(manifest), "preset": "synthetic", "image_size": 32, "channels": 1},
        "model": {"kind": "diagnosis",
                  "encoders": {"image": IMAGE, "vitals": {"type": "vitals_mlp", "params": {"num_features": "auto"}}},
                  "fusion": {"type": "concat", "dim": 16}, "head": {"type": "multilabel", "num_outputs": "auto"}},
        "optim": {"lr": lr},
        "train": {"epochs": 1, "batch_size": 16, "log_every": 1},
        "tracking": tracking or {},
    })


def _train(manifest: Path, out: Path, tracking: dict[str, Any] | None, lr: float = 1e-3) -> Any:
    from medfuse.train import train_from_config

    return train_from_config(_recipe(manifest, tracking, lr), out)


def _tracking_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("medfuse.tracking") and r.levelno >= logging.WARNING]


def _same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected])


def _jsonl(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _fast_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """Return a scratch folder, on a RAM disk when there is one, and whether it must be removed afterwards.

    MLflow creates its SQLite tables through dozens of committed migrations and checkpoints are
    fsync'ed: on a busy disk that alone takes tens of seconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="medfuse-tracking-", dir=shm)), True
    return tmp_path_factory.mktemp("tracking"), False


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Two tracked tiny trainings (different learning rates), each evaluated and logged to one SQLite store."""
    from medfuse.data.synth import generate_synthetic
    from medfuse.evaluate import evaluate_checkpoint
    from medfuse.tracking import log_evaluation

    root, remove = _fast_root(tmp_path_factory)
    try:
        data = generate_synthetic(root / "data", n=40, image_size=32, seed=0)
        uri = f"sqlite:///{root / 'store' / 'mlruns.db'}"
        outs, logs = {}, {}
        for name, lr in (("run-a", 1e-3), ("run-b", 3e-2)):
            out = root / name
            _train(data.manifest_path, out, {"backend": "mlflow", "uri": uri, "run_name": name}, lr)
            evaluate_checkpoint(out / "model", data.manifest_path, tasks=["classification"], out=out / "eval",
                                overrides=["n_resamples=50"])
            logs[name] = log_evaluation(out, out / "eval")
            outs[name] = out
        yield SimpleNamespace(root=root, manifest=data.manifest_path, uri=uri, outs=outs, logs=logs)
    finally:
        if remove:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch(tracked: SimpleNamespace, request: pytest.FixtureRequest) -> Path:
    """A folder of this test beside the tracked runs (fast storage for the trainings it runs)."""
    folder = tracked.root / "tests" / re.sub(r"[^\w-]+", "_", request.node.name)
    folder.mkdir(parents=True)
    return folder


# ---------------------------------------------------------------------------- tracked trainings


def test_training_run_is_logged(tracked: SimpleNamespace) -> None:
    from medfuse.tracking.runs import get_run, list_artifacts, metric_history

    out = tracked.outs["run-a"]
    record = json.loads((out / "tracking.json").read_text())
    assert record["backend"] == "mlflow" and record["store"] == tracked.uri and record["run_name"] == "run-a"
    run = get_run(out)
    assert run.run_id == record["run_id"] and run.status == "FINISHED" and run.experiment == "tiny-tracking"
    assert run.params["optim.lr"] == "0.001" and run.params["train.batch_size"] == "16"
    assert run.params["data.manifest_sha256"] == sha256_file(tracked.manifest)
    assert (run.params["data.read"], run.params["data.kept"], run.params["data.quarantined"]) == ("40", "40", "0")
    assert run.tags["medfuse.task"] == "classification" and run.tags["medfuse.version"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the commit checked out at training time (HEAD itself may have moved on since)
        logged = run.tags["mlflow.source.git.commit"]
        assert subprocess.run(["git", "merge-base", "--is-ancestor", logged, "HEAD"]).returncode == 0
    records = _jsonl(out)
    steps = [(r["step"], r["loss"]) for r in records if "loss" in r]
    _same_points(metric_history(run.ref, "loss"), steps)
    val = [(r["step"], r["val/accuracy"]) for r in records if "val/accuracy" in r]
    assert val
    _same_points(metric_history(run.ref, "val/accuracy"), val)
    assert metric_history(run.ref, "system/rss_mb")[0][1] > 0
    assert run.metrics["train/steps"] == steps[-1][0]
    recipe = [p for p, _ in list_artifacts(run.ref)]
    assert "recipe.json" in recipe


def test_evaluation_is_attached_with_intervals_and_predictions(tracked: SimpleNamespace) -> None:
    from medfuse.evaluate.metrics import auroc
    from medfuse.tracking.runs import download_artifact, get_run

    out = tracked.outs["run-a"]
    results = json.loads((out / "eval" / "results.json").read_text())
    run = get_run(out)
    entry = results["metrics"]["auroc"]
    split = results["split"]
    assert run.metrics[f"eval/{split}/auroc"] == pytest.approx(entry["value"])
    assert [run.metrics[f"eval/{split}/auroc_ci_lo"], run.metrics[f"eval/{split}/auroc_ci_hi"]] == pytest.approx(
        entry["ci95"])
    assert run.evaluation()[f"{split}/auroc"].lo == pytest.approx(entry["ci95"][0])
    assert sorted(tracked.logs["run-a"].files) == ["predictions.csv", "report.html", "results.json"]
    path = download_artifact(run.ref, f"evaluation/{split}/predictions.csv", tracked.root / "dl")
    table = read_predictions(path)
    assert len(table.rows) == results["n"]
    # the per-row predictions reproduce the evaluation's own AUROC
    assert auroc(table.y.astype(int), table.probs, task="multilabel") == pytest.approx(entry["value"])


def test_runs_list_and_show(tracked: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    from medfuse.cli import main
    from medfuse.tracking.runs import get_run

    assert main(["-q", "runs", "list", "--store", tracked.uri]) == 0
    listing = capsys.readouterr().out
    rows = [line for line in listing.splitlines() if "run-a" in line or "run-b" in line]
    assert len(rows) == 2 and all("FINISHED" in line for line in rows)
    run = get_run(tracked.outs["run-b"])
    split = next(iter(run.evaluation())).split("/")[0]
    assert run.final_metrics()[f"eval/{split}/auroc"].text() in listing
    assert main(["-q", "runs", "show", "run-b", "--store", tracked.uri]) == 0
    shown = capsys.readouterr().out
    assert run.run_id in shown and "optim.lr = 0.03" in shown and "recipe.json" in shown
    assert "evaluation/" in shown and "predictions.csv" in shown
    assert main(["-q", "runs", "show", "no-such-run", "--store", tracked.uri]) == 2


def test_compare_writes_a_self_contained_report(tracked: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    from medfuse.cli import main
    from medfuse.evaluate.metrics import delong_test
    from medfuse.tracking import compare_runs
    from medfuse.tracking.runs import download_artifact, get_run

    out = tracked.root / "compare"
    assert main(["-q", "runs", "compare", str(tracked.outs["run-a"]), "run-b", "--store", tracked.uri,
                 "--out", str(out)]) == 0
    assert str(out / "compare.html") in capsys.readouterr().out
    page = (out / "compare.html").read_text()
    assert "run-a" in page and "run-b" in page and page.count("<svg") >= 2
    assert "<script" not in page and 'src="http' not in page and "Paired significance tests" in page
    comparison = compare_runs([tracked.outs["run-a"], tracked.outs["run-b"]], out=out, n_resamples=100)
    assert set(comparison.curves["loss"]) == {"run-a", "run-b"}
    delong = [t for pair in comparison.paired for t in pair.tests if t.test == "DeLong"]
    assert delong, comparison.paired[0].notes
    # the DeLong result is the one computed directly from both runs' logged predictions
    runs = [get_run(tracked.outs[n]) for n in ("run-a", "run-b")]
    split = next(iter(runs[0].evaluation())).split("/")[0]
    tables = [read_predictions(download_artifact(r.ref, f"evaluation/{split}/predictions.csv", out / r.run_id))
              for r in runs]
    k = tables[0].names.index(delong[0].output)
    direct = delong_test(tables[0].y[:, k].astype(int), tables[0].probs[:, k], tables[1].probs[:, k])
    assert delong[0].p == pytest.approx(direct.p) and delong[0].value_b == pytest.approx(direct.auc_b)


def test_registry_register_resolve_and_evaluate(tracked: SimpleNamespace, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:

    from medfuse.cli import main
    from medfuse.evaluate import evaluate_checkpoint
    from medfuse.models import load_checkpoint
    from medfuse.tracking import register_checkpoint, resolve_checkpoint
    from medfuse.tracking.mlflow_cb import checkpoint_id
    from medfuse.tracking.runs import get_run, list_artifacts

    out_a, out_b = tracked.outs["run-a"], tracked.outs["run-b"]
    assert register_checkpoint(out_a, "demo-model") == 1
    assert register_checkpoint(out_b / "model", "demo-model", store=tracked.uri) == 2
    path = resolve_checkpoint("demo-model@1", tracked.uri)
    loaded = load_checkpoint(path)
    assert checkpoint_id(path) == checkpoint_id(out_a / "model") and loaded.label_names
    assert checkpoint_id(resolve_checkpoint("demo-model@latest", tracked.uri)) == checkpoint_id(out_b / "model")
    # the checkpoint went into the training run's artifacts, and tracking.json says which one
    assert "model/model.safetensors" in [p for p, _ in list_artifacts(get_run(out_a).ref)]
    assert json.loads((out_a / "tracking.json").read_text())["checkpoint_logged"] == checkpoint_id(out_a / "model")
    with pytest.raises(ConfigError, match="versions 1, 2"):
        resolve_checkpoint("demo-model@7", tracked.uri)
    with pytest.raises(ConfigError, match="demo-model"):
        resolve_checkpoint("other-model@1", tracked.uri)
    plain = tmp_path / "plain"
    shutil.copytree(out_a / "model", plain)  # an untracked checkpoint gets a register run of its own
    assert main(["-q", "registry", "register", str(plain), "--name", "plain", "--store", tracked.uri]) == 0
    shutil.rmtree(plain)
    assert checkpoint_id(resolve_checkpoint("plain@1", tracked.uri)) == checkpoint_id(out_a / "model")
    assert main(["-q", "registry", "list", "--store", tracked.uri]) == 0
    listing = capsys.readouterr().out
    assert "demo-model@1" in listing and "demo-model@2" in listing and "plain@1" in listing
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.uri)
    result = evaluate_checkpoint("demo-model@1", tracked.manifest, tasks=["classification"], out=tmp_path / "ev",
                                 overrides=["n_resamples=0"])
    assert result.results["config"]["checkpoint"] == str(path)
    before = json.loads((out_a / "eval" / "results.json").read_text())["metrics"]["auroc"]["value"]
    assert result.results["metrics"]["auroc"]["value"] == pytest.approx(before)


def test_evaluations_attach_to_the_training_run(tracked: SimpleNamespace, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    import medfuse.tracking.evaluation as evaluation
    from medfuse.tracking import attach_evaluation, register_checkpoint
    from medfuse.tracking.runs import get_run

    out_b = tracked.outs["run-b"]
    run_b = get_run(out_b)
    before = dict(run_b.metrics)
    attached = attach_evaluation(out_b / "model", out_b / "eval")
    assert attached is not None and attached.ref.run_id == run_b.run_id
    assert {k: v for k, v in get_run(out_b).metrics.items() if k.startswith("eval/")} == {
        k: v for k, v in before.items() if k.startswith("eval/")}  # the same evaluation again: same numbers
    version = register_checkpoint(out_b, "attach-model", store=tracked.uri)
    by_name = attach_evaluation(f"attach-model@{version}", out_b / "eval", store=tracked.uri)
    assert by_name is not None and by_name.ref.run_id == run_b.run_id
    assert attach_evaluation(tracked.root / "data", out_b / "eval") is None  # nothing tracked there

    def locked(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(evaluation, "log_metrics", locked)
    with caplog.at_level(logging.WARNING):
        assert attach_evaluation(out_b / "model", out_b / "eval") is None
    warnings = _tracking_warnings(caplog)
    assert len(warnings) == 1 and "database is locked" in warnings[0]


def test_callback_logs_a_checkpoint_saved_after_training_ends(tracked: SimpleNamespace, scratch: Path) -> None:
    from medfuse.tracking import MlflowCallback
    from medfuse.tracking.mlflow_cb import checkpoint_id, log_checkpoint
    from medfuse.tracking.runs import get_run, list_artifacts

    out = scratch / "run"
    shutil.copytree(tracked.outs["run-a"] / "model", out / "model")
    config = out / "model" / "config.json"
    os.utime(config, (config.stat().st_atime, config.stat().st_mtime - 3600))  # left over from an earlier training
    callback = MlflowCallback(tracked.uri, out_dir=out, experiment="direct", run_name="direct",
                              recipe={"task": "classification", "optim": {"lr": 0.1}}, source=tracked.manifest,
                              select_metric="auroc", system_metrics=False)
    callback.on_log(1, {"step": 1, "epoch": 0, "loss": 0.5, "lr": 0.1})
    callback.on_epoch_end(1, 1, {"auroc": 0.75, "undefined": float("nan")})
    callback.on_train_end(SimpleNamespace(steps=1, epochs=1, wall_s=2.0, samples_per_s=10.0, best_metric=0.75))
    run = get_run(out)
    assert callback.enabled and run.status == "FINISHED" and run.params["optim.lr"] == "0.1"
    assert run.metrics["val/auroc"] == 0.75 and run.metrics["best/auroc"] == 0.75 and "val/undefined" not in run.metrics
    assert run.params["data.manifest_sha256"] == sha256_file(tracked.manifest) and "system/rss_mb" not in run.metrics
    assert not any(p.startswith("model/") for p, _ in list_artifacts(run.ref))  # the stale checkpoint is not this run's
    callback.on_checkpoint_saved(out / "model")
    assert "model/model.safetensors" in [p for p, _ in list_artifacts(run.ref)]
    assert json.loads((out / "tracking.json").read_text())["checkpoint_logged"] == checkpoint_id(out / "model")
    assert log_checkpoint(out) == f"{run.artifact_uri}/model"  # already logged: nothing copied again
    assert log_checkpoint(tracked.root / "data") is None  # not a tracked training folder


# ---------------------------------------------------------------------------- failures never stop training


def _assert_trained_untracked(out: Path, warnings: list[str], cause: str) -> None:
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert any("loss" in r for r in _jsonl(out))
    assert len(warnings) == 1, warnings
    assert cause in warnings[0] and "training continues" in warnings[0]


def test_store_under_a_regular_file(tracked: SimpleNamespace, scratch: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    (scratch / "file.txt").write_text("a file, not a folder")
    uri = f"sqlite:///{scratch / 'file.txt' / 'db.sqlite'}"
    with caplog.at_level(logging.WARNING):
        _train(tracked.manifest, scratch / "out", {"backend": "mlflow", "uri": uri})
    _assert_trained_untracked(scratch / "out", _tracking_warnings(caplog), "file.txt")
    assert not (scratch / "out" / "tracking.json").exists()


def test_read_only_store_folder(tracked: SimpleNamespace, scratch: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 0o500 does not stop root from writing (the file-in-the-way test covers it)")
    locked = scratch / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with caplog.at_level(logging.WARNING):
            _train(tracked.manifest, scratch / "out", {"backend": "mlflow", "uri": f"sqlite:///{locked / 'db.sqlite'}"})
    finally:
        locked.chmod(0o700)
    _assert_trained_untracked(scratch / "out", _tracking_warnings(caplog), "not writable")


def test_a_locked_database_mid_run_warns_once(tracked: SimpleNamespace, scratch: Path,
                                             monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    real = MlflowClient.log_batch
    calls = []

    def locked(self: Any, run_id: str, metrics: Any = (), *args: Any, **kwargs: Any) -> Any:
        if metrics:
            calls.append(run_id)
            raise sqlite3.OperationalError("database is locked")
        return real(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", locked)
    with caplog.at_level(logging.WARNING):
        _train(tracked.manifest, scratch / "out", {"backend": "mlflow", "uri": tracked.uri, "run_name": "locked"})
    _assert_trained_untracked(scratch / "out", _tracking_warnings(caplog), "database is locked")
    assert len(calls) == 1  # switched off after the first failure: later log points do not touch the store
    assert (scratch / "out" / "tracking.json").is_file()  # the run had started before the lock


def test_without_mlflow_training_still_runs(tracked: SimpleNamespace, scratch: Path,
                                           monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import medfuse.tracking.store as store_module
    from medfuse.tracking import make_callbacks

    def missing(module: str, *, extra: str, purpose: str | None = None) -> Any:
        raise OptionalDependencyError(f"{module} is needed: pip install 'medfuse[{extra}]'")

    monkeypatch.setattr(store_module, "require", missing)
    with pytest.raises(OptionalDependencyError, match=r"medfuse\[tracking\]"):
        store_module.mlflow_client(tracked.uri)
    # asked for MLflow by name: one warning and no callback
    with caplog.at_level(logging.WARNING):
        assert make_callbacks(_recipe(tracked.manifest, {"backend": "mlflow"}), scratch / "x", None) == []
    warnings = _tracking_warnings(caplog)
    assert len(warnings) == 1 and "medfuse[tracking]" in warnings[0] and "metrics.jsonl" in warnings[0]
    # by default it falls back to TensorBoard: hyper-parameters next to the trainer's scalars
    caplog.clear()
    out = scratch / "out"
    with caplog.at_level(logging.WARNING):
        _train(tracked.manifest, out, {"uri": tracked.uri})
    assert (out / "model" / "config.json").is_file() and any("loss" in r for r in _jsonl(out))
    assert _tracking_warnings(caplog) == []
    assert json.loads((out / "tracking.json").read_text())["backend"] == "tensorboard"
    assert list((out / "tensorboard" / "hparams").glob("events.out.tfevents.*"))
