"""The heart-sound recipe (configs/heartsound2016.yaml) end to end, and the window pooling it relies on.

The recipe trains for two steps and is evaluated through the CLI on a small WAV manifest written here
(so it runs without ../shared/data) and on the PhysioNet/CinC 2016 set in ../shared/data (skipped when
absent). Figures are not checked here (docs/applications-heartsound.md has them); the plumbing is:
the recipe's audio preparation reaches training, the checkpoint and evaluation. The pooling tests
check that a recording of any length gives one prediction that is the mean of its windows'.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from medfuse.cli import main
from medfuse.core.config import from_dict, to_dict
from medfuse.data import ManifestDataset
from medfuse.data.audio import AudioConfig, load_audio_windows, prepare_audio_windows
from medfuse.models import build_model
from medfuse.models.config import ModelConfig
from medfuse.train import load_recipe
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "heartsound2016.yaml"
SR = 2000
QUICK = ["train.epochs=1", "train.max_steps=2", "train.batch_size=4", "train.eval_batch_size=4"]
COLUMNS = ["audio_path", "record_id", "label", "label_name", "source_db", "split", "sample_rate", "duration_s"]


def heart_sound(seconds: float, abnormal: bool, rng: np.random.Generator) -> np.ndarray:
    """Return a phonocardiogram-like clip ``(T,)``: S1/S2 bursts each beat, a systolic murmur when ``abnormal``."""
    t = np.arange(int(seconds * SR)) / SR
    x = 0.01 * rng.standard_normal(t.size)
    period = 60.0 / rng.uniform(60, 90)
    for beat in np.arange(rng.uniform(0, period), seconds, period):
        for onset, freq in ((beat, 50.0), (beat + 0.3 * period, 80.0)):
            dt = t - onset
            on = (dt >= 0) & (dt < 0.1)
            x[on] += np.sin(2 * np.pi * freq * dt[on]) * np.exp(-dt[on] / 0.03)
        if abnormal:
            on = (t > beat + 0.08) & (t < beat + 0.28 * period)
            x[on] += 0.3 * rng.standard_normal(int(on.sum()))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_manifest(root: Path) -> Path:
    """Write 12 training and 6 development WAVs (site x and y) with the shared manifest's columns."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(18):
        split, site = ("train", "training-x") if i < 12 else ("dev", "training-y")
        abnormal = i % 3 == 0
        seconds = float(rng.uniform(5.0, 9.0) if split == "train" else rng.uniform(6.0, 14.0))
        path = f"audio/r{i:03d}.wav"
        sf.write(root / path, heart_sound(seconds, abnormal, rng), SR, subtype="PCM_16")
        rows.append({"audio_path": path, "record_id": f"r{i:03d}", "label": int(abnormal),
                     "label_name": "abnormal" if abnormal else "normal", "source_db": site, "split": split,
                     "sample_rate": SR, "duration_s": round(seconds, 3)})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def train_and_evaluate(manifest: Path, out: Path, overrides: list[str], eval_rows: int | None) -> dict[str, Any]:
    argv = ["--quiet", "train", str(RECIPE), "--out", str(out / "run")]
    for item in [f"data.manifest={manifest}", *QUICK, *overrides]:
        argv += ["--set", item]
    assert main(argv) == 0
    extra = ["--set", "n_resamples=20"] + (["--set", f"max_rows={eval_rows}"] if eval_rows else [])
    assert main(["--quiet", "evaluate", "--checkpoint", str(out / "run"), "--manifest", str(manifest), "--split", "dev",
                 "--task", "classification", "--out", str(out / "eval"), *extra]) == 0
    return json.loads((out / "eval" / "results.json").read_text(encoding="utf-8"))


def recipe_audio() -> AudioConfig:
    recipe = load_recipe(RECIPE)
    return from_dict(AudioConfig, recipe.data.columns["audio_prep"], where="audio_prep")


def check_results(results: dict[str, Any], out: Path, n: int) -> None:
    assert results["split"] == "dev" and results["n"] == n
    for name in ("balanced_accuracy", "auroc"):
        entry = results["metrics"][name]
        assert 0.0 <= entry["value"] <= 1.0
        lo, hi = entry["ci95"]
        assert lo <= entry["value"] <= hi
    prepared = to_dict(recipe_audio())
    stored = json.loads((out / "run" / "model" / "config.json").read_text(encoding="utf-8"))
    assert stored["extra"]["audio"] == prepared  # predict and serve prepare recordings from this
    assert results["config"]["data"]["audio_prep"] == prepared  # evaluation windows as in training


