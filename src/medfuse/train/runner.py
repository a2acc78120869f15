"""``medfuse train``: recipe -> validated data -> model -> strategy -> fit -> self-describing checkpoint."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medfuse.core.config import from_dict, to_dict
from medfuse.core.errors import ConfigError
from medfuse.core.seed import seed_everything
from medfuse.train.distributed import init_distributed
from medfuse.train.loop import FitResult, fit, resolve_device
from medfuse.train.recipe import Recipe, load_recipe
from medfuse.train.strategies import apply_strategy, has_lora, merge_lora

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"  # the final checkpoint inside a training folder: <out>/model/{model.safetensors,config.json}


@dataclass
class TrainResult:
    """A finished training: where the checkpoint is and what happened."""

    out_dir: Path
    fit: FitResult
    data: dict[str, Any]
    strategy: str
    trainable_params: int
    total_params: int
    val_metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        head = (f"trained {self.fit.steps} steps ({self.fit.epochs} epochs) in {self.fit.wall_s:.1f}s, "
                f"{self.fit.samples_per_s:.1f} samples/s; {self.strategy}: {self.trainable_params:,} of "
                f"{self.total_params:,} parameters trained")
        data = f"data: read {self.data.get('read')}, kept {self.data.get('kept')}, quarantined {self.data.get('quarantined')}"
        val = ", ".join(f"{k}={v:.4f}" for k, v in list(self.val_metrics.items())[:8])
        return "\n".join(x for x in (head, data, f"validation: {val}" if val else "", f"checkpoint: {self.out_dir}") if x)


def build_datasets(recipe: Recipe, out_dir: Path | None) -> tuple[Any, Any, Any]:
    """Validate the manifest (quarantine written to ``out_dir``) and return (report, train set, val set)."""
    from medfuse.data import ManifestDataset, load_data_config, validate_manifest

    cfg = _only_used_inputs(load_data_config(recipe.data.columns or None, manifest=recipe.data.manifest), recipe)
    quarantine = (out_dir / "quarantine.csv") if out_dir is not None else None
    if recipe.data.validate:
        source: Any = validate_manifest(recipe.data.manifest, cfg, quarantine_path=quarantine,
                                        decode=recipe.data.decode_check)
        log.info(source.summary())
    else:
        source = recipe.data.manifest
    common = {"cache_dir": recipe.data.cache_dir, "max_rows": recipe.data.max_rows}
    train = ManifestDataset(source, cfg, split=recipe.data.train_split, train=True, **common)
    if len(train) == 0:
        raise ConfigError(f"data.train_split: no rows in split '{recipe.data.train_split}' of {recipe.data.manifest}")
    val = None
    if recipe.data.val_split:
        val = ManifestDataset(source, cfg, split=recipe.data.val_split, train=False, classes=train.classes, **common)
    return source, train, val


INPUT_ROLES = {"image": None, "text": None, "vitals": [], "signal": None, "audio": None, "video": None}


def _only_used_inputs(cfg: Any, recipe: Recipe) -> Any:
    """Return ``cfg`` without the input columns a diagnosis model has no encoder for (nothing read, nothing checked).

    A vitals-only model then neither decodes images nor quarantines rows for a broken image it never uses.
    """
    import dataclasses

    model = recipe.model or {}
    encoders = model.get("encoders") if isinstance(model, dict) else None
    if recipe.task != "classification" or model.get("kind", "diagnosis") != "diagnosis" or not isinstance(encoders, dict):
        return cfg
    used = {str((enc or {}).get("modality") or name) for name, enc in encoders.items()}
    unused = {role: empty for role, empty in INPUT_ROLES.items() if role not in used and getattr(cfg, role)}
    if not unused or len(unused) == sum(1 for r in INPUT_ROLES if getattr(cfg, r)):
        return cfg  # the encoders name none of the inputs (custom modality names): keep everything
    log.info("inputs the model has no encoder for are not read: %s", ", ".join(sorted(unused)))
    return dataclasses.replace(cfg, **unused)


def _complete_model_config(recipe: Recipe, train: Any) -> Any:
    """The model config with what the data decides filled in (head size, vitals width)."""
    from medfuse.models.config import ModelConfig

    raw = json.loads(json.dumps(recipe.model))  # a copy
    if not raw:
        raise ConfigError("model: the recipe names no model (see configs/ for examples)")
    head = raw.get("head")
    if isinstance(head, dict) and train.task in ("binary", "multiclass", "multilabel") and train.classes:
        k = len(train.classes)
        head.setdefault("type", "binary" if train.task == "binary" else train.task)
        if head["type"] == "binary":
            head["num_outputs"] = 1
        elif head.get("num_outputs") in (None, 0, "auto"):
            head["num_outputs"] = k
        elif int(head["num_outputs"]) != k:
            raise ConfigError(f"model.head.num_outputs={head['num_outputs']} but the data has {k} classes {train.classes}")
    for enc in (raw.get("encoders") or {}).values():
        params = enc.setdefault("params", {})
        if enc.get("type") == "vitals_mlp" and params.get("num_features") in (None, 0, "auto"):
            params["num_features"] = len(train.config.vitals)
    return from_dict(ModelConfig, raw, where="model")


def _init_from(model: nn.Module, recipe: Recipe) -> None:
    """Copy weights from ``init.checkpoint`` into ``model`` (prefixes renamed by ``init.map``)."""
    from safetensors.torch import load_file

    from medfuse.models.checkpoint import checkpoint_dir

    path = Path(recipe.init.checkpoint or "")
    file = checkpoint_dir(path) / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"init.checkpoint: {path} has no model.safetensors")
    source = load_file(str(file))
    mapping = recipe.init.map or {"": ""}
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for src_prefix, dst_prefix in mapping.items():
        for key, value in source.items():
            if key.startswith(src_prefix):
                new = dst_prefix + key[len(src_prefix):]
                if new in target and target[new].shape == value.shape:
                    loaded[new] = value
    if not loaded:
        raise ConfigError(f"init.checkpoint: no tensor of {file} fits the model under the mapping {mapping}")
    model.load_state_dict(loaded, strict=False)
    log.info("initialised %d tensors from %s", len(loaded), file)


def build_task(recipe: Recipe, train: Any) -> tuple[Any, nn.Module]:
    """The training task and the module it trains (model + criterion)."""
    from medfuse.models import build_model
    from medfuse.train.tasks import TASKS, TaskModule

    model_cfg = _complete_model_config(recipe, train)
    model = build_model(model_cfg)
    if recipe.init.checkpoint:
        _init_from(model, recipe)
    if train.config.vitals and hasattr(model, "encoders"):
        for name, enc in model.encoders.items():
            if hasattr(enc, "fit_stats") and model_cfg.encoders[name].modality == "vitals":
                enc.fit_stats(torch.from_numpy(np.asarray(train.vitals, dtype=np.float32)))
    if recipe.task == "contrastive":
        task = TASKS.get("contrastive")(recipe.loss)
        return task, TaskModule(model)
    if recipe.task in ("classification", "vqa"):
        if train.task is None:
            raise ConfigError(f"task '{recipe.task}' needs labels: name a label column in data")
        task = TASKS.get("classification")(train.task, train.label_names or [], recipe.loss)
        return task, TaskModule(model, task.criterion())
    cls = TASKS.get(recipe.task)
    task = cls(recipe, train)
    return task, TaskModule(model, task.criterion())


def train_from_config(config: str | Path | Recipe, out_dir: Path, *, overrides: Sequence[str] = (),
                      resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train the recipe at ``config`` into ``out_dir`` and save a checkpoint there; returns a :class:`TrainResult`."""
    recipe = config if isinstance(config, Recipe) else load_recipe(config, overrides)
    seed_everything(recipe.seed)
    device = resolve_device(recipe.train.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    out_dir = Path(out_dir)
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2), encoding="utf-8")
    t0 = time.perf_counter()
    source, train, val = build_datasets(recipe, out_dir if dist.is_main else None)
    if recipe.task == "generation":
        return _train_generation(recipe, train, val, source, out_dir, dist, resume, callbacks, t0)
    task, module = build_task(recipe, train)
    module.model, report = apply_strategy(module.model, recipe.strategy)
    if recipe.train.grad_checkpointing:
        for enc in getattr(module.model, "encoders", {}).values():
            if hasattr(enc, "set_grad_checkpointing"):
                enc.set_grad_checkpointing(True)
    callbacks = list(callbacks) + _tracking_callbacks(recipe, out_dir, source, dist.is_main)
    model, fit_result = fit(
        task, module, train, val, loop=recipe.train, optim=recipe.optim, schedule=recipe.schedule,
        out_dir=out_dir, seed=recipe.seed, resume=resume, dist_info=dist, callbacks=callbacks,
    )
    inner = model.model if hasattr(model, "model") else model
    val_metrics = _last_validation(fit_result)
    data_counts = _data_counts(source, recipe)
    if dist.is_main:
        extra = _finalise(task, inner, val, recipe, train, data_counts)
        if has_lora(inner) and recipe.strategy.merge_lora_on_save:
            inner = merge_lora(inner)
        _save(inner, recipe, train, out_dir, extra, val_metrics)
        _checkpoint_saved(callbacks, out_dir / MODEL_SUBDIR)
    log.info("training took %.1fs", time.perf_counter() - t0)
    return TrainResult(out_dir, fit_result, data_counts, report.kind, report.trainable, report.total, val_metrics)


