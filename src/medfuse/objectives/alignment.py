"""Aligning modalities beyond contrastive pairs: cycle consistency and adversarial modality confusion.

* Cycle consistency: CyCLIP's in-modal and cross-modal similarity consistency (Goel et al. 2022) and the
  soft-nearest-neighbour cycle-back loss of Temporal Cycle-Consistency learning (Dwibedi et al. 2019),
  applied image -> text -> image and text -> image -> text.
* Adversarial alignment: a discriminator predicts the modality of a feature through a gradient-reversal
  layer, so the encoders learn features from which the modality cannot be told (Ganin & Lempitsky 2015).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_ndim, check_same_shape, detached


def _check_pair(image_embeds: Tensor, text_embeds: Tensor, where: str) -> None:
    check_ndim("image_embeds", image_embeds, 2, where=where, shape="(B, D)")
    check_same_shape("image_embeds", image_embeds, "text_embeds", text_embeds, where=where)


def cyclip_losses(image_embeds: Tensor, text_embeds: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(in_modal, cross_modal)`` CyCLIP consistency terms (Goel et al. 2022, "CyCLIP: Cyclic
    Contrastive Language-Image Pretraining", the in-modal and cross-modal cyclic regularisers).

        in_modal    = 1/B sum_{j,k} (<I_j, I_k> - <T_j, T_k>)^2
        cross_modal = 1/B sum_{j,k} (<I_j, T_k> - <I_k, T_j>)^2

    image_embeds, text_embeds: (B, D) paired embeddings, L2-normalised.
    """
    _check_pair(image_embeds, text_embeds, "cyclip loss")
    batch = image_embeds.shape[0]
    image_text = image_embeds @ text_embeds.T  # (B, B)
    in_modal = (image_embeds @ image_embeds.T - text_embeds @ text_embeds.T).square().sum() / batch
    cross_modal = (image_text - image_text.T).square().sum() / batch
    return in_modal, cross_modal


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    # Expanded form: smooth at zero distance, unlike a norm of differences.
    return (a.square().sum(-1, keepdim=True) - 2 * a @ b.T + b.square().sum(-1).unsqueeze(0)).clamp_min(0)


def cycle_back_loss(source: Tensor, target: Tensor, temperature: float = 0.1) -> Tensor:
    """Return the soft-nearest-neighbour cycle-back classification loss source -> target -> source
    (Dwibedi et al. 2019, "Temporal Cycle-Consistency Learning", Sec. 3.2.1).

    For source ``u_i``: ``alpha_j = softmax_j(-||u_i - v_j||^2 / tau)``, soft neighbour
    ``v~_i = sum_j alpha_j v_j``, ``beta_k = softmax_k(-||v~_i - u_k||^2 / tau)`` and the loss is
    ``-log beta_i``, averaged over ``i``: the cycle must come back to where it started.

    source: (B, D), target: (B, D) embeddings of two modalities (row ``i`` of each is a pair, though the
    loss does not use the pairing, only that the cycle returns). temperature: ``tau`` > 0.
    """
    if temperature <= 0:
        raise ConfigError(f"cycle loss: temperature={temperature} must be > 0")
    _check_pair(source, target, "cycle loss")
    alpha = torch.softmax(-_squared_distances(source, target) / temperature, dim=1)  # (B, B)
    soft_neighbours = alpha @ target  # (B, D)
    back_logits = -_squared_distances(soft_neighbours, source) / temperature  # (B, B)
    labels = torch.arange(source.shape[0], device=source.device)
    return F.cross_entropy(back_logits, labels)