# ---------------------------------------------------------------------- end to end
def test_recipe_trains_and_evaluates_on_generated_wavs(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    results = train_and_evaluate(manifest, tmp_path, [], None)
    check_results(results, tmp_path, 6)


@pytest.mark.shared
def test_recipe_on_shared_heart_sounds(tmp_path: Path) -> None:
    manifest = shared_path("heartsound2016", "manifest.csv")
    results = train_and_evaluate(manifest, tmp_path, ["data.max_rows=8"], 6)
    check_results(results, tmp_path, 6)


def test_training_set_draws_the_recipe_crops_and_evaluation_the_full_grid(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    cfg = recipe_audio()
    data = {"preset": "heartsound2016", "audio_prep": vars(cfg)}
    train = ManifestDataset(manifest, data, split="train", train=True)
    dev = ManifestDataset(manifest, data, split="dev")
    win = int(cfg.window_s * SR)
    torch.manual_seed(0)
    first, second = train[0]["audio"], train[0]["audio"]
    assert first.shape == (cfg.train_windows, win) and not torch.equal(first, second)
    path = manifest.parent / dev.frame.iloc[0]["audio_path"]
    np.testing.assert_array_equal(dev[0]["audio"].numpy(), load_audio_windows(path, cfg))
    assert torch.equal(dev[0]["audio"], dev[0]["audio"])


# ---------------------------------------------------------------------- window pooling
def recipe_model() -> torch.nn.Module:
    recipe = load_recipe(RECIPE)
    raw = json.loads(json.dumps(recipe.model))
    raw["head"]["num_outputs"] = 1
    torch.manual_seed(0)
    return build_model(from_dict(ModelConfig, raw, where="model")).eval()


def logits(model: torch.nn.Module, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    batch: dict[str, Any] = {"audio": audio, "present": {"audio": torch.ones(audio.shape[0], dtype=torch.bool)}}
    if mask is not None:
        batch["audio_mask"] = mask
    with torch.no_grad():
        return model(batch).logits.reshape(-1)


def test_a_clip_scores_the_mean_of_its_windows() -> None:
    """Mean window pooling, a linear fusion and a linear head: a clip's logit is the mean of its windows'."""
    cfg = recipe_audio()
    win = int(cfg.window_s * SR)
    rng = np.random.default_rng(1)
    pieces = [heart_sound(cfg.window_s, k % 2 == 0, rng) for k in range(3)]
    exact = AudioConfig(sample_rate=SR, band=None, normalize="none", window_s=cfg.window_s, hop_s=cfg.window_s)
    windows = prepare_audio_windows(np.concatenate(pieces), SR, exact)
    assert windows.shape == (3, win)
    for piece, window in zip(pieces, windows, strict=True):
        np.testing.assert_array_equal(piece, window)
    model = recipe_model()
    clip = logits(model, torch.from_numpy(windows)[None])
    each = logits(model, torch.from_numpy(windows)[:, None])
    torch.testing.assert_close(clip, each.mean().reshape(1), rtol=1e-5, atol=1e-5)
    # the same clip beside a longer one in a padded batch: padding windows are left out
    padded = torch.zeros(2, 5, win)
    padded[0, :3] = torch.from_numpy(windows)
    padded[1] = torch.randn(5, win)
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    torch.testing.assert_close(logits(model, padded, mask)[:1], clip, rtol=1e-5, atol=1e-5)


def test_a_repeated_recording_scores_as_the_recording() -> None:
    """Normalised per recording without a filter, a clip repeated end to end gives the clip's windows and score."""
    cfg = recipe_audio()
    prep = AudioConfig(sample_rate=SR, band=None, normalize=cfg.normalize, clip=cfg.clip, window_s=cfg.window_s,
                       hop_s=cfg.window_s)
    piece = heart_sound(cfg.window_s, True, np.random.default_rng(2))
    once = prepare_audio_windows(piece, SR, prep)
    thrice = prepare_audio_windows(np.tile(piece, 3), SR, prep)
    assert once.shape[0] == 1 and thrice.shape[0] == 3
    np.testing.assert_allclose(thrice, np.repeat(once, 3, axis=0), atol=1e-5)
    model = recipe_model()
    torch.testing.assert_close(logits(model, torch.from_numpy(thrice)[None]), logits(model, torch.from_numpy(once)[None]),
                               rtol=1e-4, atol=1e-4)
