"""The one training loop: AMP, accumulation, clipping, schedules, EMA, compile, DDP, atomic resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medfuse.core import progress
from medfuse.core.errors import ConfigError
from medfuse.models.inference import to_device
from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig
from medfuse.train.distributed import DistInfo, EpochSampler, all_reduce_mean, barrier
from medfuse.train.state import Position, latest_checkpoint, load_train_state, model_state, save_train_state

log = logging.getLogger(__name__)


class Task(Protocol):
    """What varies between trainings: the loss on a batch and the validation metrics."""

    name: str

    def loss(self, module: nn.Module, batch: Mapping[str, Any]) -> Any:
        """Return a ``LossOutput`` (``total`` scalar tensor, ``parts`` dict)."""

    def validate(self, module: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Return validation metrics (higher or lower is better as the recipe says)."""


class Callback(Protocol):
    def on_log(self, step: int, metrics: Mapping[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, step: int, metrics: Mapping[str, float]) -> None: ...
    def on_train_end(self, result: FitResult) -> None: ...


@dataclass
class FitResult:
    """What a finished training gives back."""

    out_dir: Path
    steps: int
    epochs: int
    wall_s: float
    samples_per_s: float
    best_metric: float | None
    best_step: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class SeededSamples(Dataset):
    """Wraps a data set so each sample's random draws (augmentation) depend only on (seed, epoch, index).

    Per-sample augmentation then does not depend on worker count, order, or where a resumed run started,
    which is what makes ``--resume`` bit-identical. Torch's global generator is forked, so the draws made
    here never disturb the model's own random state (dropout).
    """

    def __init__(self, dataset: Dataset, seed: int, groups: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.collate_fn = getattr(dataset, "collate_fn", None)
        # with groups (train.group_by), a group's samples draw the same augmentation within an epoch
        self.draw_keys = list(groups) if groups is not None else None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            key = int(index) if self.draw_keys is None else self.draw_keys[int(index)]
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + key)
            return self.dataset[index]


def _groups(dataset: Dataset, group_by: str | None) -> list[int] | None:
    """Return the sample groups ``train.group_by`` names (see :class:`EpochSampler`), or None.

    Samples without such a file (key -1) each form their own group.
    """
    if not group_by:
        return None
    keys = getattr(dataset, "group_keys", None)
    if keys is None:
        raise ConfigError(f"train.group_by: {type(dataset).__name__} cannot group its samples; remove group_by")
    values = [int(k) for k in keys(group_by)]
    top = max(values, default=-1)
    return [k if k >= 0 else top + 1 + i for i, k in enumerate(values)]


def build_optimizer(params: Sequence[tuple[str, nn.Parameter]], cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW/Adam/SGD with no weight decay on biases and norms, per-regex LR multipliers, fused/foreach kernels."""
    import re

    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    mults = [(re.compile(k), v) for k, v in cfg.lr_multipliers.items()]
    for name, p in params:
        wd = 0.0 if (p.ndim <= 1 or name.endswith(".bias") or "logit_" in name) else cfg.weight_decay
        mult = next((v for r, v in mults if r.search(name)), 1.0)
        groups.setdefault((wd, mult), []).append(p)
    param_groups = [{"params": ps, "weight_decay": wd, "lr": cfg.lr * m, "lr_mult": m} for (wd, m), ps in groups.items()]
    # one-pass fused kernels exist on CUDA and, since torch 2.4, on CPU (several times faster there than foreach)
    fused = cfg.fused if cfg.fused is not None else device.type in ("cuda", "cpu")
    kw: dict[str, Any] = {"fused": True} if fused else {"foreach": True}
    if cfg.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
        return cls(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kw)
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, **kw)


def build_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine/linear/constant decay to ``min_lr_ratio`` of the base LR."""
    warm = cfg.warmup_steps or int(cfg.warmup_ratio * total_steps)
    total = max(total_steps, 1)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.kind == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total - warm))
        decay = 0.5 * (1 + math.cos(math.pi * t)) if cfg.kind == "cosine" else 1 - t
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class _JsonlLog:
    def __init__(self, path: Path | None) -> None:
        self.fh = path.open("a", encoding="utf-8") if path else None
        self.tb: Any = None
        if path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(path.parent / "tensorboard"))
            except Exception:  # tensorboard is optional; JSONL always works
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if self.fh is None:
            return
        self.fh.write(json.dumps(record, default=float) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, record.get("step", 0))

    def close(self) -> None:
        if self.fh:
            self.fh.close()
        if self.tb is not None:
            self.tb.close()