@LOSSES.register("cycle")
class CycleConsistencyLoss(nn.Module):
    """Cycle consistency between image and text embeddings (Goel et al. 2022; Dwibedi et al. 2019).

    ``total = in_modal_weight * in_modal + cross_modal_weight * cross_modal + snn_weight * snn`` where
    ``snn`` is the mean of the image->text->image and text->image->text cycle-back losses. CyCLIP uses
    weights 0.25 and 0.25; terms with weight 0 are not computed.
    """

    def __init__(
        self,
        in_modal_weight: float = 0.25,
        cross_modal_weight: float = 0.25,
        snn_weight: float = 0.0,
        temperature: float = 0.1,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        weights = {
            "in_modal_weight": in_modal_weight,
            "cross_modal_weight": cross_modal_weight,
            "snn_weight": snn_weight,
        }
        for name, value in weights.items():
            if value < 0:
                raise ConfigError(f"cycle loss: {name}={value} must be >= 0")
        if sum(weights.values()) == 0:
            raise ConfigError("cycle loss: every weight is 0; set at least one of " + ", ".join(weights))
        if temperature <= 0:
            raise ConfigError(f"cycle loss: temperature={temperature} must be > 0")
        self.in_modal_weight = in_modal_weight
        self.cross_modal_weight = cross_modal_weight
        self.snn_weight = snn_weight
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, image_embeds: Tensor, text_embeds: Tensor) -> LossOutput:
        """Return the weighted cycle loss of (B, D) paired embeddings; parts hold each computed term."""
        if self.normalize:
            image_embeds = F.normalize(image_embeds, dim=-1)
            text_embeds = F.normalize(text_embeds, dim=-1)
        parts: dict[str, Tensor] = {}
        total = image_embeds.new_zeros(())
        if self.in_modal_weight or self.cross_modal_weight:
            in_modal, cross_modal = cyclip_losses(image_embeds, text_embeds)
            parts.update(in_modal=in_modal, cross_modal=cross_modal)
            total = total + self.in_modal_weight * in_modal + self.cross_modal_weight * cross_modal
        if self.snn_weight:
            snn = (
                cycle_back_loss(image_embeds, text_embeds, self.temperature)
                + cycle_back_loss(text_embeds, image_embeds, self.temperature)
            ) / 2
            parts["snn"] = snn
            total = total + self.snn_weight * snn
        return LossOutput(total, parts)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, grl_lambda: float) -> Tensor:
        ctx.grl_lambda = grl_lambda  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.grl_lambda * grad, None  # type: ignore[attr-defined]


def grad_reverse(x: Tensor, grl_lambda: float = 1.0) -> Tensor:
    """Return ``x`` unchanged; its gradient is multiplied by ``-grl_lambda`` on the way back
    (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation", the gradient reversal layer)."""
    return _GradientReversal.apply(x, float(grl_lambda))


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Return the gradient-reversal weight ``2 / (1 + exp(-gamma * p)) - 1`` at training progress ``p``
    in [0, 1] (the adaptation-factor schedule of Ganin & Lempitsky 2015): 0 at the start, close to 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


class ModalityDiscriminator(nn.Module):
    """A small MLP mapping (N, D) features to (N, M) modality logits."""

    def __init__(self, dim: int, num_modalities: int, hidden_dim: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_modalities)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Return (N, M) modality logits of (N, D) features."""
        return self.net(features)


@LOSSES.register("adversarial")
class AdversarialAlignmentLoss(nn.Module):
    """Modality-adversarial alignment through a gradient-reversal layer (Ganin & Lempitsky 2015).

    Minimising ``total`` trains the discriminator to tell the modalities apart while the reversed gradient
    pushes the encoders towards features it cannot separate. Set ``grl_lambda`` during training (e.g.
    with :func:`dann_lambda`) to ramp the adversarial signal up.
    """

    def __init__(
        self,
        dim: int,
        modalities: Sequence[str] = ("image", "text"),
        hidden_dim: int = 256,
        grl_lambda: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim <= 0 or hidden_dim <= 0:
            raise ConfigError(f"adversarial loss: dim={dim} and hidden_dim={hidden_dim} must be > 0")
        if len(modalities) < 2 or len(set(modalities)) != len(modalities):
            raise ConfigError(
                f"adversarial loss: modalities={list(modalities)} must name two or more distinct ones"
            )
        if grl_lambda < 0:
            raise ConfigError(f"adversarial loss: grl_lambda={grl_lambda} must be >= 0")
        self.modalities = list(modalities)
        self.grl_lambda = grl_lambda
        self.discriminator = ModalityDiscriminator(dim, len(self.modalities), hidden_dim, dropout)

    def forward(self, features: Mapping[str, Tensor]) -> LossOutput:
        """Return the discriminator's cross-entropy on ``features[modality]`` (N_m, D) of two or more modalities.

        Parts: ``accuracy`` (detached) of the modality prediction, 1/M at the aligned optimum.
        """
        unknown = [name for name in features if name not in self.modalities]
        if unknown:
            raise ConfigError(f"adversarial loss: unknown modalities {unknown}; known: {self.modalities}")
        if len(features) < 2:
            raise ConfigError("adversarial loss: pass features of at least two modalities")
        stacked, labels = [], []
        for name, value in features.items():
            check_ndim(f"features['{name}']", value, 2, where="adversarial loss", shape="(N, D)")
            stacked.append(value)
            labels.append(torch.full((value.shape[0],), self.modalities.index(name), device=value.device))
        logits = self.discriminator(grad_reverse(torch.cat(stacked), self.grl_lambda))
        targets = torch.cat(labels)
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
        return LossOutput(loss, {"accuracy": detached(accuracy, loss)})
