"""Shared pieces of the evaluation tests: a tiny synthetic manifest, oracle encoders and model builders.

The images carry the label: channel c is bright (200) where class/label c is positive and dark (50)
elsewhere, so an encoder that averages each channel (``eval_oracle_image``) separates the classes
perfectly. ``eval_oracle_text`` maps a text to +1 for each vocabulary word it names and -1 for
"no <word>", so prompts and reports land on the same axes as the images.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from medfuse.core.config import from_dict
from medfuse.data import DataConfig, ManifestDataset, validate_manifest
from medfuse.models import ENCODERS, Encoder, EncoderOutput, ModelConfig, build_model

SIZE = 32
WORDS = ["alpha", "beta", "gamma"]
CLASSES = {"binary": ["normal", "pneumonia"], "multiclass": list(WORDS), "multilabel": list(WORDS)}


@ENCODERS.register("eval_oracle_image")
class OracleImageEncoder(Encoder):
    """Per-channel mean of the image: ``(B, 3, H, W)`` -> ``(B, 3)``."""

    def __init__(self, modality: str = "image") -> None:
        super().__init__()
        self.output_dim = 3
        self.modality = modality

    def forward(self, images: Tensor) -> EncoderOutput:
        return EncoderOutput(pooled=images.float().mean(dim=(2, 3)))


@ENCODERS.register("eval_oracle_text")
class OracleTextEncoder(Encoder):
    """+1 on axis k when a text names ``vocab[k]``, -1 when it says "no vocab[k]": ``list[str]`` -> ``(B, K)``."""

    def __init__(self, vocab: Sequence[str] = tuple(WORDS), modality: str = "text") -> None:
        super().__init__()
        self.vocab = [str(v) for v in vocab]
        self.output_dim = len(self.vocab)
        self.modality = modality

    def forward(self, texts: Sequence[str]) -> EncoderOutput:
        rows = []
        for text in texts:
            low = f" {str(text).lower()} "
            rows.append([-1.0 if f"no {w}" in low else (1.0 if f" {w}" in low else 0.0) for w in self.vocab])
        return EncoderOutput(pooled=torch.tensor(rows, dtype=torch.float32).reshape(len(texts), -1))


def _targets(task: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if task == "binary":
        return (np.arange(n) % 2 == 0).astype(np.int64) ^ (rng.random(n) < 0.3)
    if task == "multiclass":
        return rng.permutation(np.arange(n) % 3)
    out = rng.random((n, 3)) < 0.4
    out[np.arange(n), np.arange(n) % 3] = True  # every label present
    out[np.arange(0, n, 7), :] = False  # and absent
    return out.astype(np.int64)


def write_manifest(root: Path, task: str = "binary", *, n: int = 40, n_train: int = 20, seed: int = 0,
                   small_site: int = 5, informative: bool = True) -> Path:
    """Write ``n`` rows (the first ``n_train`` train, the rest test) of PNG images + reports + vitals.

    ``informative=False`` draws the bright channels at random, independent of the labels.
    """
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    y = _targets(task, n, rng)
    rows = []
    for i in range(n):
        bright = np.zeros(3, dtype=bool)
        if task == "binary":
            bright[0] = bool(y[i])
            label = CLASSES["binary"][int(y[i])]
            words = "pneumonia" if y[i] else "normal"
        elif task == "multiclass":
            bright[int(y[i])] = True
            label = WORDS[int(y[i])]
            words = WORDS[int(y[i])]
        else:
            bright[:] = y[i].astype(bool)
            label = ""
            words = ", ".join(w if y[i][k] else f"no {w}" for k, w in enumerate(WORDS))
        if not informative:
            bright = rng.random(3) < 0.5
        pixels = np.where(bright[None, None, :], 200, 50) + rng.integers(-20, 21, size=(SIZE, SIZE, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").save(root / f"img/{i:03d}.png")
        split = "train" if i < n_train else "test"
        site = "B" if i >= n - small_site else "A"
        row = {"image_path": f"img/{i:03d}.png", "patient_id": f"P{i // 2}", "split": split,
               "report": f"Findings: {words}. Heart size normal.", "v1": f"{rng.normal():.3f}",
               "v2": f"{rng.normal():.3f}", "sex": "F" if i % 4 < 2 else "M", "site": site, "label": label}
        for k, w in enumerate(WORDS):
            row[w] = str(int(y[i][k])) if task == "multilabel" else "0"
        rows.append(row)
    path = root / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def data_config(task: str = "binary", **changes: Any) -> DataConfig:
    """Return the data config of :func:`write_manifest` for ``task``."""
    roles: dict[str, Any] = dict(image="image_path", text="report", vitals=["v1", "v2"], patient="patient_id",
                                 split="split", subgroups=["sex", "site"], image_size=SIZE, channels=3)
    if task == "multilabel":
        roles.update(labels=list(WORDS), task="multilabel")
    else:
        roles.update(label="label", classes=CLASSES[task], task=task)
    roles.update(changes)
    return DataConfig(**roles)


def dataset(root: Path, task: str = "binary", split: str = "test", **kwargs: Any) -> ManifestDataset:
    """Return the ``split`` rows of a freshly written manifest (validated first)."""
    path = write_manifest(root, task, **kwargs)
    report = validate_manifest(path, data_config(task))
    return ManifestDataset(report, data_config(task), split=split)


def _head(task: str) -> dict[str, Any]:
    return {"type": task, "num_outputs": 1 if task == "binary" else 3}


def oracle_config(task: str = "binary", *, vitals: bool = False) -> ModelConfig:
    """Return the config of an image oracle (optionally fused with a vitals encoder the oracle ignores)."""
    encoders: dict[str, Any] = {"image": {"type": "eval_oracle_image"}}
    if vitals:
        encoders["vitals"] = {"type": "vitals_mlp", "params": {"num_features": 2, "dim": 3, "hidden": [4]}}
    return from_dict(ModelConfig, {"kind": "diagnosis", "encoders": encoders,
                                   "fusion": {"type": "concat", "dim": 3, "params": {"activation": "identity"}},
                                   "head": _head(task)}, where="model")


def oracle_model(task: str = "binary", *, vitals: bool = False) -> tuple[nn.Module, ModelConfig]:
    """Return an image oracle: the fused vector is the image's channel means, the head reads them."""
    cfg = oracle_config(task, vitals=vitals)
    model = build_model(cfg)
    with torch.no_grad():
        linear = model.fusion.linear
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[:, :3] = torch.eye(3)  # image features come first in the concatenation
        head = model.head.net[-1]
        head.bias.zero_()
        head.weight.copy_(torch.tensor([[10.0, 0.0, 0.0]]) if task == "binary" else 10 * torch.eye(3))
    return model.eval(), cfg


