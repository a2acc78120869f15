"""``medfuse demo``: synthesise data, pre-train a dual encoder, fine-tune fused and single-modality
diagnosis models, evaluate on the held-out test split and write ``report.html``.

Everything runs from the recipes in ``configs/`` (copied into the output folder with the paths filled in),
so every number in the report is reproducible with ``medfuse train``/``medfuse evaluate`` and the seed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_IMAGE = {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1, "output_tokens": False}}
_TEXT = {"type": "transformer_text",
         "params": {"width": 128, "layers": 2, "heads": 4, "max_length": 96, "tokenizer": "wordpiece"}}
_VITALS = {"type": "vitals_mlp", "params": {"num_features": "auto"}}


@dataclass
class DemoResult:
    """Where the demo wrote things, how long each stage took and the headline comparison."""

    out_dir: Path
    report: Path | None
    seconds: dict[str, float] = field(default_factory=dict)
    comparison: dict[str, float] = field(default_factory=dict)
    metric: str = "auroc"

    def summary_lines(self) -> list[str]:
        lines = [f"demo finished in {sum(self.seconds.values()):.0f}s "
                 f"({', '.join(f'{k} {v:.0f}s' for k, v in self.seconds.items())})"]
        for name, value in self.comparison.items():
            lines.append(f"  test {self.metric} {name:<28} {value:.3f}")
        if self.report:
            lines.append(f"report: {self.report}")
        return lines


def _data(manifest: Path, image_size: int, **extra: Any) -> dict[str, Any]:
    # every run reads the images decoded once, from one cache beside the data
    cache = manifest.parent / "cache" / f"img{image_size}"
    return {"manifest": str(manifest), "preset": "synthetic", "image_size": image_size, "channels": 1,
            "train_split": "train", "val_split": "val", "cache_dir": str(cache), **extra}


def demo_recipes(manifest: Path, image_size: int, seed: int, pretrained: Path | None) -> dict[str, dict[str, Any]]:
    """The recipes the demo trains: ``clip`` pre-training, the ``fused`` model and one model per modality."""
    common = {"seed": seed, "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.02},
              "schedule": {"kind": "cosine", "warmup_ratio": 0.1}}
    recipes: dict[str, dict[str, Any]] = {
        "clip": {**common, "task": "contrastive", "data": _data(manifest, image_size),
                 "model": {"kind": "dual_encoder", "encoders": {"image": _IMAGE, "text": _TEXT}, "embed_dim": 128},
                 "loss": {"name": "clip"},
                 "train": {"epochs": 6, "batch_size": 64, "select_metric": "rsum", "log_every": 5}},
    }
    singles = {"image": _IMAGE, "text": _TEXT, "vitals": _VITALS}
    variants = {"fused": singles, **{f"{m} only": {m: enc} for m, enc in singles.items()}}
    for name, encoders in variants.items():
        recipe = {**common, "task": "classification", "data": _data(manifest, image_size),
                  "model": {"kind": "diagnosis", "encoders": encoders,
                            "fusion": {"type": "gated", "dim": 128, "modality_dropout": 0.15 if len(encoders) > 1 else 0.0},
                            "head": {"type": "multilabel", "num_outputs": "auto", "dropout": 0.1}},
                  "train": {"epochs": 8, "batch_size": 32, "select_metric": "auroc", "log_every": 5}}
        towers = {m: f"{m}_encoder." for m in encoders if m in ("image", "text")}
        if pretrained is not None and towers:
            recipe["init"] = {"checkpoint": str(pretrained), "map": {src: f"encoders.{m}." for m, src in towers.items()}}
            if "text" in towers:  # the pre-trained token table stays: most of the text tower's weights, little to gain
                recipe["strategy"] = {"kind": "freeze", "freeze": [r"^encoders\.text\.token_embedding\."]}
        recipes[name] = recipe
    return recipes


def run_demo(out_dir: Path, *, n: int = 600, seed: int = 0, image_size: int = 64) -> DemoResult:
    """Run the whole demo into ``out_dir``; returns a :class:`DemoResult` (report path, timings, comparison)."""
    from medfuse.data.synth import generate_synthetic
    from medfuse.evaluate import evaluate_checkpoint
    from medfuse.train import load_recipe, train_from_config

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    synth = generate_synthetic(out_dir / "data", n=n, seed=seed, image_size=image_size)
    seconds["synthesise"] = time.perf_counter() - t

    recipes = demo_recipes(synth.manifest_path, image_size, seed, None)
    t = time.perf_counter()
    clip_dir = out_dir / "clip"
    train_from_config(load_recipe(data=recipes["clip"]), clip_dir)
    seconds["pre-train"] = time.perf_counter() - t

    recipes = demo_recipes(synth.manifest_path, image_size, seed, clip_dir)
    (out_dir / "configs").mkdir(exist_ok=True)
    for name, recipe in recipes.items():
        (out_dir / "configs" / f"{name.replace(' ', '_')}.json").write_text(json.dumps(recipe, indent=2), encoding="utf-8")
    t = time.perf_counter()
    checkpoints: dict[str, Path] = {}
    for name in ("fused", "image only", "text only", "vitals only"):
        checkpoints[name] = out_dir / name.replace(" ", "_")
        train_from_config(load_recipe(data=recipes[name]), checkpoints[name])
    seconds["fine-tune"] = time.perf_counter() - t

    t = time.perf_counter()
    result = evaluate_checkpoint(
        checkpoints["fused"], synth.manifest_path, split="test", out=out_dir / "evaluation", seed=seed,
        config={"n_resamples": 300, "options": {
            "modality_comparison": {"checkpoints": {k: str(v) for k, v in checkpoints.items() if k != "fused"}},
            "robustness": {"max_rows": 64, "rates": [0.0, 0.5, 1.0], "image_corruptions": ["gaussian_noise", "blur"],
                           "text_corruptions": ["typos"]}}},
    )
    seconds["evaluate"] = time.perf_counter() - t
    comparison = _comparison(result.results)
    report = out_dir / "evaluation" / "report.html"
    return DemoResult(out_dir, report if report.is_file() else None, seconds, comparison)


def _comparison(results: dict[str, Any]) -> dict[str, float]:
    """Return configuration name -> test AUROC from the modality comparison (trained models and masked inputs)."""
    task = results.get("tasks", {}).get("modality_comparison", {})
    configurations = task.get("artifacts", {}).get("configurations", [])
    metric = task.get("artifacts", {}).get("metric", "auroc")
    out: dict[str, float] = {}
    for row in configurations:
        value = (row.get("metrics", {}).get(metric) or {}).get("value")
        if value is not None:
            label = row["name"].replace("_", " ") + (" (inputs masked)" if row.get("kind") == "single_modality" else "")
            out[label] = float(value)
    return out
