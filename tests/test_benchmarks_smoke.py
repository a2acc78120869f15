"""Smoke tests of the speed benchmarks (each script run with ``--quick`` as a subprocess, its JSON checked)
and of the pieces they rely on: :class:`medfuse.train.step.TrainStep`, the optimizer kernels, the
contrastive task's temperature and the batch image pipeline's greyscale path."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: int = 600) -> dict[str, Any]:
    """Run ``benchmarks/<script> --quick ARGS`` and return its JSON document."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH", "")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_device(doc: dict[str, Any]) -> None:
    assert doc["device"] in ("cpu", "cuda") and isinstance(doc["gpu"], bool)
    if not doc["gpu"]:
        assert "no GPU" in doc["note"]


def test_train_throughput_quick() -> None:
    doc = run_benchmark("train_throughput.py", "--threads", "1", "--before")
    assert doc["benchmark"] == "train_throughput" and doc["preset"] == "quick"
    check_device(doc)
    for name in ("medfuse", "open_clip", "medfuse_before"):
        part = doc[name]
        assert positive(part["samples_per_s"]["median"]), part
        assert len(part["samples_per_s"]["rounds"]) == doc["rounds"]
        assert all(positive(v) for v in part["samples_per_s"]["rounds"])
        assert positive(part["params"]) and positive(part["train_flops_per_step"]) and positive(part["achieved_tflops"])
    for name in ("medfuse", "open_clip"):
        assert positive(doc[name]["peak_memory"]["peak_mb"])
    assert doc["medfuse"]["params"] == doc["open_clip"]["params"] and doc["param_difference"] <= 0.01
    # the same architecture does the same work (a few FLOPs differ in the loss)
    flops = doc["medfuse"]["train_flops_per_step"], doc["open_clip"]["train_flops_per_step"]
    assert abs(flops[0] - flops[1]) / flops[1] < 0.01
    assert positive(doc["ratio_medfuse_over_open_clip"]) and positive(doc["paired_ratio_median"])
    assert positive(doc["before_after"]["speedup"])
    assert doc["medfuse"]["optimizer"] == "AdamW fused" and doc["medfuse_before"]["optimizer"] == "AdamW foreach"
    if not doc["gpu"]:
        assert doc["medfuse"]["mfu"] is None


def test_data_pipeline_quick() -> None:
    doc = run_benchmark("data_pipeline.py")
    assert doc["benchmark"] == "data_pipeline"
    check_device(doc)
    for name in ("torchvision", "medfuse", "medfuse_device"):
        assert positive(doc[name]["images_per_s"]["median"]), doc[name]
    assert doc["medfuse"]["cache_ready"] == doc["images"] > 0
    assert positive(doc["ratio_medfuse_over_torchvision"]) and positive(doc["step_rate_samples_per_s"])
    assert doc["step_rate_source"].startswith("measured")
    assert isinstance(doc["gpu_would_wait"], bool) and isinstance(doc["gpu_would_wait_device_transforms"], bool)
    assert doc["gpu_would_wait"] == (doc["medfuse"]["images_per_s"]["median"] < doc["step_rate_samples_per_s"])


def test_data_pipeline_takes_a_step_rate() -> None:
    doc = run_benchmark("data_pipeline.py", "--step-rate", "1e9", "--rounds", "1", "--batches", "3")
    assert doc["step_rate_source"] == "--step-rate" and doc["gpu_would_wait"] is True


def test_memory_quick() -> None:
    doc = run_benchmark("memory.py", "--threads", "1")
    assert doc["benchmark"] == "memory"
    check_device(doc)
    assert set(doc["options"]) == {"plain", "grad_checkpointing", "full_gather", "local_loss"}
    if doc["gpu"]:
        assert all(opt["max_batch"] > 0 for opt in doc["options"].values())
    else:
        assert "no GPU" in doc["no_gpu"]
        assert all(positive(opt["peak_rss_mb"]) for opt in doc["options"].values())


def test_demo_time_quick() -> None:
    doc = run_benchmark("demo_time.py", "--threads", "1", timeout=1800)
    assert doc["benchmark"] == "demo_time"
    check_device(doc)
    assert set(doc["stages_s"]) == {"synthesise", "pre-train", "fine-tune", "evaluate"}
    assert all(positive(v) for v in doc["stages_s"].values())
    assert positive(doc["run_demo_wall_s"]) and doc["run_demo_wall_s"] >= doc["stages_total_s"] * 0.99
    assert doc["report_written"] is True