def _last_validation(result: FitResult) -> dict[str, float]:
    """Return the validation metrics of the saved weights (the selected step's, else the last) without ``val/``."""
    evaluations = [h for h in result.history if any(k.startswith("val/") for k in h)]
    chosen = next((h for h in evaluations if h.get("step") == result.best_step), None) if result.best_step is not None else None
    last = chosen or (evaluations[-1] if evaluations else {})
    return {k[4:]: v for k, v in last.items() if k.startswith("val/")}


def _data_counts(source: Any, recipe: Recipe) -> dict[str, Any]:
    return source.to_dict() if hasattr(source, "to_dict") else {"manifest": recipe.data.manifest}


def _checkpoint_saved(callbacks: Sequence[Any], directory: Path) -> None:
    for cb in callbacks:
        if hasattr(cb, "on_checkpoint_saved"):
            cb.on_checkpoint_saved(directory)


def _train_generation(recipe: Recipe, train: Any, val: Any, source: Any, out_dir: Path, dist: Any, resume: bool,
                      callbacks: Sequence[Any], t0: float) -> TrainResult:
    """Train a vision-language model (``task: generation``) and save it with ``save_vlm`` in ``<out>/model``."""
    from medfuse.train.generative import build_generation, save_generation

    task, module, report = build_generation(recipe, train)
    callbacks = list(callbacks) + _tracking_callbacks(recipe, out_dir, source, dist.is_main)
    model, fit_result = fit(
        task, module, train, val, loop=recipe.train, optim=recipe.optim, schedule=recipe.schedule,
        out_dir=out_dir, seed=recipe.seed, resume=resume, dist_info=dist, callbacks=callbacks,
    )
    val_metrics = _last_validation(fit_result)
    data_counts = _data_counts(source, recipe)
    if dist.is_main:
        save_generation(model, task, recipe, train, out_dir / MODEL_SUBDIR, val_metrics)
        _checkpoint_saved(callbacks, out_dir / MODEL_SUBDIR)
    log.info("training took %.1fs", time.perf_counter() - t0)
    return TrainResult(out_dir, fit_result, data_counts, report.kind, report.trainable, report.total, val_metrics)