def random_model(task: str = "binary", seed: int = 0) -> tuple[nn.Module, ModelConfig]:
    """Return a randomly initialised tiny image + vitals model (chance scores)."""
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {"image": {"type": "timm", "params": {"arch": "test_resnet"}},
                     "vitals": {"type": "vitals_mlp", "params": {"num_features": 2, "dim": 4, "hidden": [4]}}},
        "fusion": {"type": "concat", "dim": 8}, "head": _head(task)}, where="model")
    torch.manual_seed(seed)
    return build_model(cfg).eval(), cfg


def dual_config(oracle: bool = True, task: str = "multiclass") -> ModelConfig:
    """Return a dual encoder config: the oracle towers (projection none) or tiny random towers."""
    if oracle:
        vocab = ["pneumonia", "unused", "unused"] if task == "binary" else list(WORDS)
        encoders = {"image": {"type": "eval_oracle_image"},
                    "text": {"type": "eval_oracle_text", "params": {"vocab": vocab}}}
        return from_dict(ModelConfig, {"kind": "dual_encoder", "encoders": encoders, "embed_dim": 3,
                                       "projection": "none", "init_logit_scale": 2.3}, where="model")
    encoders = {"image": {"type": "timm", "params": {"arch": "test_resnet"}},
                "text": {"type": "transformer_text", "params": {"width": 16, "layers": 1, "heads": 2, "max_length": 48}}}
    return from_dict(ModelConfig, {"kind": "dual_encoder", "encoders": encoders, "embed_dim": 8}, where="model")


def dual_model(oracle: bool = True, task: str = "multiclass", seed: int = 0) -> tuple[nn.Module, ModelConfig]:
    cfg = dual_config(oracle, task)
    torch.manual_seed(seed)
    return build_model(cfg).eval(), cfg


# ---------------------------------------------------------------------- the helpers' own checks
def test_manifest_rows_validate_and_images_carry_the_label(tmp_path: Path) -> None:
    for task in ("binary", "multiclass", "multilabel"):
        path = write_manifest(tmp_path / task, task)
        report = validate_manifest(path, data_config(task))
        assert report.ok and report.kept == 40
        ds = ManifestDataset(report, data_config(task), split="test")
        assert len(ds) == 20 and ds.task == task


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_oracle_separates_the_classes(tmp_path: Path, task: str) -> None:
    ds = dataset(tmp_path, task)
    model, _ = oracle_model(task)
    batch = ds.collate_fn([ds[i] for i in range(len(ds))])
    logits = model(batch).logits
    if task == "binary":
        assert ((logits[:, 0] > 0).long() == batch["labels"]).all()
    else:
        assert (logits.argmax(1) == batch["labels"]).all()
