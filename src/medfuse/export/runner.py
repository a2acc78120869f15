"""``export_checkpoint``: ONNX graphs, their parity with PyTorch, int8 variants and what they cost."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfuse.core.errors import ConfigError
from medfuse.export.onnx import (
    TOLERANCE,
    Graph,
    export_graph,
    graphs_for,
    max_abs_diff,
    resized_inputs,
    roles,
    session,
)
from medfuse.export.quantize import (
    latency_ms,
    manifest_feeds,
    metrics_of,
    quantize_dynamic_file,
    quantize_static_file,
    run_feeds,
    torch_logits,
)

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
CALIBRATION_ROWS, EVAL_ROWS = 64, 512


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "onnx", int8: bool = False,
                      calibration_manifest: str | Path | None = None, *, threads: int = 1,
                      latency_budget_s: float = 1.0) -> dict[str, Any]:
    """Export a checkpoint to ONNX under ``out``; return (and write as ``export.json``) what was written.

    Each graph's largest difference from PyTorch on fresh inputs of batch sizes 1 (with a longer token
    sequence) and 3 is reported
    (``max_abs_diff``, ``within_tolerance`` for 1e-4). With ``int8``, every graph also gets a dynamically
    quantized ``*.int8.onnx``; with a ``calibration_manifest`` the whole-model graph also gets a statically
    quantized ``model.int8-static.onnx`` calibrated on its training rows, and PyTorch, ONNX and int8 are
    compared on its validation rows (accuracy, AUROC). Sizes and CPU latency (batch 1 and 8, ``threads``
    threads for PyTorch and onnxruntime alike; one thread is the comparison least disturbed by other load;
    about ``latency_budget_s`` seconds per measurement) are reported. Undefined metrics (a label with one
    class in the rows) are null.
    """
    from medfuse.index.embed import open_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"fmt: unknown export format '{fmt}'; known: {', '.join(FORMATS)}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads: expected an integer >= 1, got {threads!r}")
    if calibration_manifest is not None and not int8:
        log.info("a calibration manifest without int8: the manifest is used to compare PyTorch and ONNX only")
    started = time.perf_counter()
    ckpt = open_checkpoint(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    graphs = graphs_for(ckpt)
    report: dict[str, Any] = {"format": "medfuse-onnx", "opset": min(g.opset for g in graphs), "tolerance": TOLERANCE,
                              "checkpoint": str(ckpt.path), "model_kind": ckpt.config.kind, "graphs": {}}
    for graph in graphs:
        path = out / f"{graph.name}.onnx"
        export_graph(graph, path)
        checks = [resized_inputs(graph, 1, seed=1, extra_tokens=3), resized_inputs(graph, 3, seed=2)]
        diff = max_abs_diff(graph, path, checks)
        report["graphs"][graph.name] = {"file": path.name, "bytes": path.stat().st_size, "opset": graph.opset,
                                        "exporter": graph.exporter, "inputs": _describe(graph.inputs),
                                        "outputs": graph.outputs, "max_abs_diff": diff, "within_tolerance": diff <= TOLERANCE}
        if diff > TOLERANCE:
            log.warning("%s: ONNX differs from PyTorch by %.3g (> %.0e)", path.name, diff, TOLERANCE)
    report.update(_preprocessing(ckpt, out))
    main = graphs[0]
    if int8:
        report["int8"] = _int8(ckpt, graphs, out)
    if calibration_manifest is not None:
        if ckpt.config.kind == "diagnosis":
            report["evaluation"] = _evaluate(ckpt, main, out, Path(calibration_manifest), int8)
        else:
            log.warning("calibration manifest ignored: metric comparison and static int8 cover diagnosis models")
    if int8:
        report["latency_ms"] = _latencies(main, out, report["int8"], threads, latency_budget_s)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report = _finite(report)
    (out / "export.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {**report, "out": str(out)}


def _finite(value: Any) -> Any:
    """Return ``value`` with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _describe(inputs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    return [{"name": k, "dtype": str(v.dtype).replace("torch.", ""), "shape": ["batch", *v.shape[1:]]}
            for k, v in inputs.items()]


def _preprocessing(ckpt: Any, out: Path) -> dict[str, Any]:
    """Return how to prepare inputs (image normalisation, tokenizer files written next to the graphs)."""
    from medfuse.evaluate.tasks.base import output_names, threshold_values
    from medfuse.index.embed import inference_data_config
    from medfuse.models.encoders.text import ByteTokenizer

    cfg = inference_data_config(ckpt)
    mean, std = cfg.norm_stats()
    info: dict[str, Any] = {"preprocessing": {"image_size": cfg.image_size, "channels": cfg.channels, "resize": cfg.resize,
                                              "window": cfg.window, "mean": mean, "std": std}}
    for role in roles(ckpt):
        if role.kind != "text":
            continue
        encoder = ckpt.model.named_encoders()[role.encoder]
        tokenizer = encoder.tokenizer
        if isinstance(tokenizer, ByteTokenizer):
            spec = {"type": "byte", "pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id,
                    "offset": tokenizer.offset, "vocab_size": tokenizer.vocab_size, "max_length": encoder.max_length}
            (out / "tokenizer.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
            info["tokenizer"] = {"file": "tokenizer.json", **spec}
        else:
            folder = out / "tokenizer"
            shutil.rmtree(folder, ignore_errors=True)
            tokenizer.save_pretrained(str(folder))
            info["tokenizer"] = {"type": "huggingface", "dir": folder.name, "max_length": encoder.max_length}
    head = ckpt.config.head
    if head is not None:
        names = output_names(ckpt.label_names, head.num_outputs)
        info.update(task=head.type, labels=names, temperature=float(ckpt.extra.get("temperature") or 1.0),
                    thresholds=threshold_values(ckpt.thresholds, names, head.num_outputs),
                    vitals=list(cfg.vitals))
    return info


def _int8(ckpt: Any, graphs: list[Graph], out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"method": "dynamic (onnxruntime quantize_dynamic, int8 weights)", "graphs": {}}
    for graph in graphs:
        source, target = out / f"{graph.name}.onnx", out / f"{graph.name}.int8.onnx"
        quantize_dynamic_file(source, target)
        check = resized_inputs(graph, 3, seed=3)
        result["graphs"][graph.name] = {
            "file": target.name, "bytes_fp32": source.stat().st_size, "bytes_int8": target.stat().st_size,
            "size_ratio": round(target.stat().st_size / source.stat().st_size, 4),
            "max_abs_diff_vs_fp32": max_abs_diff(graph, target, [check]),
        }
    return result


def _latencies(graph: Graph, out: Path, int8: dict[str, Any], threads: int, budget_s: float) -> dict[str, Any]:
    """Return CPU latency (ms) of PyTorch, ONNX fp32 and ONNX int8 for the first graph at batch 1 and 8."""
    files = {"onnx_fp32": out / f"{graph.name}.onnx", "onnx_int8": out / int8["graphs"][graph.name]["file"]}
    if (out / "model.int8-static.onnx").is_file() and graph.name == "model":
        files["onnx_int8_static"] = out / "model.int8-static.onnx"
    sessions = {name: session(path, threads=threads) for name, path in files.items()}
    result: dict[str, Any] = {"graph": graph.name, "threads": threads}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch in (1, 8):
            inputs = resized_inputs(graph, batch, seed=4)
            feeds = {k: v.numpy() for k, v in inputs.items()}
            row: dict[str, Any] = {}
            with torch.no_grad():
                row["pytorch"] = latency_ms(functools.partial(graph.module, *inputs.values()), budget_s=budget_s)
            for name, sess in sessions.items():
                row[name] = latency_ms(functools.partial(sess.run, None, feeds), budget_s=budget_s)
            result[f"batch_{batch}"] = row
    finally:
        torch.set_num_threads(previous)
    return result


def _evaluate(ckpt: Any, graph: Graph, out: Path, manifest: Path, int8: bool) -> dict[str, Any]:
    """Return accuracy/AUROC of PyTorch, ONNX and int8 on the manifest's validation rows (and calibrate)."""
    from medfuse.evaluate.tasks.base import output_names, threshold_values

    model_roles = roles(ckpt)
    feeds, labels, task, split = manifest_feeds(ckpt, manifest, model_roles, split="eval", max_rows=EVAL_ROWS)
    head = ckpt.config.head
    names = output_names(ckpt.label_names, head.num_outputs)
    cut = threshold_values(ckpt.thresholds, names, head.num_outputs)
    temperature = float(ckpt.extra.get("temperature") or 1.0)
    logits = {"pytorch": torch_logits(graph.module, feeds), "onnx_fp32": run_feeds(out / "model.onnx", feeds)}
    if int8:
        logits["onnx_int8"] = run_feeds(out / "model.int8.onnx", feeds)
        calibration, _, _, calib_split = manifest_feeds(ckpt, manifest, model_roles, split="train", max_rows=CALIBRATION_ROWS)
        quantize_static_file(out / "model.onnx", out / "model.int8-static.onnx", calibration)
        logits["onnx_int8_static"] = run_feeds(out / "model.int8-static.onnx", feeds)
    rows = int(sum(len(next(iter(f.values()))) for f in feeds))
    result: dict[str, Any] = {"manifest": str(manifest), "split": split, "rows": rows, "task": task,
                              "metrics": {k: metrics_of(v, labels, task, temperature, cut) for k, v in logits.items()},
                              "max_abs_logit_diff": {k: float(np.max(np.abs(v - logits["pytorch"])))
                                                     for k, v in logits.items() if k != "pytorch"}}
    if int8:
        result["calibration"] = {"split": calib_split, "rows": int(sum(len(next(iter(f.values()))) for f in calibration))}
        static = out / "model.int8-static.onnx"
        result["static_bytes"] = static.stat().st_size
        base = result["metrics"]["pytorch"]
        result["drop"] = {variant: {m: round(base[m] - v, 6) for m, v in values.items() if m in base}
                          for variant, values in result["metrics"].items() if variant != "pytorch"}
    return result
