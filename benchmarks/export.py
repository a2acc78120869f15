"""PyTorch vs ONNX vs ONNX-int8 (dynamic and static): size, CPU latency and metrics on a dev manifest.

Exports a checkpoint with ``medfuse.export.export_checkpoint(int8=True)`` and prints one JSON document
with the measured sizes, latencies (batch 1 and 8), parity with PyTorch and accuracy/AUROC on the dev
rows of the manifest. Without ``--checkpoint``, a small image + report + vitals model is trained for a
few epochs on the manifest's training rows first (so that the metrics mean something); without
``--manifest``, a synthetic chest set from ``medfuse.data.synth.generate_synthetic`` is written.

    python benchmarks/export.py                                  # synthetic set, fresh model
    python benchmarks/export.py --checkpoint runs/demo --manifest data/manifest.csv
    python benchmarks/export.py --quick                          # smaller set, 1 epoch
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import emit

from medfuse.core.config import from_dict, to_dict


def train_small_model(manifest: Path, out: Path, *, epochs: int, image_size: int, seed: int = 0) -> Path:
    """Fit a small fusion model on the manifest's train rows (plain loop, AdamW, BCE) and save it."""
    from medfuse.data import ManifestDataset, build_loader
    from medfuse.data.presets import preset
    from medfuse.data.synth import VITALS
    from medfuse.models import ModelConfig, build_model, save_checkpoint

    config = dataclasses.replace(preset("synthetic"), image_size=image_size, channels=1)
    train = ManifestDataset(manifest, config, split="train", train=True)
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {
            "image": {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1}},
            "text": {"type": "transformer_text", "params": {"width": 64, "layers": 2, "heads": 4, "max_length": 256}},
            "vitals": {"type": "vitals_mlp", "params": {"num_features": len(VITALS), "hidden": [32], "dim": 32}},
        },
        "fusion": {"type": "gated", "dim": 64, "modality_dropout": 0.1},
        "head": {"type": "multilabel", "num_outputs": len(train.classes or [])},
    }, where="model")
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.encoders["vitals"].fit_stats(torch.from_numpy(train.vitals))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        for batch in build_loader(train, 32, shuffle=True, seed=seed):
            if len(batch["index"]) == 0:
                continue
            loss = loss_fn(model(batch).logits, batch["labels"].nan_to_num(0.0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return save_checkpoint(out, model, cfg, label_names=train.label_names, preprocessing=train.preprocessing(),
                           extra={"data": to_dict(train.config)})


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Return the figures of an export report side by side: size, latency, metrics per variant."""
    graphs, int8 = report["graphs"], report.get("int8", {}).get("graphs", {})
    evaluation = report.get("evaluation", {})
    sizes = {"onnx_fp32": graphs["model"]["bytes"], "onnx_int8": int8.get("model", {}).get("bytes_int8"),
             "onnx_int8_static": evaluation.get("static_bytes")}
    return {
        "bytes": sizes,
        "size_ratio_int8": {k: round(v / sizes["onnx_fp32"], 4) for k, v in sizes.items() if v and k != "onnx_fp32"},
        "parity_max_abs_diff": {name: g["max_abs_diff"] for name, g in graphs.items()},
        "latency_ms_median": {batch: {k: v["median"] for k, v in row.items()}
                              for batch, row in report.get("latency_ms", {}).items() if batch.startswith("batch_")},
        "metrics": evaluation.get("metrics"),
        "metric_drop_vs_pytorch": evaluation.get("drop"),
        "max_abs_logit_diff_vs_pytorch": evaluation.get("max_abs_logit_diff"),
        "dev_rows": evaluation.get("rows"),
        "calibration_rows": evaluation.get("calibration", {}).get("rows"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint folder (default: train a small model on the manifest)")
    parser.add_argument("--manifest", help="manifest with train and dev rows (default: a synthetic set)")
    parser.add_argument("--quick", action="store_true", help="a smaller set and one epoch")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch and onnxruntime timings")
    parser.add_argument("--out", help="where to write the ONNX files (default: a temporary folder)")
    args = parser.parse_args(argv)
    from medfuse.data.synth import generate_synthetic
    from medfuse.export import export_checkpoint

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medfuse-export-") as scratch:
        root = Path(scratch)
        manifest = Path(args.manifest) if args.manifest else None
        if manifest is None:
            generate_synthetic(root / "synth", n=120 if args.quick else 600, seed=0, image_size=64)
            manifest = root / "synth" / "manifest.csv"
        checkpoint = Path(args.checkpoint) if args.checkpoint else train_small_model(
            manifest, root / "model", epochs=1 if args.quick else 6, image_size=64)
        out = Path(args.out) if args.out else root / "onnx"
        report = export_checkpoint(checkpoint, out, int8=True, calibration_manifest=manifest, threads=args.threads,
                                   latency_budget_s=0.5 if args.quick else 2.0)
    emit({"benchmark": "export", "checkpoint": args.checkpoint or "small model trained here",
          "manifest": args.manifest or "synthetic (generate_synthetic)", "threads": args.threads,
          "cpu_count": os.cpu_count(), "torch": torch.__version__, **summary(report),
          "seconds": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
