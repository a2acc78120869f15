"""The interpretability evaluation task: overlays for the report and per-modality contributions."""

from __future__ import annotations

from pathlib import Path

import torch

from medfuse.evaluate.tasks import EvalConfig, EvalContext, run_task
from medfuse.models import build_model
from tests.test_eval_support import dataset


def test_interpretability_gives_overlays_and_contributions(tmp_path: Path) -> None:
    ds = dataset(tmp_path, "binary")
    torch.manual_seed(0)
    model = build_model({
        "kind": "diagnosis",
        "encoders": {"image": {"type": "timm", "params": {"arch": "test_resnet", "in_chans": 3}},
                     "vitals": {"type": "vitals_mlp", "params": {"num_features": 2}}},
        "fusion": {"type": "concat", "dim": 8},
        "head": {"type": "binary", "num_outputs": 1},
    })
    res = run_task("interpretability", EvalContext(model, ds, EvalConfig(n_resamples=0)), samples=3)
    gallery = res.artifacts["gradcam"]
    assert len(gallery) == 3 and all(e["overlay_png"] and e["image_png"] for e in gallery)
    values = res.artifacts["modality_contribution"]["values"]
    assert set(values) == {"image", "vitals"} and all(v >= 0 for v in values.values())
    assert sum(values.values()) > 0
