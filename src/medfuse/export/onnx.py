"""ONNX graphs of a checkpoint: the whole model over tensors, its image and text towers, the fusion classifier.

Every graph has a dynamic batch axis (and a dynamic sequence axis for token inputs) and is checked
against PyTorch with onnxruntime on inputs of batch sizes other than the traced one.

- ``model.onnx`` (diagnosis): ``image`` (B, C, S, S), ``input_ids``/``attention_mask`` (B, L) int64,
  ``vitals`` (B, F) (NaN = missing), and ``<input>_present`` (B,) bool per input -> ``logits`` (B, K),
  ``fused`` (B, D_f). Presence masks replace PyTorch's "key absent" convention: an absent input still
  needs a tensor of the right shape (zeros), and is masked out exactly as in PyTorch.
- ``image_tower.onnx``: ``image`` -> ``features`` (B, D_i) (a dual encoder: the normalised ``embedding``).
- ``text_tower.onnx``: ``input_ids``, ``attention_mask`` -> ``features`` (B, D_t) (dual: ``embedding``).
- ``classifier.onnx`` (diagnosis with a vector fusion): tower ``<input>_features``, raw inputs of the other
  encoders (``vitals``) and presence masks -> ``logits``, ``fused``.

Graphs are traced by the TorchScript exporter (opset 17). A token-level fusion (cross-attention) bakes its
traced batch and sequence sizes into that trace, so its whole-model graph goes through ``torch.export``
(opset 18) instead.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medfuse.core import require
from medfuse.core.errors import ConfigError

log = logging.getLogger(__name__)

OPSET = 17
DYNAMO_OPSET = 18  # the torch.export-based exporter starts at opset 18
TOLERANCE = 1e-4
TEXT_TYPES = ("transformer_text", "hf_text")


@dataclass
class Role:
    """One model input: the batch ``key`` an encoder reads, its ``kind`` (image | text | vector) and shape."""

    encoder: str
    key: str
    kind: str
    shape: tuple[int, ...] = ()

    @property
    def names(self) -> list[str]:
        """The ONNX input names this role takes."""
        if self.kind == "text":
            prefix = "" if self.key == "text" else f"{self.key}_"
            return [f"{prefix}input_ids", f"{prefix}attention_mask"]
        return [self.key]


@dataclass
class Graph:
    """A module to export with its input/output names and example inputs (name -> tensor)."""

    name: str
    module: nn.Module
    inputs: dict[str, Tensor]
    outputs: list[str]
    token_inputs: list[str] = field(default_factory=list)
    exporter: str = "torchscript"

    @property
    def opset(self) -> int:
        return DYNAMO_OPSET if self.exporter == "dynamo" else OPSET


def roles(ckpt: Any) -> list[Role]:
    """Return the inputs of a checkpoint's model; ConfigError for encoders export does not handle."""
    from medfuse.models.encoders.image import TimmImageEncoder
    from medfuse.models.encoders.signal import VitalsMLPEncoder

    model = ckpt.model
    size, channels = _image_shape(ckpt)
    named = model.named_encoders()
    keys = dict(model.inputs) if hasattr(model, "inputs") else {"image": model.image_key, "text": model.text_key}
    out = []
    for name, encoder in named.items():
        kind_name = ckpt.config.encoders[name].type
        if isinstance(encoder, TimmImageEncoder):
            out.append(Role(name, keys[name], "image", (channels, size, size)))
        elif kind_name in TEXT_TYPES:
            out.append(Role(name, keys[name], "text"))
        elif isinstance(encoder, VitalsMLPEncoder):
            out.append(Role(name, keys[name], "vector", (int(encoder.num_features),)))
        else:
            raise ConfigError(f"export: encoder '{name}' ({kind_name}) is not exportable yet; "
                              f"ONNX export handles timm image, {', '.join(TEXT_TYPES)} and vitals_mlp encoders")
    return out


def _image_shape(ckpt: Any) -> tuple[int, int]:
    from medfuse.index.embed import inference_data_config

    cfg = inference_data_config(ckpt)
    return int(cfg.image_size), int(cfg.channels)


def example_inputs(role: Role, encoder: Any, batch: int, seed: int = 0) -> dict[str, Tensor]:
    """Return example tensors for ``role`` at ``batch`` size (texts tokenised by the encoder itself)."""
    gen = torch.Generator().manual_seed(seed)
    if role.kind == "image":
        return {role.names[0]: torch.randn(batch, *role.shape, generator=gen)}
    if role.kind == "vector":
        values = torch.randn(batch, *role.shape, generator=gen)
        values[0, 0] = float("nan")  # a missing value, as in real vitals
        return {role.names[0]: values}
    words = ["effusion", "no", "consolidation", "right", "lower", "lobe", "normal", "heart", "size", "opacity"]
    texts = [" ".join(words[(i + j * 3) % len(words)] for j in range(2 + 3 * i)) for i in range(batch)]
    tokens = encoder.tokenize(texts)
    return dict(zip(role.names, (tokens["input_ids"].long(), tokens["attention_mask"].long())))


