"""``torchrun`` with 2 CPU processes (gloo): the same final weights as one process on the same global batch.

Rank ``r`` of the distributed sampler takes every second sample of the epoch's order, so two processes with
batch ``b`` see, step by step, exactly the samples one process sees with batch ``2b``; DDP averages their
gradients, so the updates agree up to float summation order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from medfuse.data.synth import generate_synthetic
from medfuse.train import load_recipe, train_from_config

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recipe(manifest: Path, batch_size: int) -> dict:
    return {
        "task": "classification", "seed": 3,
        "data": {"manifest": str(manifest), "preset": "synthetic", "image_size": 16, "channels": 1,
                 "train_split": "train", "val_split": "val"},
        "model": {"kind": "diagnosis", "encoders": {"vitals": {"type": "vitals_mlp", "params": {"num_features": "auto"}}},
                  "fusion": {"type": "concat", "dim": 32},
                  "head": {"type": "multilabel", "num_outputs": "auto", "dropout": 0.0}},
        "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01},
        "schedule": {"kind": "cosine", "warmup_ratio": 0.2},
        "train": {"epochs": 2, "batch_size": batch_size, "log_every": 1},
    }


def test_two_process_torchrun_matches_one_process(tmp_path: Path) -> None:
    synth = generate_synthetic(tmp_path / "data", n=80, seed=1, image_size=32)
    one = train_from_config(load_recipe(data=_recipe(synth.manifest_path, 16)), tmp_path / "one")

    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(_recipe(synth.manifest_path, 8)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "medfuse.cli",
           "train", str(tmp_path / "ddp.yaml"), "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    a = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=f"{key} differs")

    logged = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert [r["step"] for r in logged if "loss" in r] == list(range(1, one.fit.steps + 1))  # rank 0 logs, once
    assert losses[-1] < losses[0]  # it trained
    assert not (tmp_path / "ddp" / "model" / "model.safetensors.tmp").exists()
