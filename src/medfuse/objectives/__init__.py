"""Training objectives: pure functions holding the math, thin modules holding the parameters.

Every module returns a :class:`LossOutput` ``(total, parts)`` and is registered in :data:`LOSSES` under a
short name, so a config can name it (``build_loss("clip", init_temperature=0.05)``).

Families (one file each):

* contrastive (``contrastive.py``): ``clip`` InfoNCE (Radford et al. 2021) and ``siglip`` sigmoid loss
  (Zhai et al. 2023), both over the global batch across processes.
* matching (``matching.py``): ``itm`` image-text matching with mined hard negatives (Li et al. 2021).
* masked language modelling (``mlm.py``): BERT 80/10/10 masking and ``mlm`` (Devlin et al. 2019).
* alignment (``alignment.py``): ``cycle`` consistency (Goel et al. 2022; Dwibedi et al. 2019) and
  ``adversarial`` modality alignment through gradient reversal (Ganin & Lempitsky 2015).
* distillation (``distill.py``): ``distill_logits`` (Hinton et al. 2015), ``distill_embed`` (Romero et
  al. 2015) and ``distill_relational`` (Park et al. 2019).
* multi-task (``multitask.py``): ``multitask_fixed`` weights and ``multitask_uncertainty`` (Kendall et
  al. 2018).
* supervised (``supervised.py``): ``cross_entropy``, ``bce`` (multi-label, missing labels) and ``mse``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medfuse.core.errors import ConfigError
from medfuse.objectives.alignment import (
    AdversarialAlignmentLoss,
    CycleConsistencyLoss,
    ModalityDiscriminator,
    cycle_back_loss,
    cyclip_losses,
    dann_lambda,
    grad_reverse,
)
from medfuse.objectives.base import LOSSES, LossOutput, as_loss_output
from medfuse.objectives.contrastive import ClipLoss, SigLipLoss, clip_loss, siglip_loss
from medfuse.objectives.distill import (
    EmbeddingDistillLoss,
    LogitDistillLoss,
    RelationalDistillLoss,
    embedding_distill_loss,
    kd_logits_loss,
    rkd_angle_loss,
    rkd_distance_loss,
)
from medfuse.objectives.matching import ITMLoss, mine_hard_negatives, positive_mask
from medfuse.objectives.mlm import MLMLoss, mask_tokens, mlm_loss
from medfuse.objectives.multitask import (
    FixedWeighting,
    UncertaintyWeighting,
    uncertainty_weighted_sum,
    weighted_sum,
)
from medfuse.objectives.supervised import (
    CrossEntropy,
    MeanSquaredError,
    MultiLabelBCE,
    bce_loss,
    cross_entropy_loss,
    mse_loss,
)


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Return the loss module registered as ``name``, built with ``kwargs``.

    Unknown names fail with the close matches; unknown or missing arguments fail naming the accepted ones.
    """
    cls = LOSSES.get(name)
    signature = inspect.signature(cls)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        accepted = ", ".join(signature.parameters) or "(none)"
        raise ConfigError(f"loss '{name}': {exc}; accepted arguments: {accepted}") from None
    return cls(**kwargs)


__all__ = [
    "LOSSES",
    "AdversarialAlignmentLoss",
    "ClipLoss",
    "CrossEntropy",
    "CycleConsistencyLoss",
    "EmbeddingDistillLoss",
    "FixedWeighting",
    "ITMLoss",
    "LogitDistillLoss",
    "LossOutput",
    "MLMLoss",
    "MeanSquaredError",
    "ModalityDiscriminator",
    "MultiLabelBCE",
    "RelationalDistillLoss",
    "SigLipLoss",
    "UncertaintyWeighting",
    "as_loss_output",
    "bce_loss",
    "build_loss",
    "clip_loss",
    "cross_entropy_loss",
    "cycle_back_loss",
    "cyclip_losses",
    "dann_lambda",
    "embedding_distill_loss",
    "grad_reverse",
    "kd_logits_loss",
    "mask_tokens",
    "mine_hard_negatives",
    "mlm_loss",
    "mse_loss",
    "positive_mask",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "siglip_loss",
    "uncertainty_weighted_sum",
    "weighted_sum",
]