def test_encoders_quick() -> None:
    doc = run_benchmark("encoders.py", "--runs", "1", "--threads", "1")
    assert doc["benchmark"] == "encoders" and doc["quick"] is True and doc["runs"] == 1 and doc["threads"] == 1
    results = doc["results"]
    assert not [r for r in results if "skipped" in r], [r for r in results if "skipped" in r]
    groups = {r["group"] for r in results}
    assert groups == {"image", "text", "signal", "ecg", "audio", "video", "fusion"}
    for r in results:
        assert positive(r["params"]) and positive(r["flops"]), r
        assert positive(r["latency_ms"]["b1"]) and positive(r["latency_ms"]["b8"]), r
    names = [r["name"] for r in results]
    assert any(n.startswith("audio_cnn:") for n in names) and any(n.startswith("video_frames:cnn+") for n in names)
    assert any(n.startswith("signal_cnn1d:ecg 3-lead 250Hz") for n in names)
    flops = {r["name"]: r["flops"] for r in results if r["group"] == "video"}
    # the Transformer over frames adds work the counter sees (its fused inference kernel is switched off)
    attention, transformer = (next(v for k, v in flops.items() if f"cnn+{t}" in k) for t in ("attention", "transformer"))
    assert transformer > attention


# ------------------------------------------------------------------ what the benchmarks rely on
@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one torch thread (tiny models lose time to thread hand-offs on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_dual_encoder() -> tuple[Any, dict[str, Any]]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import train_throughput as tt
    finally:
        sys.path.remove(str(BENCHMARKS))
    sizes = tt.PRESETS["quick"]
    torch.manual_seed(0)
    images, ids = tt.make_batch(sizes)
    return tt.build_medfuse(sizes), {"image": images, "text": {"input_ids": ids}}


def test_train_step_learns_without_reading_the_loss(one_thread: None) -> None:
    from medfuse.train.config import OptimConfig
    from medfuse.train.loop import build_optimizer
    from medfuse.train.step import TrainStep
    from medfuse.train.tasks import ContrastiveTask

    module, batch = _tiny_dual_encoder()
    optimizer = build_optimizer(list(module.named_parameters()), OptimConfig(lr=3e-3), torch.device("cpu"))
    assert optimizer.defaults["fused"] is True  # one-pass kernels on the CPU too
    step = TrainStep(ContrastiveTask(), module, optimizer, device=torch.device("cpu"), clip_grad_norm=1.0)
    losses = [step(batch) for _ in range(6)]
    assert all(loss.ndim == 0 and not loss.requires_grad for loss in losses)
    assert float(losses[-1]) < float(losses[0])
    assert all(p.grad is None for p in module.parameters())  # dropped after each step


def test_grad_checkpointing_switches_each_tower_once() -> None:
    from medfuse.train.step import set_grad_checkpointing

    module, batch = _tiny_dual_encoder()
    switched = set_grad_checkpointing(module, True)
    assert switched == ["model.image_encoder", "model.text_encoder"]
    assert module.model.text_encoder.grad_checkpointing is True


def test_contrastive_task_trains_the_temperature() -> None:
    from medfuse.train.tasks import ContrastiveTask

    module, batch = _tiny_dual_encoder()
    out = ContrastiveTask().loss(module, batch)
    assert torch.allclose(out.parts["logit_scale"], module.model.scale().detach())  # exp(s) once, not twice
    out.total.backward()
    assert module.model.logit_scale.grad is not None and module.model.logit_scale.grad.abs() > 0


def test_greyscale_batches_are_augmented_as_one_plane_with_the_same_result() -> None:
    from medfuse.data.transforms import Augment, ImagePipeline, augment_batch

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    grey = torch.randint(0, 256, (4, 1, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = grey.expand(4, 3, 24, 24).contiguous()
    pipe = ImagePipeline(mean, std, Augment())
    fast = pipe.batch(images, torch.Generator().manual_seed(3))
    reference = augment_batch(images.float() / 255, Augment(), torch.Generator().manual_seed(3))
    reference = (reference - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert fast.shape == (4, 3, 24, 24) and torch.allclose(fast, reference, atol=1e-5)
    for colour_rows in ([0, 1, 2, 3], [1, 3]):  # all colour, then mixed grey and colour
        mixed = images.clone()
        mixed[colour_rows, 2] = 255 - mixed[colour_rows, 2]
        out = pipe.batch(mixed, torch.Generator().manual_seed(3))
        reference = augment_batch(mixed.float() / 255, Augment(), torch.Generator().manual_seed(3))
        reference = (reference - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        assert torch.allclose(out, reference, atol=1e-5)
    assert torch.equal(images[:, 0], grey[:, 0])  # the input is left alone
