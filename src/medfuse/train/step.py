"""One optimisation step (forward, loss, backward, optimizer) with no host synchronisation inside.

:class:`TrainStep` is the unit a throughput benchmark times and a custom loop can call: the loss stays a
device tensor (read it with ``float(...)`` only when logging), gradients are dropped with
``set_to_none``, and with ``compile=True`` the forward and the loss are compiled together by
``torch.compile`` (the backward graph follows through AOTAutograd).

>>> step = TrainStep(ContrastiveTask(), model, optimizer, device=torch.device("cuda"),
...                  precision="bf16", compile=True)                                   # doctest: +SKIP
>>> loss = step(batch)        # a () tensor on the device; no .item() here          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.config import check_choice
from medfuse.core.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")

__all__ = ["PRECISIONS", "TrainStep", "autocast", "set_grad_checkpointing"]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Return the autocast context for ``precision`` (``fp32``: none; ``bf16``/``fp16``: mixed precision)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_grad_checkpointing(module: nn.Module, enable: bool = True) -> list[str]:
    """Switch gradient checkpointing on every submodule that supports it; return their names.

    Encoders expose ``set_grad_checkpointing`` (timm, transformers and ``transformer_text`` towers); the
    outermost supporting module of each branch is switched, so a tower is never switched twice.
    Raises :class:`ConfigError` when nothing in ``module`` supports it.
    """
    switched: list[str] = []
    for name, sub in module.named_modules():
        if any(name.startswith(done + ".") or done == "" for done in switched):
            continue
        setter = getattr(sub, "set_grad_checkpointing", None)
        if callable(setter):
            setter(enable)
            switched.append(name)
    if not switched:
        raise ConfigError("grad_checkpointing: no part of the model supports it; set it to false")
    return switched


class TrainStep:
    """Callable ``step(batch) -> loss``: one optimisation step of ``task`` on ``module``.

    Args:
        task: anything with ``loss(module, batch) -> LossOutput`` (see :mod:`medfuse.train.tasks`).
        module: the model being trained (a ``TaskModule`` or a bare model, as the task expects).
        optimizer: its optimizer (e.g. :func:`medfuse.train.loop.build_optimizer`).
        device: where the batch already is; autocast is set for this device type.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (fp16 scales the loss with a ``GradScaler``).
        compile: compile forward + loss with ``torch.compile`` (the first calls are slow while it compiles).
        compile_mode: ``torch.compile``'s ``mode`` (None: its default).
        clip_grad_norm: clip the global gradient norm to this value (None: no clipping).

    The returned loss is detached and stays on the device: reading it (``float(loss)``) waits for the
    step, so do it only when logging. (With ``fp16`` the ``GradScaler`` itself reads its overflow flag on
    the host each step; ``bf16`` needs no scaler.)
    """

    def __init__(
        self,
        task: Any,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        precision: str = "fp32",
        compile: bool = False,
        compile_mode: str | None = None,
        clip_grad_norm: float | None = None,
    ) -> None:
        check_choice("precision", precision, PRECISIONS)
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ConfigError(f"clip_grad_norm: expected > 0 or None, got {clip_grad_norm!r}")
        self.task = task
        self.module = module
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.clip_grad_norm = clip_grad_norm
        self.params = [p for p in module.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("nothing to train: every parameter is frozen")
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        forward: Callable[[Mapping[str, Any]], Tensor] = self._forward_loss
        if compile:
            forward = torch.compile(forward, mode=compile_mode)
        self._forward = forward
        module.train()

    def _forward_loss(self, batch: Mapping[str, Any]) -> Tensor:
        with autocast(self.device, self.precision):
            return self.task.loss(self.module, batch).total

    def __call__(self, batch: Mapping[str, Any]) -> Tensor:
        """Run one step on ``batch`` (already on the device); return the detached () loss tensor.

        The module is put in training mode when the step is made; a caller that evaluates between steps
        switches it back with ``module.train()``.
        """
        loss = self._forward(batch)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            if self.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients
        else:
            loss.backward()
        if self.clip_grad_norm is not None:
            # foreach kernels, and no .item(): the clip coefficient stays on the device
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm, foreach=True)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def parameters(self) -> Iterable[nn.Parameter]:
        """Return the trainable parameters the step updates."""
        return iter(self.params)
