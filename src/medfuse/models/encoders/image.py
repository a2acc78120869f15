"""Image encoders: any timm architecture, random or with local/packaged pretrained weights."""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from medfuse.core.errors import ConfigError
from medfuse.models.base import ENCODERS, Encoder, EncoderOutput
from medfuse.models.encoders.pretrained import LoadReport, get_pretrained, load_pretrained, load_weights_file

log = logging.getLogger(__name__)


@ENCODERS.register("timm")
class TimmImageEncoder(Encoder):
    """Image encoder over any timm architecture: ``(B, C, H, W)`` -> pooled ``(B, D)`` + tokens ``(B, N, D_t)``.

    Tokens are ``forward_features`` flattened over space for CNNs (``N = H' * W'``) and the transformer's
    tokens for ViTs (prefix/class tokens first). The pooled vector is timm's ``forward_head(pre_logits=True)``.

    Args:
        arch: timm model name (e.g. ``resnet18``, ``vit_tiny_patch16_224``); may be omitted when
            ``pretrained`` names a set, which fixes the architecture.
        pretrained: name of packaged weights (see ``medfuse.models.encoders.pretrained.PRETRAINED``).
        weights: local weights file in timm's names (safetensors, or .pth loaded with ``weights_only``).
        in_chans: 1 (greyscale) or 3. Pretrained RGB first-layer kernels are summed for 1 channel.
        img_size: input size passed to ViT-style architectures (their position embeddings depend on it).
        num_classes: keep a classifier of this size (0: none); its logits come from :meth:`logits`.
        grad_checkpointing: trade compute for memory where timm supports it.
        output_tokens: also return token features (set False to save memory).
        load_weights: False builds the architecture only (used when a checkpoint supplies the weights).
        model_kwargs: further keyword arguments for ``timm.create_model`` (``drop_path_rate``, ...).
        mean, std: override the normalisation recorded in :attr:`preprocessing`.
    """

    def __init__(
        self,
        arch: str | None = None,
        *,
        pretrained: str | None = None,
        weights: str | None = None,
        in_chans: int = 3,
        img_size: int | None = None,
        num_classes: int = 0,
        grad_checkpointing: bool = False,
        output_tokens: bool = True,
        load_weights: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        modality: str = "image",
    ) -> None:
        super().__init__()
        import timm

        spec = get_pretrained(pretrained) if pretrained else None
        if spec is not None and arch not in (None, spec.arch):
            raise ConfigError(f"arch: pretrained '{pretrained}' is a '{spec.arch}', got arch={arch!r}")
        if spec is not None and weights:
            raise ConfigError("weights: set either pretrained (a packaged set) or weights (a file), not both")
        arch = arch or (spec.arch if spec else None)
        if not arch:
            raise ConfigError("arch: name a timm architecture (e.g. 'resnet18') or set pretrained")
        if not timm.is_model(arch):
            raise ConfigError(f"arch: unknown timm architecture {arch!r}{_close_timm(arch)}")
        if in_chans not in (1, 3):
            raise ConfigError(f"in_chans: expected 1 or 3, got {in_chans!r}")
        kwargs: dict[str, Any] = dict(spec.model_kwargs) if spec else {}
        kwargs.update(model_kwargs or {})
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            self.model: Any = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
        except TypeError as exc:
            bad = "img_size is only for ViT-style architectures; " if img_size is not None else ""
            raise ConfigError(f"model_kwargs: timm '{arch}' refused the arguments {sorted(kwargs)}: {bad}{exc}") from None
        self.arch = arch
        self.pretrained = pretrained
        self.num_classes = num_classes
        self.output_tokens = output_tokens
        self.modality = modality
        self.load_report: LoadReport | None = None
        if load_weights and spec is not None:
            self.load_report = load_pretrained(self.model, spec.name)
        elif load_weights and weights:
            self.load_report = load_weights_file(self.model, weights)
        if grad_checkpointing:
            self.set_grad_checkpointing(True)
        self.output_dim = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        # without tokens, token-level fusions receive the pooled vector as the single token
        self.token_dim = int(self.model.num_features) if output_tokens else self.output_dim
        cfg = self.model.pretrained_cfg
        size = img_size or (spec.input_size if spec else int(cfg.get("input_size", (3, 224, 224))[-1]))
        default_mean = spec.mean if spec else tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        default_std = spec.std if spec else tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        chosen_mean, chosen_std = list(mean or default_mean), list(std or default_std)
        if in_chans == 1 and len(chosen_mean) == 3:
            # one channel cannot carry per-channel statistics: use their averages
            chosen_mean, chosen_std = [sum(chosen_mean) / 3], [sum(chosen_std) / 3]
        self.preprocessing: dict[str, Any] = {
            "size": int(size),
            "channels": in_chans,
            "mean": chosen_mean,
            "std": chosen_std,
            "interpolation": spec.interpolation if spec else cfg.get("interpolation", "bicubic"),
            "crop_pct": spec.crop_pct if spec else cfg.get("crop_pct", 0.875),
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass instead of storing them (timm's support)."""
        try:
            self.model.set_grad_checkpointing(enable)
        except (AssertionError, NotImplementedError, AttributeError):
            raise ConfigError(f"grad_checkpointing: timm '{self.arch}' does not support it; set it to false") from None

    def features(self, images: Tensor) -> Tensor:
        """Return the backbone features: ``(B, C, H', W')`` for CNNs, ``(B, N, D)`` for ViTs."""
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        return self.model.forward_features(images)

    def forward(self, images: Tensor) -> EncoderOutput:
        """Return pooled ``(B, D)`` features and, unless disabled, tokens ``(B, N, D_t)``."""
        feats = self.features(images)
        pooled = self.model.forward_head(feats, pre_logits=True)
        tokens = None
        if self.output_tokens:
            tokens = feats_to_tokens(feats, getattr(self.model, "output_fmt", "NCHW"))
        return EncoderOutput(pooled=pooled, tokens=tokens)

    def logits(self, images: Tensor) -> Tensor:
        """Return the kept classifier's ``(B, num_classes)`` logits (needs ``num_classes > 0``)."""
        if self.num_classes <= 0:
            raise ConfigError("num_classes: the encoder was built without a classifier (num_classes=0)")
        return self.model(images)


def feats_to_tokens(feats: Tensor, fmt: Any = "NCHW") -> Tensor:
    """Return ``(B, N, D)`` tokens from backbone features ``(B, C, H, W)``, ``(B, H, W, C)`` or ``(B, N, D)``."""
    if feats.dim() == 3:
        return feats
    if feats.dim() != 4:
        raise ValueError(f"cannot turn features of shape {tuple(feats.shape)} into tokens")
    if str(getattr(fmt, "value", fmt)).upper() == "NHWC":
        return feats.flatten(1, 2)
    return feats.flatten(2).transpose(1, 2)


def _close_timm(arch: str) -> str:
    import difflib

    import timm

    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; see timm.list_models()"


__all__ = ["TimmImageEncoder", "feats_to_tokens"]