class DiagnosisGraph(nn.Module):
    """A diagnosis model over positional tensors (see the module docstring): returns ``(logits, fused)``."""

    def __init__(self, model: nn.Module, model_roles: Sequence[Role]) -> None:
        super().__init__()
        self.model: Any = model
        self.roles = list(model_roles)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        batch: dict[str, Any] = {}
        present: dict[str, Tensor] = {}
        position = 0
        for role in self.roles:
            if role.kind == "text":
                batch[role.key] = {"input_ids": tensors[position], "attention_mask": tensors[position + 1]}
                position += 2
            else:
                batch[role.key] = tensors[position]
                position += 1
        for role in self.roles:
            present[role.key] = tensors[position]
            position += 1
        batch["present"] = present
        out = self.model(batch)
        return out.logits, out.fused


class TokenDiagnosisGraph(DiagnosisGraph):
    """:class:`DiagnosisGraph` for token-level fusions, for the ``torch.export`` exporter.

    ``DiagnosisModel`` skips an encoder when no sample of the batch has its input, a branch on data that
    ``torch.export`` cannot trace; every input is given here, so every encoder runs, and absent samples'
    tokens are zeroed exactly as ``DiagnosisModel.forward`` zeroes them.
    """

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        values: dict[str, Any] = {}
        present: dict[str, Tensor] = {}
        position = 0
        for role in self.roles:
            if role.kind == "text":
                values[role.encoder] = {"input_ids": tensors[position], "attention_mask": tensors[position + 1]}
                position += 2
            else:
                values[role.encoder] = tensors[position]
                position += 1
        for role in self.roles:
            present[role.encoder] = tensors[position].bool()
            position += 1
        tokens: dict[str, Tensor] = {}
        token_masks: dict[str, Tensor] = {}
        for role in self.roles:
            out = self.model.encoders[role.encoder](values[role.encoder])
            seq = out.tokens if out.tokens is not None else out.pooled.unsqueeze(1)
            keep = present[role.encoder].view(-1, 1, 1)
            tokens[role.encoder] = torch.where(keep, seq, torch.zeros((), dtype=seq.dtype))
            if out.token_mask is not None:
                token_masks[role.encoder] = out.token_mask
        fused = self.model.fusion(tokens, present, token_masks=token_masks)
        return self.model.head(fused), fused


class ClassifierGraph(nn.Module):
    """Fusion + head of a diagnosis model over tower features, raw vector inputs and presence masks."""

    def __init__(self, model: nn.Module, model_roles: Sequence[Role]) -> None:
        super().__init__()
        self.model: Any = model
        self.roles = list(model_roles)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        count = len(self.roles)
        values, masks = tensors[:count], tensors[count:]
        features: dict[str, Tensor] = {}
        present: dict[str, Tensor] = {}
        for role, value, mask in zip(self.roles, values, masks):
            pooled = value if role.kind in ("image", "text") else self.model.encoders[role.encoder](value).pooled
            keep = mask.bool()
            # absent inputs contribute zeros, exactly as DiagnosisModel.forward does
            features[role.encoder] = torch.where(keep.view(-1, 1), pooled, torch.zeros((), dtype=pooled.dtype))
            present[role.encoder] = keep
        fused = self.model.fusion(features, present)
        return self.model.head(fused), fused


class TowerGraph(nn.Module):
    """One tower: pooled features, or for a dual encoder the projected, L2-normalised embedding."""

    def __init__(self, model: nn.Module, encoder: nn.Module, projection: nn.Module | None, text: bool) -> None:
        super().__init__()
        self.model = model
        self.encoder: Any = encoder
        self.projection: Any = projection
        self.text = text

    def forward(self, *tensors: Tensor) -> Tensor:
        inputs: Any = {"input_ids": tensors[0], "attention_mask": tensors[1]} if self.text else tensors[0]
        pooled = self.encoder(inputs).pooled
        if self.projection is None:
            return pooled
        return F.normalize(self.projection(pooled), dim=-1)


