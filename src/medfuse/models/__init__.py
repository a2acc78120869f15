"""Models: registries and configs; encoders (image, text, signal, audio, video), fusions, heads,
the diagnosis model, the CLIP-style dual encoder, checkpoints and model cards.

``medfuse.models`` knows tensors and configs, not data files. Importing it fills the registries
``ENCODERS``, ``FUSIONS`` and ``HEADS``.
"""

from __future__ import annotations

from medfuse.models import encoders, fusion, interop
from medfuse.models.base import ENCODERS, FUSIONS, HEADS, Encoder, EncoderOutput, Fusion
from medfuse.models.builder import build, build_encoder, build_model
from medfuse.models.card import ModelCard
from medfuse.models.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from medfuse.models.config import EncoderConfig, FusionConfig, HeadConfig, ModelConfig
from medfuse.models.diagnosis import DiagnosisModel, DiagnosisOutput
from medfuse.models.dual_encoder import DualEncoder, DualEncoderOutput
from medfuse.models.heads import Head, build_head

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "HEADS",
    "DiagnosisModel",
    "DiagnosisOutput",
    "DualEncoder",
    "DualEncoderOutput",
    "Encoder",
    "EncoderConfig",
    "EncoderOutput",
    "Fusion",
    "FusionConfig",
    "Head",
    "HeadConfig",
    "LoadedCheckpoint",
    "ModelCard",
    "ModelConfig",
    "build",
    "build_encoder",
    "build_head",
    "build_model",
    "encoders",
    "fusion",
    "interop",
    "load_checkpoint",
    "save_checkpoint",
]
