"""Video encoder: a 2-D encoder per frame, in bounded chunks, then temporal pooling (``video_frames``).

Input is the batch's ``video`` ``(B, T, C, H, W)``, optionally with ``video_mask`` ``(B, T)`` (True for
real frames) when shorter clips are padded. Padded frames are never encoded. Frames go through the
2-D encoder ``frame_chunk`` at a time, so a long clip does not need all its activations at once;
``checkpoint_frames=True`` also recomputes each chunk in the backward pass instead of storing it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput
from medfuse.models.encoders.audio import AttentionPool, conv_stack, masked_mean, split_inputs

__all__ = ["VideoFramesEncoder", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, *, device: torch.device | None = None) -> Tensor:
    """Return fixed sine/cosine position codes ``(length, dim)`` (Vaswani et al., "Attention Is All You Need", 2017).

    Fixed codes work for clips of any length without a learned table.
    """
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(pos * freq)
    codes[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return codes


class _SmallFrameCNN(nn.Module):
    """Frames ``(N, C, H, W)`` -> ``(N, channels[-1])``: :func:`conv_stack` then global average pooling."""

    def __init__(self, in_chans: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.body = conv_stack(in_chans, channels)
        self.num_features = channels[-1]

    def forward(self, frames: Tensor) -> Tensor:
        return self.body(frames).mean(dim=(-2, -1))


class _TimmFrames(nn.Module):
    """Frames ``(N, C, H, W)`` -> ``(N, num_features)``: a timm image encoder's pooled vector."""

    def __init__(self, image_encoder: Encoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.num_features = int(image_encoder.output_dim)

    def forward(self, frames: Tensor) -> Tensor:
        return self.image_encoder(frames).pooled


@ENCODERS.register("video_frames")
class VideoFramesEncoder(Encoder):
    """Per-frame 2-D encoder + temporal pooling: video ``(B, T, C, H, W)`` -> ``(B, D)`` and frame tokens ``(B, T, D)``.

    ``backbone="cnn"`` is a small CNN (``channels``) on frames as given; any other name is a timm
    backbone (:class:`~medfuse.models.encoders.image.TimmImageEncoder`) with ``in_chans`` channels whose
    ``pretrained`` (packaged set) or ``weights`` (local file) load as for images; frames are expected
    normalised as images are for that backbone (``preprocessing`` holds its mean and std; the dataset
    applies them). ``temporal``: ``mean`` (masked mean of frame
    vectors), ``attention`` (attention pooling over frames, Ilse et al. 2018) or ``transformer`` (a small
    Transformer encoder over frames with sinusoidal positions and a padding mask, then attention
    pooling). Single-channel clips are repeated to three channels for an ``in_chans=3`` backbone.
    ``checkpoint_frames`` recomputes frame features in the backward pass (batch-norm running
    statistics then see each chunk twice).
    """

    modality = "video"

    def __init__(
        self,
        output_dim: int = 128,
        *,
        backbone: str = "cnn",
        in_chans: int = 1,
        pretrained: str | None = None,
        weights: str | None = None,
        load_weights: bool = True,
        channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        temporal: str = "attention",
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        frame_chunk: int = 16,
        checkpoint_frames: bool = False,
        timm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_choice("temporal", temporal, ["mean", "attention", "transformer"])
        if in_chans not in (1, 3):
            raise ConfigError(f"video_frames: in_chans must be 1 or 3, got {in_chans}")
        if frame_chunk < 1:
            raise ConfigError(f"video_frames: frame_chunk must be at least 1, got {frame_chunk}")
        if temporal == "transformer" and output_dim % num_heads:
            raise ConfigError(f"video_frames: output_dim ({output_dim}) must be divisible by num_heads ({num_heads})")
        self.output_dim = output_dim
        self.in_chans = in_chans
        self.temporal = temporal
        self.frame_chunk = frame_chunk
        self.checkpoint_frames = checkpoint_frames
        self.frame_encoder, width = self._build_frame_encoder(
            backbone, in_chans, pretrained, weights, load_weights, tuple(channels), timm_kwargs
        )
        self.frame_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, output_dim))
        self.transformer: nn.TransformerEncoder | None = None
        if temporal == "transformer":
            layer = nn.TransformerEncoderLayer(
                output_dim, num_heads, dim_feedforward=2 * output_dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, num_layers, norm=nn.LayerNorm(output_dim), enable_nested_tensor=False
            )
        self.pool = AttentionPool(output_dim) if temporal in ("attention", "transformer") else None
        # the timm backbone's image preparation (size, mean, std); empty for the small CNN
        self.preprocessing: dict[str, Any] = (
            dict(getattr(self.frame_encoder.image_encoder, "preprocessing", {}))
            if isinstance(self.frame_encoder, _TimmFrames) else {}
        )

    @staticmethod
    def _build_frame_encoder(
        backbone: str, in_chans: int, pretrained: str | None, weights: str | None, load_weights: bool,
        channels: tuple[int, ...], timm_kwargs: dict[str, Any] | None,
    ) -> tuple[nn.Module, int]:
        """Return the per-frame encoder and the width of its output vectors."""
        if backbone == "cnn":
            if pretrained or weights:
                raise ConfigError("video_frames: the small 'cnn' backbone has no pretrained weights; name a timm backbone")
            if not channels:
                raise ConfigError("video_frames: channels must name at least one block width")
            return _SmallFrameCNN(in_chans, channels), channels[-1]
        from medfuse.models.encoders.image import TimmImageEncoder

        image_encoder = TimmImageEncoder(
            backbone, pretrained=pretrained, weights=weights, in_chans=in_chans, load_weights=load_weights,
            model_kwargs=timm_kwargs, output_tokens=False,
        )
        frames = _TimmFrames(image_encoder)
        return frames, frames.num_features

    def _encode_frames(self, frames: Tensor) -> Tensor:
        """Return frame vectors ``(N, D)`` for frames ``(N, C, H, W)``, ``frame_chunk`` frames at a time."""
        parts = []
        recompute = self.checkpoint_frames and self.training and torch.is_grad_enabled()
        for start in range(0, frames.shape[0], self.frame_chunk):
            chunk = frames[start : start + self.frame_chunk]
            if recompute:
                parts.append(checkpoint(self.frame_encoder, chunk, use_reentrant=False))
            else:
                parts.append(self.frame_encoder(chunk))
        return self.frame_proj(torch.cat(parts))

    def forward(self, inputs: object) -> EncoderOutput:
        """Return pooled ``(B, D)``, frame tokens ``(B, T, D)`` and their mask ``(B, T)`` for video ``(B, T, C, H, W)``.

        ``inputs``: the video tensor, or a mapping with ``video`` and optionally ``video_mask``.
        """
        video, mask = split_inputs(inputs, "video")
        if video.ndim != 5:
            raise ConfigError(f"video input must be (B, T, C, H, W), got shape {tuple(video.shape)}")
        batch, n_frames, chans = video.shape[:3]
        if chans == 1 and self.in_chans == 3:
            video = video.expand(-1, -1, 3, -1, -1)
        elif chans != self.in_chans:
            raise ConfigError(f"video_frames expects {self.in_chans} channel(s) per frame, got {chans}")
        if mask is None:
            mask = torch.ones(batch, n_frames, dtype=torch.bool, device=video.device)
        mask = mask.to(device=video.device, dtype=torch.bool)
        flat = video.reshape(batch * n_frames, *video.shape[2:])
        real = mask.reshape(-1).nonzero().squeeze(1)
        tokens = video.new_zeros(batch * n_frames, self.output_dim)
        if real.numel() > 0:
            tokens = tokens.index_copy(0, real, self._encode_frames(flat[real]))
        tokens = tokens.reshape(batch, n_frames, self.output_dim)
        if self.transformer is not None:
            tokens = tokens + sinusoidal_positions(n_frames, self.output_dim, device=video.device).to(tokens.dtype)
            # A clip with no real frame would leave attention with nothing to attend to; let it see its
            # (zero) padding and drop its output below instead.
            attend = mask | ~mask.any(dim=1, keepdim=True)
            tokens = self.transformer(tokens, src_key_padding_mask=~attend)
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        pooled = self.pool(tokens, mask) if self.pool is not None else masked_mean(tokens, mask)
        return EncoderOutput(pooled=pooled, tokens=tokens, token_mask=mask)
