"""Prediction heads: ``(B, D)`` features -> ``(B, K)`` logits, one class per task type.

``predict_proba`` turns logits into what the task predicts:

=============  ===========  ==========================================================================
head           activation   meaning of ``predict_proba(logits)`` ``(B, K)``
=============  ===========  ==========================================================================
``multiclass`` softmax      one distribution over K >= 2 exclusive classes (rows sum to 1)
``binary``     sigmoid      K = 1: probability of the positive class
``multilabel`` sigmoid      K independent label probabilities (rows need not sum to 1)
``regression`` identity     the predicted values themselves (no probabilities)
=============  ===========  ==========================================================================
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError
from medfuse.models.base import HEADS


class Head(nn.Module):
    """Linear (``hidden=0``) or one-hidden-layer MLP from ``(B, in_dim)`` to ``(B, num_outputs)`` logits.

    Args:
        in_dim: input feature size ``D``.
        num_outputs: ``K``.
        hidden: width of the hidden layer (0: a single linear layer).
        dropout: dropout on the input features (and after the hidden layer).
    """

    task: ClassVar[str] = ""
    activation: ClassVar[str] = "identity"
    loss: ClassVar[str] = ""

    def __init__(self, in_dim: int, num_outputs: int, *, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value, low in (("in_dim", in_dim, 1), ("num_outputs", num_outputs, 1), ("hidden", hidden, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"head.{name}: expected an integer >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"head.dropout: expected a probability in [0, 1), got {dropout!r}")
        self.check_outputs(num_outputs)
        self.in_dim = in_dim
        self.num_outputs = num_outputs
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout else []
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs)]
        else:
            layers.append(nn.Linear(in_dim, num_outputs))
        self.net = nn.Sequential(*layers)

    def check_outputs(self, num_outputs: int) -> None:
        """Raise :class:`ConfigError` when ``num_outputs`` does not suit this task."""

    def forward(self, features: Tensor) -> Tensor:
        """Return logits ``(B, K)`` for features ``(B, D)``."""
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"head expects features (B, {self.in_dim}), got {tuple(features.shape)}")
        return self.net(features)

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Return ``(B, K)`` predictions from logits: see the module table for each task's activation."""
        if self.activation == "softmax":
            return torch.softmax(logits, dim=-1)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        return logits


@HEADS.register("multiclass")
class MulticlassHead(Head):
    """Exclusive classes: softmax over K >= 2 logits; trained with cross-entropy on ``(B,)`` int64 labels."""

    task = "multiclass"
    activation = "softmax"
    loss = "cross_entropy"

    def check_outputs(self, num_outputs: int) -> None:
        if num_outputs < 2:
            raise ConfigError(f"head.num_outputs: multiclass needs >= 2 classes, got {num_outputs}; use 'binary'")


@HEADS.register("binary")
class BinaryHead(Head):
    """One positive class: sigmoid of a single logit; trained with binary cross-entropy on ``(B, 1)`` floats."""

    task = "binary"
    activation = "sigmoid"
    loss = "bce"

    def check_outputs(self, num_outputs: int) -> None:
        if num_outputs != 1:
            raise ConfigError(f"head.num_outputs: binary has exactly 1 output, got {num_outputs}; use 'multilabel'")


@HEADS.register("multilabel")
class MultilabelHead(Head):
    """K independent labels: sigmoid per logit; trained with binary cross-entropy on ``(B, K)`` multi-hot."""

    task = "multilabel"
    activation = "sigmoid"
    loss = "bce"


@HEADS.register("regression")
class RegressionHead(Head):
    """K continuous targets: the outputs are the predictions; trained with mean squared error."""

    task = "regression"
    activation = "identity"
    loss = "mse"


def build_head(name: str, in_dim: int, num_outputs: int, *, hidden: int = 0, dropout: float = 0.0) -> Head:
    """Return the registered head ``name``; unknown names fail with the close matches."""
    return HEADS.get(name)(in_dim, num_outputs, hidden=hidden, dropout=dropout)
