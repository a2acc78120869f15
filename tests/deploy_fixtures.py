"""Tiny checkpoints and data for the serving, index and export tests (no training; random weights)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.core.config import from_dict, to_dict
from medfuse.data.presets import preset
from medfuse.models import ModelCard, ModelConfig, build_model, save_checkpoint

VITALS = ["heart_rate", "resp_rate", "spo2", "temperature", "wbc", "crp"]
FINDINGS = ["consolidation", "effusion", "cardiomegaly", "nodule", "pneumothorax"]
IMAGE = {"type": "timm", "params": {"arch": "test_efficientnet", "in_chans": 1}}
TEXT = {"type": "transformer_text", "params": {"width": 32, "layers": 1, "heads": 2, "max_length": 128, "tokenizer": "byte"}}


def synthetic_data_config(size: int = 32) -> dict[str, Any]:
    """Return the synthetic preset's data config as a mapping, at ``size`` px, one channel."""
    return to_dict(dataclasses.replace(preset("synthetic"), image_size=size, channels=1))


def diagnosis_checkpoint(directory: Path, *, seed: int = 0, temperature: float | None = 1.5, fusion: str = "concat",
                         training_folder: bool = False, thresholds: Sequence[float] | None = (0.5, 0.4, 0.5, 0.6, 0.5)) -> Path:
    """Write a tiny image + report + vitals multi-label model; return the folder to pass as checkpoint."""
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {"image": IMAGE, "text": TEXT,
                     "vitals": {"type": "vitals_mlp", "params": {"num_features": len(VITALS), "hidden": [16], "dim": 16}}},
        "fusion": {"type": fusion, "dim": 32},
        "head": {"type": "multilabel", "num_outputs": len(FINDINGS)},
    }, where="model")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    data = synthetic_data_config()
    mean, std = [0.449], [0.226]
    preprocessing = {"image_size": 32, "channels": 1, "resize": "crop", "window": None, "mean": mean, "std": std,
                     "max_text_chars": 20000, "vitals": VITALS, "task": "multilabel", "classes": FINDINGS,
                     "label_names": FINDINGS}
    card = ModelCard(name="tiny chest fusion", intended_use="Tests only.", metrics={"auroc": 0.5, "ece": 0.0421})
    target = directory / "model" if training_folder else directory
    extra: dict[str, Any] = {"data": data, "train_task": "classification"}
    if temperature is not None:
        extra["temperature"] = temperature
    save_checkpoint(target, model, cfg, label_names=FINDINGS, thresholds=list(thresholds) if thresholds else None,
                    preprocessing=preprocessing, card=card, extra=extra)
    return directory


def dual_encoder_checkpoint(directory: Path, *, seed: int = 0) -> Path:
    """Write a tiny CLIP-style image/report dual encoder trained on nothing; return its folder."""
    cfg = from_dict(ModelConfig, {"kind": "dual_encoder", "encoders": {"image": IMAGE, "text": TEXT},
                                  "embed_dim": 16}, where="model")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    data = synthetic_data_config()
    save_checkpoint(directory, model, cfg, preprocessing={"image_size": 32, "channels": 1, "mean": [0.449], "std": [0.226]},
                    extra={"data": data, "train_task": "contrastive"})
    return directory


def vqa_checkpoint(directory: Path, answers: list[str], *, seed: int = 0) -> Path:
    """Write a tiny answer classifier whose text tower reads the ``question``."""
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {"image": IMAGE, "text": {**TEXT, "modality": "question"}},
        "fusion": {"type": "concat", "dim": 32},
        "head": {"type": "multiclass", "num_outputs": len(answers)},
    }, where="model")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    data = {"image": "image_path", "question": "question", "answer": "answer", "image_size": 32, "channels": 1,
            "split": "split", "classes": answers, "label": "answer"}
    save_checkpoint(directory, model, cfg, label_names=answers,
                    preprocessing={"image_size": 32, "channels": 1, "mean": [0.449], "std": [0.226]},
                    extra={"data": data, "train_task": "vqa"})
    return directory


def png_bytes(seed: int = 0, size: tuple[int, int] = (40, 48), mode: str = "L") -> bytes:
    """Return the bytes of a random PNG."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_bytes(*, with_pixels: bool = True, patient_name: str = "Doe^Jane", rows: int = 24, cols: int = 20) -> bytes:
    """Return the bytes of a small 16-bit MONOCHROME2 DICOM naming ``patient_name``."""
    import io

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("upload.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = "MRN-55501234"
    ds.PatientBirthDate = "19610203"
    ds.InstitutionName = "Saint Elsewhere Hospital"
    ds.Modality = "DX"
    if with_pixels:
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        pixels = (np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 7) % 4096
        ds.PixelData = pixels.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
