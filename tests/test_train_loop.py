"""The training loop: learning, accumulation, schedules, EMA, best-epoch selection, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig
from medfuse.train.loop import build_scheduler, fit
from medfuse.train.state import latest_checkpoint
from tests.toy import ToyData, ToyModel, ToyTask

REPO = Path(__file__).resolve().parents[1]


def _run(out: Path, *, resume: bool = False, epochs: int = 3, **loop_kw) -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    model = ToyModel()
    loop = LoopConfig(epochs=epochs, batch_size=8, log_every=2, checkpoint_every=3, **loop_kw)
    return fit(ToyTask(), model, ToyData(), ToyData(n=32, seed=1), loop=loop, optim=OptimConfig(lr=0.05),
               schedule=ScheduleConfig(warmup_steps=2), out_dir=out, seed=3, resume=resume)


def test_fit_learns_and_logs(tmp_path: Path) -> None:
    model, res = _run(tmp_path, select_metric="accuracy")
    assert res.steps == 24 and res.epochs == 3
    assert res.best_metric is not None and res.best_metric > 0.7
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any('"val/accuracy"' in ln for ln in lines) and any('"loss"' in ln for ln in lines)
    assert latest_checkpoint(tmp_path / "checkpoints") is not None


def test_grad_accum_matches_large_batch(tmp_path: Path) -> None:
    """Two micro-batches of 8 accumulate to the same update as one batch of 16 (mean losses, no dropout)."""
    torch.manual_seed(0)
    a = ToyModel()
    a.body[2].p = 0.0
    b = ToyModel()
    b.load_state_dict(a.state_dict())
    b.body[2].p = 0.0
    common = dict(optim=OptimConfig(lr=0.1, weight_decay=0.0), schedule=ScheduleConfig(kind="constant"), seed=0)
    fit(ToyTask(), a, ToyData(), None, loop=LoopConfig(max_steps=3, batch_size=16, log_every=1), out_dir=tmp_path / "a", **common)
    fit(ToyTask(), b, ToyData(), None, loop=LoopConfig(max_steps=3, batch_size=8, grad_accum=2, log_every=1), out_dir=tmp_path / "b", **common)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)


def test_warmup_cosine_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, ScheduleConfig(warmup_steps=4, min_lr_ratio=0.1), total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[-1] == pytest.approx(0.1, abs=0.01) and all(x >= y - 1e-9 for x, y in zip(lrs[4:], lrs[5:]))


def test_ema_weights_are_returned(tmp_path: Path) -> None:
    model, _ = _run(tmp_path, epochs=1, ema_decay=0.9)
    assert model is not None and all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path) -> None:
    ref, _ = _run(tmp_path / "ref", epochs=4)
    out = tmp_path / "killed"
    code = (  # noqa: UP031 (a script template)
        "import sys, time, torch; sys.path.insert(0, %r)\n"
        "import medfuse.train.loop as L\n"
        "from tests.test_train_loop import _run\n"
        "orig = L.save_train_state\n"
        "def slow(*a, **k):\n"
        "    r = orig(*a, **k); print('SAVED', k['position'].step, flush=True); time.sleep(0.3); return r\n"
        "L.save_train_state = slow\n"
        "_run(__import__('pathlib').Path(%r), epochs=4)\n"
    ) % (str(REPO), str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"})
    saved = 0
    deadline = time.time() + 120
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("SAVED"):
            saved += 1
            if saved == 4:  # mid-run, mid-epoch
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the training finished before it could be killed"
    last = latest_checkpoint(out / "checkpoints")
    assert last is not None and 0 < int(last.name.split("-")[1]) < 32
    resumed, res = _run(out, resume=True, epochs=4)
    assert res.resumed_from is not None and res.resumed_from > 0
    for (n, p), (_, q) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(p, q), f"{n} differs after resume"


def test_a_single_modality_recipe_reads_only_its_inputs(tmp_path: Path) -> None:
    """A vitals-only model neither decodes images nor loses rows whose image is missing."""
    from medfuse.data.synth import generate_synthetic
    from medfuse.train import load_recipe
    from medfuse.train.runner import build_datasets

    synth = generate_synthetic(tmp_path / "data", n=30, seed=0, image_size=32)
    frame = pd.read_csv(synth.manifest_path)
    (synth.manifest_path.parent / frame.loc[0, "image_path"]).unlink()
    recipe = {"task": "classification", "data": {"manifest": str(synth.manifest_path), "preset": "synthetic",
                                                 "image_size": 32, "channels": 1},
              "model": {"kind": "diagnosis", "encoders": {"vitals": {"type": "vitals_mlp", "params": {"num_features": "auto"}}},
                        "fusion": {"type": "concat", "dim": 16}, "head": {"type": "multilabel", "num_outputs": "auto"}}}
    source, train, _ = build_datasets(load_recipe(data=recipe), tmp_path / "run")
    assert train.config.image is None and train.config.text is None and train.config.vitals
    assert source.quarantined == 0 and "image" not in train[0]
    recipe["model"]["encoders"]["image"] = {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1}}
    source, train, _ = build_datasets(load_recipe(data=recipe), tmp_path / "run2")
    assert train.config.image and source.quarantined == 1  # the missing image counts once the model reads images


def test_model_state_is_a_snapshot_not_the_live_weights() -> None:
    """The best epoch's weights are kept with model_state: later updates must not reach them (CPU included)."""
    from medfuse.train.state import model_state

    model = torch.nn.Linear(3, 2)
    snapshot = model_state(model)
    before = {k: v.clone() for k, v in snapshot.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias.zero_()
    assert all(torch.equal(snapshot[k], before[k]) for k in before)


def test_reported_validation_is_the_saved_epochs() -> None:
    from pathlib import Path

    from medfuse.train.loop import FitResult
    from medfuse.train.runner import _last_validation

    history = [{"step": 10, "epoch": 1, "val/accuracy": 0.74}, {"step": 20, "epoch": 2, "val/accuracy": 0.73}]
    chosen = FitResult(Path("."), 20, 2, 1.0, 1.0, best_metric=0.74, best_step=10, history=history)
    assert _last_validation(chosen) == {"accuracy": 0.74}
    last = FitResult(Path("."), 20, 2, 1.0, 1.0, best_metric=None, best_step=None, history=history)
    assert _last_validation(last) == {"accuracy": 0.73}