def graphs_for(ckpt: Any, batch: int = 2) -> list[Graph]:
    """Return the graphs to export for a loaded checkpoint, with example inputs at ``batch``."""
    model = ckpt.model.eval()
    model_roles = roles(ckpt)
    encoders = model.named_encoders()
    examples = {r.encoder: example_inputs(r, encoders[r.encoder], batch, seed=i) for i, r in enumerate(model_roles)}
    dual = ckpt.config.kind == "dual_encoder"
    out: list[Graph] = []
    for role in model_roles:
        if role.kind not in ("image", "text"):
            continue
        projection = (model.image_projection if role.kind == "image" else model.text_projection) if dual else None
        tower = TowerGraph(model, encoders[role.encoder], projection, role.kind == "text")
        out.append(Graph(f"{role.kind}_tower", tower, dict(examples[role.encoder]),
                         ["embedding" if dual else "features"], role.names if role.kind == "text" else []))
    if dual:
        return out
    present = {f"{r.key}_present": torch.ones(batch, dtype=torch.bool) for r in model_roles}
    first = next(iter(present))
    present[first][-1] = False  # one sample without its first input
    tokens = [n for r in model_roles if r.kind == "text" for n in r.names]
    inputs = {k: v for r in model_roles for k, v in examples[r.encoder].items()} | present
    if getattr(model, "uses_tokens", False):
        # attention over tokens does not trace with dynamic shapes in the TorchScript exporter
        out.insert(0, Graph("model", TokenDiagnosisGraph(model, model_roles), inputs, ["logits", "fused"], tokens,
                            exporter="dynamo"))
    else:
        out.insert(0, Graph("model", DiagnosisGraph(model, model_roles), inputs, ["logits", "fused"], tokens))
    if not getattr(model, "uses_tokens", False):
        with torch.no_grad():
            feats = {}
            for g in out[1:]:
                feats[g.name.split("_")[0]] = g.module(*g.inputs.values())
        classifier_inputs: dict[str, Tensor] = {}
        for role in model_roles:
            if role.kind in ("image", "text"):
                classifier_inputs[f"{role.key}_features"] = feats[role.kind]
            else:
                classifier_inputs.update(examples[role.encoder])
        out.append(Graph("classifier", ClassifierGraph(model, model_roles), classifier_inputs | present,
                         ["logits", "fused"]))
    return out


def export_graph(graph: Graph, path: Path) -> None:
    """Write ``graph`` to ``path`` as ONNX (opset 17, or 18 for ``torch.export``) with dynamic batch (and
    sequence) axes."""
    require("onnx", extra="onnx", purpose="ONNX export")
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in [*graph.inputs, *graph.outputs]}
    for name in graph.token_inputs:
        axes[name] = {0: "batch", 1: "sequence"}
    path.parent.mkdir(parents=True, exist_ok=True)
    if graph.exporter == "dynamo":
        _export_dynamo(graph, path)
        return
    with warnings.catch_warnings():
        # the tracer warns about Python branches on shapes and presence; they are decided the same way for
        # every input the graph accepts (all inputs given, masks applied with torch.where)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(graph.module.eval(), tuple(graph.inputs.values()), str(path), input_names=list(graph.inputs),
                          output_names=graph.outputs, dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)


def _export_dynamo(graph: Graph, path: Path) -> None:
    from torch.export import Dim

    require("onnxscript", extra="onnx", purpose="ONNX export of attention fusions")
    batch, sequence = Dim("batch", min=1, max=4096), Dim("sequence", min=2, max=4096)
    # one spec per positional input (the graphs take ``*tensors``), in input order
    shapes = tuple({0: batch, 1: sequence} if name in graph.token_inputs else {0: batch} for name in graph.inputs)
    with warnings.catch_warnings():
        # torch.export notes that axes sharing a name are merged (wanted: one batch axis across inputs)
        warnings.filterwarnings("ignore", "# The axis name", UserWarning)
        torch.onnx.export(graph.module.eval(), tuple(graph.inputs.values()), str(path), input_names=list(graph.inputs),
                          output_names=graph.outputs, dynamic_shapes=(shapes,), opset_version=DYNAMO_OPSET, dynamo=True,
                          verbose=False, external_data=False)


def session(path: Path, threads: int | None = None) -> Any:
    """Return an onnxruntime CPU session for ``path``."""
    ort = require("onnxruntime", extra="onnx", purpose="running ONNX models")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def feeds_of(inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in inputs.items()}


@torch.no_grad()
def max_abs_diff(graph: Graph, path: Path, batches: Sequence[Mapping[str, Tensor]]) -> float:
    """Return the largest |ONNX - PyTorch| over every output of ``batches`` (NaN-free outputs expected)."""
    sess = session(path)
    worst = 0.0
    for inputs in batches:
        expected = graph.module(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = sess.run(graph.outputs, feeds_of(inputs))
        for e, g in zip(expected, got):
            worst = max(worst, float(np.max(np.abs(e.float().numpy() - g))) if g.size else 0.0)
    return worst


def resized_inputs(graph: Graph, batch: int, seed: int, extra_tokens: int = 0) -> dict[str, Tensor]:
    """Return ``graph``'s example inputs regrown to ``batch`` rows (rows repeated, floats jittered) and token
    inputs lengthened by ``extra_tokens`` padding positions (id 0, mask 0), to exercise the dynamic axes."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, value in graph.inputs.items():
        rows = value[torch.arange(batch) % value.shape[0]].clone()
        if rows.is_floating_point():
            rows = torch.where(torch.isnan(rows), rows, rows + 0.1 * torch.randn(rows.shape, generator=gen))
        if name in graph.token_inputs and extra_tokens:
            rows = torch.cat([rows, rows.new_zeros(rows.shape[0], extra_tokens)], dim=1)
        out[name] = rows
    return out
