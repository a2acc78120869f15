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


# ---------------------------------------------------------------- audio, video and generative models
MEDIA_CLASSES = ["normal", "murmur", "effusion"]
AUDIO_PREP = {"sample_rate": 2000, "window_s": 1.0, "hop_s": 0.5}
VIDEO_FRAMES = 4


def media_checkpoint(directory: Path, *, seed: int = 0, prep_in_extra: bool = False) -> Path:
    """Write a tiny multi-class model reading an image, a heart-sound recording and an echo clip; return its folder.

    The data config names the ``image_path``, ``audio_path`` and ``video_path`` columns and holds the
    recording's preparation as training stores it (``audio_prep``: 2 kHz, 1 s windows every 0.5 s), or
    ``extra["audio"]`` does with ``prep_in_extra``; clips are cut to 4 frames.
    """
    cfg = from_dict(ModelConfig, {
        "kind": "diagnosis",
        "encoders": {
            "image": IMAGE,
            "audio": {"type": "audio_cnn", "params": {"output_dim": 16, "sample_rate": 2000, "n_fft": 128,
                                                       "hop_length": 32, "n_mels": 16, "channels": [4, 8]}},
            "video": {"type": "video_frames", "params": {"output_dim": 16, "channels": [4, 8], "temporal": "mean"}},
        },
        "fusion": {"type": "concat", "dim": 16},
        "head": {"type": "multiclass", "num_outputs": len(MEDIA_CLASSES)},
    }, where="model")
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    data = {"image": "image_path", "audio": "audio_path", "video": "video_path", "label": "label",
            "classes": MEDIA_CLASSES, "task": "multiclass", "image_size": 32, "channels": 1, "video_frames": VIDEO_FRAMES,
            "mean": [0.449], "std": [0.226], "optional": ["image", "audio", "video"]}
    extra: dict[str, Any] = {"data": data, "train_task": "classification"}
    if prep_in_extra:
        extra["audio"] = dict(AUDIO_PREP)
    else:
        data["audio_prep"] = dict(AUDIO_PREP)
    save_checkpoint(directory, model, cfg, label_names=MEDIA_CLASSES,
                    preprocessing={"image_size": 32, "channels": 1, "mean": [0.449], "std": [0.226],
                                   "task": "multiclass", "classes": MEDIA_CLASSES}, extra=extra)
    return directory


def sound_bytes(seconds: float = 3.0, rate: int = 4000, *, seed: int = 0, fmt: str = "WAV") -> bytes:
    """Return a WAV or FLAC (16-bit PCM) of a 60 Hz thump train plus noise, ``seconds`` long at ``rate`` Hz."""
    import io

    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.5 * np.sin(2 * np.pi * 60 * t) * (np.sin(2 * np.pi * 1.2 * t) > 0.6) + 0.05 * rng.standard_normal(t.shape)
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def clip_frames(n: int = 12, size: tuple[int, int] = (32, 48), seed: int = 0) -> np.ndarray:
    """Return ``(n, H, W)`` uint8 frames: a bright disc that moves across a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    frames = rng.integers(0, 40, (n, *size)).astype(np.float32)
    for i in range(n):
        cx = 6 + (size[1] - 12) * i / max(n - 1, 1)
        frames[i] += 200 * (((xx - cx) ** 2 + (yy - size[0] / 2) ** 2) < 30)
    return np.clip(frames, 0, 255).astype(np.uint8)


def video_file(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Write ``frames`` to ``path`` (``.mp4``, ``.avi``; see :func:`medfuse.data.video.write_video`)."""
    from medfuse.data.video import write_video

    return write_video(path, frames, fps=fps)


def dicom_cine_bytes(frames: np.ndarray, *, patient_name: str = "Doe^Jane") -> bytes:
    """Return a 16-bit MONOCHROME2 ultrasound multi-frame DICOM of ``frames`` ``(T, H, W)`` naming a patient."""
    import io

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("cine.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = "MRN-55501234"
    ds.PatientBirthDate = "19610203"
    ds.InstitutionName = "Saint Elsewhere Hospital"
    ds.Modality = "US"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (frames.astype(np.uint16) * 16).astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


VLM_WORDS = ["left", "right", "yes", "no", "opacity", "lung", "heart", "effusion", "nodule", "normal", "small",
             "large", "upper", "lower", "both", "none", "is", "the", "there", "an", "where"]


def vlm_checkpoint(directory: Path, *, seed: int = 0, answer_tokens: int = 8, report_tokens: int = 12) -> Path:
    """Write a tiny random vision-language model (2-layer GPT-2 over a word vocabulary) with ``save_vlm``.

    Its decoded pieces are whole words, so streamed answers arrive in several pieces. Returns the folder.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from medfuse.models.generative import ChatTemplate, build_vlm, save_vlm

    lm_dir = directory / "lm-source"
    template = ChatTemplate()
    corpus = [template.system, template.user, template.assistant, template.context, "Write the report.",
              " ".join(VLM_WORDS)]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[BOS]", "[EOS]", "[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                                   unk_token="[UNK]")
    fast.save_pretrained(str(lm_dir))
    torch.manual_seed(seed)
    lm_cfg = GPT2Config(vocab_size=len(fast), n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=1,
                        eos_token_id=2, pad_token_id=0)
    GPT2LMHeadModel(lm_cfg).save_pretrained(str(lm_dir))
    vlm = build_vlm({"image": IMAGE, "lm": {"dir": str(lm_dir)}, "projector": "mlp", "num_queries": 2}).eval()
    save_vlm(vlm, directory / "model", preprocessing={"image_size": 32, "channels": 1, "mean": [0.449], "std": [0.226]},
             extra={"generation": {"prompt": "Write the report.", "max_new_tokens": answer_tokens,
                                   "report_max_new_tokens": report_tokens}})
    return directory
