"""Diagnosis model: per-modality encoders -> fusion -> prediction head, robust to missing modalities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.models.base import Encoder, EncoderOutput, Fusion


@dataclass
class DiagnosisOutput:
    """What :class:`DiagnosisModel` gives back.

    logits: (B, K) head outputs (see ``medfuse.models.heads`` for their activation).
    fused: (B, D_f) the fused representation the head read.
    features: encoder name -> (B, D_m) pooled features (zeros where the modality is absent).
    present: encoder name -> (B,) bool, the presence mask the fusion saw (after modality dropout).
    """

    logits: Tensor
    fused: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)
    present: dict[str, Tensor] = field(default_factory=dict)


def batch_size(batch: Mapping[str, Any]) -> int:
    """Return ``B`` from the first tensor, list or presence mask found in ``batch``."""
    for value in batch.values():
        if isinstance(value, Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, (list, tuple)) and value:
            return len(value)
    present = batch.get("present")
    if isinstance(present, Mapping):
        for value in present.values():
            return int(value.shape[0])
    if isinstance(batch.get("text"), Mapping):
        return int(batch["text"]["input_ids"].shape[0])
    raise ValueError("cannot tell the batch size: the batch holds no tensors")


class DiagnosisModel(nn.Module):
    """Encoders (name -> :class:`Encoder`) + a :class:`Fusion` + a head.

    ``forward(batch)``: each encoder ``name`` reads ``batch[inputs[name]]`` (default: its own name), or
    ``{key: batch[key], f"{key}_mask": ...}`` when the batch carries such a mask (padded audio windows or
    video frames). A modality is present for a sample when ``batch["present"][modality]`` is True (all True
    when not given; all False when the batch has no such key). Absent samples' features are zeroed before fusion, and an
    encoder whose modality is absent from the whole batch is not run. During training, modality dropout
    marks present modalities absent per sample with probability ``p``, never all of a sample's.

    When the batch carries ``f"{key}_key"`` ``(B,)`` (equal for samples of the same file, see
    :class:`~medfuse.data.loader.Collate`), present samples with the same key and equal inputs are encoded
    once and the features copied: ``1/k`` of the encoder's cost for ``k`` questions per image. In eval mode
    the result is the same as encoding each; in training, batch-norm statistics come from the distinct
    inputs. The trainer gives a file's samples the same augmentation within an epoch when
    ``train.group_by`` is set, so they share there too.

    Token-level fusions (``fusion.uses_tokens``) receive ``(B, N, D)`` tokens and ``token_masks``; an
    encoder without tokens contributes its pooled vector as one token.
    """

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        fusion: Fusion,
        head: nn.Module,
        *,
        inputs: Mapping[str, str] | None = None,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from medfuse.models.fusion import ModalityDropout

        if not encoders:
            raise ConfigError("encoders: a diagnosis model needs at least one encoder")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head
        self.inputs = {name: (inputs or {}).get(name, name) for name in encoders}
        self.uses_tokens = bool(getattr(fusion, "uses_tokens", False))
        self.dropout = ModalityDropout(modality_dropout)

    def named_encoders(self) -> dict[str, Encoder]:
        """Return the encoders by their config names."""
        return {name: cast(Encoder, module) for name, module in self.encoders.items()}

    def presence(self, batch: Mapping[str, Any], size: int, device: torch.device) -> dict[str, Tensor]:
        """Return encoder name -> (B,) bool presence from ``batch["present"]`` and the batch's keys."""
        given = batch.get("present") or {}
        out = {}
        for name, key in self.inputs.items():
            if key not in batch or batch[key] is None:
                out[name] = torch.zeros(size, dtype=torch.bool, device=device)
            elif key in given:
                mask = torch.as_tensor(given[key], device=device).bool()
                if mask.shape != (size,):
                    raise ValueError(f"present['{key}'] must have shape ({size},), got {tuple(mask.shape)}")
                out[name] = mask
            else:
                out[name] = torch.ones(size, dtype=torch.bool, device=device)
        return out

    def _encode(self, name: str, inputs: Any, present: Tensor, size: int, device: torch.device) -> EncoderOutput:
        encoder = cast(Encoder, self.encoders[name])
        if bool(present.any()):
            out = encoder(inputs)
            return EncoderOutput(out.pooled, out.tokens, out.token_mask)
        # nobody in the batch has this modality: zeros of the right shapes, never the encoder
        param = next(encoder.parameters(), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        pooled = torch.zeros(size, encoder.output_dim, device=device, dtype=dtype)
        tokens = torch.zeros(size, 1, getattr(encoder, "token_dim", encoder.output_dim), device=device, dtype=dtype)
        return EncoderOutput(pooled, tokens, torch.zeros(size, 1, dtype=torch.bool, device=device))

    def forward(self, batch: Mapping[str, Any]) -> DiagnosisOutput:
        """Return logits ``(B, K)``, the fused ``(B, D_f)`` vector and the per-modality features."""
        size = batch_size(batch)
        device = next(self.parameters()).device
        present = self.dropout(self.presence(batch, size, device))
        features: dict[str, Tensor] = {}
        tokens: dict[str, Tensor] = {}
        token_masks: dict[str, Tensor] = {}
        for name, key in self.inputs.items():
            inputs = batch.get(key)
            if batch.get(f"{key}_mask") is not None:
                inputs = {key: inputs, f"{key}_mask": batch[f"{key}_mask"]}
            shared = _shared_rows(batch.get(f"{key}_key"), inputs, present[name], size)
            if shared is None:
                out = self._encode(name, inputs, present[name], size, device)
            else:  # samples of the same file (questions about one image): encode it once, then copy
                first, inverse = shared
                out = self._encode(name, inputs[first], present[name][first], len(first), device)
                out = EncoderOutput(out.pooled[inverse], None if out.tokens is None else out.tokens[inverse],
                                    None if out.token_mask is None else out.token_mask[inverse])
            keep = present[name].view(-1, 1)
            features[name] = torch.where(keep, out.pooled, torch.zeros((), dtype=out.pooled.dtype, device=device))
            if self.uses_tokens:
                seq = out.tokens if out.tokens is not None else out.pooled.unsqueeze(1)
                tokens[name] = torch.where(keep.unsqueeze(-1), seq, torch.zeros((), dtype=seq.dtype, device=device))
                if out.token_mask is not None:
                    token_masks[name] = out.token_mask
        if self.uses_tokens:
            fused = self.fusion(tokens, present, token_masks=token_masks)
        else:
            fused = self.fusion(features, present)
        return DiagnosisOutput(logits=self.head(fused), fused=fused, features=features, present=present)


def _shared_rows(keys: Any, inputs: Any, present: Tensor, size: int) -> tuple[Tensor, Tensor] | None:
    """Return ``(first, inverse)``: one row per shared input and each sample's row in it; None if none repeat.

    Rows share when their keys are equal, they are present and their inputs are equal to the group's first
    row (so a blanked, corrupted or dropped row is encoded on its own).
    """
    if not isinstance(keys, Tensor) or not isinstance(inputs, Tensor) or keys.shape != (size,) or inputs.shape[0] != size:
        return None
    keys = keys.to(inputs.device)
    rows = torch.arange(size, device=inputs.device)
    alone = keys.max() + 1 + rows  # keys no shared group uses
    keys = torch.where(present.to(inputs.device), keys, alone)
    first, inverse = _first_rows(keys, rows)
    if len(first) == size:
        return None
    same = (inputs == inputs[first][inverse]).flatten(1).all(dim=1)
    if not bool(same.all()):
        first, inverse = _first_rows(torch.where(same, keys, alone), rows)
        if len(first) == size:
            return None
    return first, inverse


def _first_rows(keys: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Return the first row of each distinct key ``(U,)`` and each row's group ``(B,)``."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(unique),), len(rows), dtype=torch.int64, device=keys.device)
    first.scatter_reduce_(0, inverse, rows, reduce="amin")
    return first, inverse
