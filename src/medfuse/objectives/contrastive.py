"""Contrastive image-text objectives: CLIP's softmax InfoNCE and SigLIP's pairwise sigmoid loss.

Both score every image against every text of the *global* batch when several processes train together:
``gather_with_grad=True`` gathers the features with a differentiable all-gather, and ``local_loss=True``
scores only this rank's rows against the gathered keys (labels offset by the rank), which saves the
``world_size``-fold larger logit matrix. See :mod:`medfuse.objectives.distributed` for the gradient
convention (equal to the global-batch gradient once DDP averages over ranks). With
``gather_with_grad=False`` (a plain gather, open_clip's default) each rank's encoders see only their own
share, so after DDP's averaging their gradient is ``1 / world_size`` of the global one while the learnable
temperature, computed from the full loss on every rank, gets all of it; ``local_loss`` needs the
differentiable gather and refuses the plain one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_ndim, check_range, check_same_shape, detached
from medfuse.objectives.distributed import gather, world


def _check_pair(image_embeds: Tensor, text_embeds: Tensor, where: str) -> None:
    check_ndim("image_embeds", image_embeds, 2, where=where, shape="(B, D)")
    check_ndim("text_embeds", text_embeds, 2, where=where, shape="(B, D)")
    check_same_shape("image_embeds", image_embeds, "text_embeds", text_embeds, where=where)


def _check_distributed_flags(local_loss: bool, gather_with_grad: bool, where: str) -> None:
    if local_loss and not gather_with_grad:
        raise ConfigError(
            f"{where}: local_loss=True needs gather_with_grad=True, because with a plain gather the other "
            "ranks' keys carry no gradient back to this rank; set gather_with_grad=True"
        )


def clip_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    *,
    label_smoothing: float = 0.0,
    local_loss: bool = False,
    gather_with_grad: bool = True,
) -> LossOutput:
    """Return the symmetric InfoNCE loss of CLIP (Radford et al. 2021, "Learning Transferable Visual
    Models From Natural Language Supervision", Fig. 3 pseudocode).

    With logits ``l_ij = s * <x_i, y_j>`` over the global batch of ``B`` pairs,

        L = 1/2 * [ 1/B sum_i -log softmax_j(l_ij)[i]  +  1/B sum_j -log softmax_i(l_ij)[j] ]

    image_embeds: (b, D) this rank's image embeddings, L2-normalised.
    text_embeds: (b, D) the paired text embeddings, L2-normalised.
    logit_scale: the multiplicative scale ``s = 1 / temperature`` (already exponentiated), () or float.
    label_smoothing: mixed into each cross-entropy target as in ``torch.nn.functional.cross_entropy``.
    Returns ``total`` and parts ``i2t``, ``t2i`` (the two directions) and ``logit_scale`` (detached).
    """
    where = "clip loss"
    _check_pair(image_embeds, text_embeds, where)
    check_range("label_smoothing", label_smoothing, 0.0, 1.0, where=where)
    _check_distributed_flags(local_loss, gather_with_grad, where)
    rank, size = world()
    local_b = image_embeds.shape[0]
    if size > 1 and local_loss:
        all_images = gather(image_embeds, with_grad=True)
        all_texts = gather(text_embeds, with_grad=True)
        logits_per_image = logit_scale * image_embeds @ all_texts.T  # (b, B)
        logits_per_text = logit_scale * text_embeds @ all_images.T  # (b, B)
        labels = torch.arange(local_b, device=image_embeds.device) + rank * local_b
    else:
        if size > 1:
            image_embeds = gather(image_embeds, with_grad=gather_with_grad)
            text_embeds = gather(text_embeds, with_grad=gather_with_grad)
        logits_per_image = logit_scale * image_embeds @ text_embeds.T  # (B, B), computed once
        logits_per_text = logits_per_image.T
        labels = torch.arange(image_embeds.shape[0], device=image_embeds.device)
    i2t = F.cross_entropy(logits_per_image, labels, label_smoothing=label_smoothing)
    t2i = F.cross_entropy(logits_per_text, labels, label_smoothing=label_smoothing)
    return LossOutput(
        total=(i2t + t2i) / 2,
        parts={"i2t": i2t, "t2i": t2i, "logit_scale": detached(logit_scale, i2t)},
    )


def siglip_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    *,
    local_loss: bool = False,
    gather_with_grad: bool = True,
) -> LossOutput:
    """Return the pairwise sigmoid loss of SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image
    Pre-Training", the sigmoid loss and its Algorithm 1).

    With ``l_ij = t * <x_i, y_j> + b`` and ``z_ij = 1`` for matching pairs, ``-1`` otherwise,

        L = -1/B sum_i sum_j log sigmoid(z_ij * l_ij)

    computed as ``1/B [sum_i softplus(-l_ii) + sum_{i != j} softplus(l_ij)]`` without a label matrix.

    image_embeds: (b, D) this rank's image embeddings, L2-normalised.
    text_embeds: (b, D) the paired text embeddings, L2-normalised.
    logit_scale: ``t`` (already exponentiated), () or float. logit_bias: ``b``, () or float.
    Returns ``total`` and parts ``positive`` and ``negative`` (the two sums, each divided by the number of
    rows) and the detached ``logit_scale`` and ``logit_bias``.
    """
    where = "siglip loss"
    _check_pair(image_embeds, text_embeds, where)
    _check_distributed_flags(local_loss, gather_with_grad, where)
    rank, size = world()
    offset = 0
    if size > 1 and local_loss:
        # Local image rows against every text: each rank holds a block row of the global matrix.
        offset = rank * image_embeds.shape[0]
        text_embeds = gather(text_embeds, with_grad=True)
    elif size > 1:
        image_embeds = gather(image_embeds, with_grad=gather_with_grad)
        text_embeds = gather(text_embeds, with_grad=gather_with_grad)
    logits = logit_scale * image_embeds @ text_embeds.T + logit_bias  # (rows, B)
    rows = logits.shape[0]
    matching = logits.diagonal(offset=offset)  # (rows,)
    positive = F.softplus(-matching).sum() / rows
    negative = (F.softplus(logits).sum() - F.softplus(matching).sum()) / rows
    return LossOutput(
        total=positive + negative,
        parts={
            "positive": positive,
            "negative": negative,
            "logit_scale": detached(logit_scale, positive),
            "logit_bias": detached(logit_bias, positive),
        },
    )


def _log_parameter(value: float, learnable: bool) -> nn.Parameter | Tensor:
    tensor = torch.tensor(float(value))
    return nn.Parameter(tensor) if learnable else tensor


@LOSSES.register("clip")
class ClipLoss(nn.Module):
    """CLIP InfoNCE with a learnable temperature (Radford et al. 2021).

    The temperature is stored as ``logit_scale = log(1 / temperature)`` (initialised to ``log(1 / 0.07)``);
    the scale used in the loss is ``exp(logit_scale)`` clamped to ``max_logit_scale`` (100), which stops the
    parameter's gradient while it sits above the cap, as in the paper.
    """

    def __init__(
        self,
        init_temperature: float = 0.07,
        max_logit_scale: float | None = 100.0,
        learn_temperature: bool = True,
        label_smoothing: float = 0.0,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if init_temperature <= 0:
            raise ConfigError(f"clip loss: init_temperature={init_temperature} must be > 0 (CLIP uses 0.07)")
        if max_logit_scale is not None and max_logit_scale <= 0:
            raise ConfigError(f"clip loss: max_logit_scale={max_logit_scale} must be > 0 or None")
        check_range("label_smoothing", label_smoothing, 0.0, 1.0, where="clip loss")
        _check_distributed_flags(local_loss, gather_with_grad, "clip loss")
        scale = _log_parameter(math.log(1.0 / init_temperature), learn_temperature)
        if isinstance(scale, nn.Parameter):
            self.logit_scale = scale
        else:
            self.register_buffer("logit_scale", scale)
        self.max_logit_scale = max_logit_scale
        self.label_smoothing = label_smoothing
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.normalize = normalize

    def scale(self) -> Tensor:
        """Return the () multiplicative logit scale ``min(exp(logit_scale), max_logit_scale)``."""
        scale = self.logit_scale.exp()
        return scale if self.max_logit_scale is None else scale.clamp(max=self.max_logit_scale)

    def forward(self, image_embeds: Tensor, text_embeds: Tensor) -> LossOutput:
        """Return the CLIP loss of (B, D) paired image and text embeddings (normalised here if asked)."""
        if self.normalize:
            image_embeds = F.normalize(image_embeds, dim=-1)
            text_embeds = F.normalize(text_embeds, dim=-1)
        return clip_loss(
            image_embeds,
            text_embeds,
            self.scale(),
            label_smoothing=self.label_smoothing,
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
        )


@LOSSES.register("siglip")
class SigLipLoss(nn.Module):
    """SigLIP pairwise sigmoid loss with a learnable scale and bias (Zhai et al. 2023).

    ``logit_scale`` is log-parametrised (initialised to ``log 10``), ``logit_bias`` starts at ``-10`` so that
    the many negative pairs do not dominate the first steps, as the paper recommends.
    """

    logit_scale: Tensor
    logit_bias: Tensor

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        max_logit_scale: float | None = None,
        learnable: bool = True,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if max_logit_scale is not None and max_logit_scale <= 0:
            raise ConfigError(f"siglip loss: max_logit_scale={max_logit_scale} must be > 0 or None")
        _check_distributed_flags(local_loss, gather_with_grad, "siglip loss")
        for name, value in (("logit_scale", init_logit_scale), ("logit_bias", init_logit_bias)):
            param = _log_parameter(value, learnable)
            if isinstance(param, nn.Parameter):
                setattr(self, name, param)
            else:
                self.register_buffer(name, param)
        self.max_logit_scale = max_logit_scale
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.normalize = normalize

    def scale(self) -> Tensor:
        """Return the () multiplicative logit scale ``exp(logit_scale)`` (capped if ``max_logit_scale``)."""
        scale = self.logit_scale.exp()
        return scale if self.max_logit_scale is None else scale.clamp(max=self.max_logit_scale)

    def forward(self, image_embeds: Tensor, text_embeds: Tensor) -> LossOutput:
        """Return the SigLIP loss of (B, D) paired image and text embeddings (normalised here if asked)."""
        if self.normalize:
            image_embeds = F.normalize(image_embeds, dim=-1)
            text_embeds = F.normalize(text_embeds, dim=-1)
        return siglip_loss(
            image_embeds,
            text_embeds,
            self.scale(),
            self.logit_bias,
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
        )
