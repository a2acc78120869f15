"""Supervised losses for heads: multi-class cross-entropy, multi-label BCE with missing labels, MSE.

Medical label sets are often incomplete (a finding not assessed for a study): NaN targets mark missing
labels and are left out of the multi-label and regression losses instead of being read as negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.base import LOSSES, LossOutput, check_range, check_same_shape, empty_loss

IGNORE_INDEX = -100


def cross_entropy_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    label_smoothing: float = 0.0,
    class_weights: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> LossOutput:
    """Return the (weighted) multi-class cross-entropy, with optional label smoothing (Szegedy et al. 2016,
    "Rethinking the Inception Architecture for Computer Vision", Sec. 7).

    logits: (B, C) or (B, C, ...) class logits. targets: (B,) or (B, ...) long class ids, ``ignore_index``
        where there is no label. class_weights: (C,) rescaling per class; the mean is weighted by them.
    With no labelled sample the loss is a zero connected to ``logits``. Parts: ``accuracy`` (detached).
    """
    where = "cross_entropy"
    if logits.ndim < 2 or targets.shape != logits.shape[:1] + logits.shape[2:]:
        raise ConfigError(
            f"{where}: logits must be (B, C, ...) and targets (B, ...); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if targets.is_floating_point():
        raise ConfigError(f"{where}: targets must be integer class ids, got dtype {targets.dtype}")
    check_range("label_smoothing", label_smoothing, 0.0, 1.0, where=where)
    if class_weights is not None and class_weights.shape != (logits.shape[1],):
        raise ConfigError(
            f"{where}: class_weights must have {logits.shape[1]} entries, got {tuple(class_weights.shape)}"
        )
    labelled = targets != ignore_index
    if not bool(labelled.any()):
        zero = empty_loss(logits)
        return LossOutput(zero, {"accuracy": zero.detach()})
    if class_weights is not None:
        class_weights = class_weights.to(device=logits.device, dtype=logits.dtype)
    loss = F.cross_entropy(
        logits,
        targets.long(),
        weight=class_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    accuracy = (logits.argmax(dim=1) == targets)[labelled].float().mean()
    return LossOutput(loss, {"accuracy": accuracy.detach()})


def bce_loss(logits: Tensor, targets: Tensor, *, pos_weight: Tensor | None = None) -> LossOutput:
    """Return the multi-label binary cross-entropy averaged over the observed (non-NaN) targets.

        L = 1/|O| sum_{(b,k) in O} -[p_k y log s(x) + (1 - y) log(1 - s(x))]

    logits: (B, K). targets: (B, K) in [0, 1], NaN where the label is missing.
    pos_weight: (K,) weight ``p_k`` of the positive term per label (e.g. negatives / positives).
    With no observed target the loss is a zero connected to ``logits``. Parts: ``observed`` (fraction).
    """
    where = "bce"
    check_same_shape("logits", logits, "targets", targets, where=where)
    if pos_weight is not None and pos_weight.shape != logits.shape[-1:]:
        raise ConfigError(
            f"{where}: pos_weight must have {logits.shape[-1]} entries, got {tuple(pos_weight.shape)}"
        )
    observed = ~torch.isnan(targets)
    count = observed.sum()
    if int(count) == 0:
        zero = empty_loss(logits)
        return LossOutput(zero, {"observed": zero.detach()})
    if pos_weight is not None:
        pos_weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
    filled = torch.where(observed, targets, torch.zeros_like(targets)).to(logits.dtype)
    per_label = F.binary_cross_entropy_with_logits(logits, filled, pos_weight=pos_weight, reduction="none")
    loss = (per_label * observed).sum() / count
    return LossOutput(loss, {"observed": (count / targets.numel()).detach().to(logits.dtype)})


def mse_loss(predictions: Tensor, targets: Tensor) -> LossOutput:
    """Return the mean squared error over the observed (non-NaN) targets.

    predictions, targets: same shape, e.g. (B,) or (B, K); NaN targets are missing values.
    With no observed target the loss is a zero connected to ``predictions``. Parts: ``mae`` (detached).
    """
    check_same_shape("predictions", predictions, "targets", targets, where="mse")
    observed = ~torch.isnan(targets)
    if not bool(observed.any()):
        zero = empty_loss(predictions)
        return LossOutput(zero, {"mae": zero.detach()})
    error = predictions[observed] - targets[observed].to(predictions.dtype)
    return LossOutput(error.square().mean(), {"mae": error.abs().mean().detach()})


def _optional_buffer(module: nn.Module, name: str, values: Sequence[float] | None, where: str) -> None:
    tensor = None
    if values is not None:
        tensor = torch.as_tensor(list(values), dtype=torch.float32)
        if tensor.ndim != 1 or bool((tensor < 0).any()):
            raise ConfigError(f"{where}: {name} must be a list of non-negative numbers, got {list(values)}")
    module.register_buffer(name, tensor)


@LOSSES.register("cross_entropy")
class CrossEntropy(nn.Module):
    """Multi-class cross-entropy with label smoothing and class weights (see :func:`cross_entropy_loss`)."""

    class_weights: Tensor | None

    def __init__(
        self,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        check_range("label_smoothing", label_smoothing, 0.0, 1.0, where="cross_entropy")
        _optional_buffer(self, "class_weights", class_weights, "cross_entropy")
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, targets: Tensor) -> LossOutput:
        """Return the cross-entropy of (B, C) logits against (B,) class ids."""
        return cross_entropy_loss(
            logits,
            targets,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
            ignore_index=self.ignore_index,
        )


@LOSSES.register("bce")
class MultiLabelBCE(nn.Module):
    """Multi-label binary cross-entropy ignoring missing (NaN) labels, with ``pos_weight`` (see :func:`bce_loss`)."""

    pos_weight: Tensor | None

    def __init__(self, pos_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        _optional_buffer(self, "pos_weight", pos_weight, "bce")

    def forward(self, logits: Tensor, targets: Tensor) -> LossOutput:
        """Return the BCE of (B, K) logits against (B, K) targets (NaN = missing)."""
        return bce_loss(logits, targets, pos_weight=self.pos_weight)


@LOSSES.register("mse")
class MeanSquaredError(nn.Module):
    """Mean squared error over observed (non-NaN) regression targets (see :func:`mse_loss`)."""

    def forward(self, predictions: Tensor, targets: Tensor) -> LossOutput:
        """Return the MSE of predictions against same-shaped targets (NaN = missing)."""
        return mse_loss(predictions, targets)