def _finalise(task: Any, model: nn.Module, val: Any, recipe: Recipe, train: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Fit the temperature and thresholds on the validation split (classification); returns checkpoint extras."""
    extra: dict[str, Any] = {"data": to_dict(train.config), "train_task": recipe.task, "recipe": to_dict(recipe),
                             "data_counts": data}
    if getattr(train, "audio_config", None) is not None:  # read by predict and serve to prepare recordings
        extra["audio"] = to_dict(train.audio_config)
    if val is None or len(val) == 0 or recipe.task not in ("classification", "vqa") or train.task == "regression":
        return extra
    from medfuse.data import build_loader
    from medfuse.evaluate.metrics.calibration import fit_temperature
    from medfuse.models.inference import predict

    pred = predict(model, build_loader(val, batch_size=recipe.train.eval_batch_size or recipe.train.batch_size), train.task)
    logits = torch.from_numpy(pred.logits)
    labels = torch.from_numpy(pred.labels)
    if train.task == "binary":
        logits = logits.reshape(-1)
    ok = (labels >= 0) if train.task != "multilabel" else torch.isfinite(labels).all(-1)
    if int(ok.sum()) >= 10:
        sigmoid = train.task in ("binary", "multilabel")  # binary logits are (N,): sigmoid scaling
        extra["temperature"] = float(fit_temperature(logits[ok], labels[ok], multilabel=sigmoid))
    return extra


def _save(model: nn.Module, recipe: Recipe, train: Any, out_dir: Path, extra: dict[str, Any],
          val_metrics: dict[str, float]) -> None:
    from medfuse.models import save_checkpoint
    from medfuse.models.card import ModelCard

    cfg = _complete_model_config(recipe, train)
    card = ModelCard(
        intended_use=recipe.evaluate.get("intended_use", "Research use on data like the training manifest; not a medical device."),
        data=f"{recipe.data.manifest} (train split '{recipe.data.train_split}', {len(train)} rows)",
        limitations=recipe.evaluate.get("limitations", "Validated only on the splits reported; performance under "
                                         "site, scanner or population shift is unknown until measured."),
        metrics={k: float(v) for k, v in val_metrics.items()},
    )
    preprocessing = train.preprocessing()
    save_checkpoint(out_dir / MODEL_SUBDIR, model, cfg, label_names=train.label_names if train.task != "regression" else None,
                    preprocessing=preprocessing, card=card, extra=extra)


def _tracking_callbacks(recipe: Recipe, out_dir: Path, source: Any, is_main: bool) -> list[Any]:
    if not is_main or not recipe.tracking or not recipe.tracking.get("enabled", True):
        return []
    try:
        from medfuse.tracking import make_callbacks
    except ImportError:
        log.warning("tracking: medfuse.tracking is unavailable; runs are logged to metrics.jsonl only")
        return []
    return list(make_callbacks(recipe, out_dir, source))