def fit(
    task: Task,
    module: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    *,
    loop: LoopConfig,
    optim: OptimConfig,
    schedule: ScheduleConfig,
    out_dir: Path,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    resume: bool = False,
    dist_info: DistInfo | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[nn.Module, FitResult]:
    """Train ``module`` (whose trainable parameters are those with ``requires_grad``) with ``task``.

    Returns the trained module (the best epoch's or EMA weights when configured) and a :class:`FitResult`.
    Checkpoints go to ``out_dir/checkpoints``; ``resume=True`` continues from the latest one to the same
    final weights as an uninterrupted run.
    """
    info = dist_info or DistInfo()
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(loop.device)
    module.to(device)
    if loop.channels_last:
        module.to(memory_format=torch.channels_last)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("nothing to train: every parameter is frozen")
    opt = build_optimizer(named, optim, device)
    groups = _groups(train_data, loop.group_by)
    train_data = SeededSamples(train_data, seed, groups)
    collate_fn = collate_fn or train_data.collate_fn
    sampler = EpochSampler(len(train_data), shuffle=True, seed=seed, rank=info.rank, world_size=info.world_size,
                           groups=groups)
    micro_per_epoch = math.ceil(len(sampler) / loop.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / loop.grad_accum)
    total_steps = loop.max_steps or steps_per_epoch * loop.epochs
    epochs = math.ceil(total_steps / max(steps_per_epoch, 1))
    sched = build_scheduler(opt, schedule, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=loop.precision == "fp16")
    ema = None
    if loop.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(loop.ema_decay), use_buffers=True)

    ckpt_root = out_dir / "checkpoints"
    pos = Position()
    resumed_from = None
    if resume:
        last = latest_checkpoint(ckpt_root)
        if last is None:
            log.warning("--resume: no checkpoint in %s; starting from scratch", ckpt_root)
        else:
            pos = load_train_state(last, model=module, optimizer=opt, scheduler=sched, scaler=scaler, ema=ema)
            resumed_from = pos.step
            log.info("resumed from %s (step %d, epoch %d)", last, pos.step, pos.epoch)

    # compile the task's loss (forward + criterion), not the module: tasks unwrap the module they are given
    # (a TaskModule has no forward), so a compiled module was bypassed or, for contrastive tasks, failed
    task_loss = torch.compile(task.loss) if loop.compile else task.loss
    train_module: nn.Module = module
    loss_fn: Callable[[nn.Module, Any], Any] = task_loss
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # DDP synchronises gradients only for a forward that goes through it: the step runs the task's loss
        # as the forward of the wrapped module (unused parameters, e.g. a dropped modality, are allowed)
        train_module = DistributedDataParallel(_LossStep(module, task_loss), find_unused_parameters=True,
                                               device_ids=[device.index] if device.type == "cuda" else None)
        loss_fn = _call_step

    metrics_log = _JsonlLog(out_dir / "metrics.jsonl" if info.is_main else None)
    best_state: dict[str, torch.Tensor] | None = None
    t_start = time.perf_counter()
    samples = 0
    running = torch.zeros((), device=device)
    running_n = 0
    t_log = time.perf_counter()
    samples_log = 0
    val_loader = None
    if val_data is not None and info.is_main:
        val_loader = DataLoader(val_data, batch_size=loop.eval_batch_size or loop.batch_size, shuffle=False,
                                num_workers=loop.num_workers,
                                collate_fn=getattr(val_data, "collate_fn", None) or collate_fn)

    with progress.task(f"train {task.name}", total=total_steps) as bar:
        bar.update(pos.step)
        while pos.step < total_steps and pos.epoch < epochs:
            sampler.set_epoch(pos.epoch, skip=pos.batch_in_epoch * loop.batch_size)
            train_data.epoch = pos.epoch
            g = torch.Generator()
            g.manual_seed(seed * 1000003 + pos.epoch)
            loader = DataLoader(train_data, batch_size=loop.batch_size, sampler=sampler, num_workers=loop.num_workers,
                                collate_fn=collate_fn, pin_memory=device.type == "cuda", generator=g,
                                persistent_workers=False)
            module.train()
            micro = 0
            it = iter(loader)
            while pos.step < total_steps:
                batches = []
                for _ in range(loop.grad_accum):
                    try:
                        batches.append(next(it))
                    except StopIteration:
                        break
                if not batches:
                    break
                drawn = len(batches)
                batches = [b for b in batches if _batch_size(b) > 0]  # every sample of a batch failed to load
                if not batches:
                    pos.batch_in_epoch += drawn
                    continue
                for i, batch in enumerate(batches):
                    batch = to_device(batch, device, loop.channels_last)
                    sync = i == len(batches) - 1 or not info.enabled
                    ctx = contextlib.nullcontext() if sync else train_module.no_sync()  # type: ignore[operator]
                    with ctx, _autocast(device, loop.precision):
                        out = loss_fn(train_module, batch)
                    loss = out.total / len(batches)
                    scaler.scale(loss).backward() if scaler.is_enabled() else loss.backward()
                    running += out.total.detach()
                    running_n += 1
                    bs = _batch_size(batch)
                    samples += bs
                    samples_log += bs
                micro += drawn
                if scaler.is_enabled():
                    scaler.unscale_(opt)
                if loop.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for _, p in named], loop.clip_grad_norm)
                if scaler.is_enabled():
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
                if ema is not None:
                    ema.update_parameters(module)
                pos.step += 1
                pos.batch_in_epoch += drawn
                bar.update(1)
                if pos.step % loop.log_every == 0 or pos.step == total_steps:
                    loss_mean = all_reduce_mean(running / max(running_n, 1), info).item()
                    dt = time.perf_counter() - t_log
                    rec = {"step": pos.step, "epoch": pos.epoch, "loss": loss_mean, "lr": sched.get_last_lr()[0],
                           "samples_per_s": samples_log * info.world_size / max(dt, 1e-9)}
                    rec.update({f"loss/{k}": float(v.detach()) for k, v in getattr(out, "parts", {}).items()
                                if torch.is_tensor(v) and v.numel() == 1})
                    metrics_log.write(rec)
                    for cb in callbacks:
                        cb.on_log(pos.step, rec)
                    bar.update(0, loss=loss_mean, lr=rec["lr"], sps=rec["samples_per_s"])
                    running.zero_()
                    running_n = 0
                    t_log = time.perf_counter()
                    samples_log = 0
                if loop.checkpoint_every and pos.step % loop.checkpoint_every == 0 and pos.step < total_steps:
                    _save(info, ckpt_root, module, opt, sched, scaler, ema, pos, loop)
            # epoch finished
            pos.epoch += 1
            pos.batch_in_epoch = 0
            metrics: dict[str, float] = {}
            if val_loader is not None and (pos.epoch % loop.eval_every == 0 or pos.step >= total_steps):
                eval_model = ema.module if ema is not None else module
                eval_model.eval()
                with torch.no_grad(), _autocast(device, loop.precision):
                    metrics = task.validate(eval_model, val_loader)
                rec = {"step": pos.step, "epoch": pos.epoch, **{f"val/{k}": v for k, v in metrics.items()}}
                pos.history.append(rec)
                metrics_log.write(rec)
                for cb in callbacks:
                    cb.on_epoch_end(pos.epoch, pos.step, metrics)
                if loop.select_metric:
                    if loop.select_metric not in metrics:
                        raise ConfigError(f"train.select_metric '{loop.select_metric}' is not among the validation metrics {sorted(metrics)}")
                    v = metrics[loop.select_metric]
                    better = pos.best_metric is None or (v > pos.best_metric if loop.select_mode == "max" else v < pos.best_metric)
                    if better and math.isfinite(v):
                        pos.best_metric, pos.best_step = v, pos.step
                        best_state = model_state(eval_model)
                        if info.is_main:
                            _save_best(ckpt_root, best_state)
            barrier(info)
            _save(info, ckpt_root, module, opt, sched, scaler, ema, pos, loop)

    metrics_log.close()
    final = ema.module if ema is not None else module
    if loop.select_metric and pos.best_step is not None:
        if best_state is None:  # resumed after the best epoch: the weights were kept on disk
            best_state = _load_best(ckpt_root)
        if best_state is not None:
            final.load_state_dict(best_state)
    wall = time.perf_counter() - t_start
    result = FitResult(out_dir, pos.step, pos.epoch, wall, samples * info.world_size / max(wall, 1e-9),
                       pos.best_metric, pos.best_step, pos.history, resumed_from)
    for cb in callbacks:
        cb.on_train_end(result)
    return final, result


class _LossStep(nn.Module):
    """The task's loss as a module's forward, so that DistributedDataParallel sees (and syncs) the step."""

    def __init__(self, module: nn.Module, loss: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss

    def forward(self, batch: Any) -> Any:
        return self.loss(self.module, batch)


def _call_step(step: nn.Module, batch: Any) -> Any:
    return step(batch)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        if "index" in batch:
            return len(batch["index"])
        for v in batch.values():
            if torch.is_tensor(v) and v.ndim > 0:
                return int(v.shape[0])
            if isinstance(v, list):
                return len(v)
    return 1


def _save(info: DistInfo, root: Path, module: nn.Module, opt: Any, sched: Any, scaler: Any, ema: Any,
          pos: Position, loop: LoopConfig) -> None:
    if info.is_main:
        save_train_state(root, model=module, optimizer=opt, scheduler=sched, scaler=scaler, ema=ema, position=pos,
                         keep=loop.keep_checkpoints)
    barrier(info)


def _save_best(root: Path, state: dict[str, torch.Tensor]) -> None:
    import os

    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / ".best.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, root / "best.safetensors")


def _load_best(root: Path) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    p = root / "best.safetensors"
    return load_file(str(p)) if p.is_file() else None
