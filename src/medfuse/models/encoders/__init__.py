"""Modality encoders. Importing this package registers each one in :data:`medfuse.models.base.ENCODERS`:

======================  ==============================================================================
``timm``                any timm image architecture; random, a local weights file or packaged weights
``hf_text``             a Hugging Face encoder from a local directory (default: packaged MiniLM-L6)
``transformer_text``    a small text transformer trained from scratch (byte or WordPiece tokens)
``vitals_mlp``          tabular vitals/labs with NaN as missing: standardise, impute, indicators, MLP
``signal_cnn1d``        1-D ResNet over waveforms ``(B, C, T)``
``signal_transformer``  patch transformer over waveforms ``(B, C, T)``
``audio_cnn``           log-mel + 2-D CNN over audio clips or windows
``audio_timm``          log-mel + a timm backbone
``video_frames``        per-frame image features pooled over time for video ``(B, T, C, H, W)``
======================  ==============================================================================
"""

from __future__ import annotations

from medfuse.models.encoders.audio import AudioCNNEncoder, AudioTimmEncoder
from medfuse.models.encoders.image import TimmImageEncoder, feats_to_tokens
from medfuse.models.encoders.pretrained import (
    PRETRAINED,
    LoadReport,
    PretrainedSpec,
    get_pretrained,
    load_into,
    load_pretrained,
    map_efficientnet_pytorch,
    read_state_dict,
)
from medfuse.models.encoders.signal import SignalCNN1dEncoder, SignalTransformerEncoder, VitalsMLPEncoder
from medfuse.models.encoders.text import (
    ByteTokenizer,
    HFTextEncoder,
    TransformerBlock,
    TransformerTextEncoder,
    masked_mean,
    packaged_minilm_dir,
)
from medfuse.models.encoders.video import VideoFramesEncoder

__all__ = [
    "PRETRAINED",
    "AudioCNNEncoder",
    "AudioTimmEncoder",
    "ByteTokenizer",
    "HFTextEncoder",
    "LoadReport",
    "PretrainedSpec",
    "SignalCNN1dEncoder",
    "SignalTransformerEncoder",
    "TimmImageEncoder",
    "TransformerBlock",
    "TransformerTextEncoder",
    "VideoFramesEncoder",
    "VitalsMLPEncoder",
    "feats_to_tokens",
    "get_pretrained",
    "load_into",
    "load_pretrained",
    "map_efficientnet_pytorch",
    "masked_mean",
    "packaged_minilm_dir",
    "read_state_dict",
]
