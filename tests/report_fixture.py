"""A realistic results dictionary for report tests, computed from seeded random predictions.

Every number comes from ``medfuse.evaluate.metrics`` (or a timing) applied to generated predictions, so the
report is exercised with values of the shapes and ranges a real evaluation writes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

import medfuse
from medfuse.evaluate.explain import overlay, png_base64
from medfuse.evaluate.metrics import (
    accuracy,
    auroc,
    bootstrap_ci,
    calibration_metrics,
    classification_metrics,
    clinical_efficacy,
    confusion_matrix,
    generation_metrics,
    paired_bootstrap_test,
    pr_curve,
    reliability_diagram,
    retrieval_metrics,
    roc_curve,
    rouge_l,
    vqa_accuracy,
    vqa_score,
)
from medfuse.models.card import ModelCard

LABELS = ["normal", "pneumonia", "effusion"]
FINDINGS = [
    "no acute cardiopulmonary process.",
    "right lower lobe consolidation consistent with pneumonia.",
    "small left pleural effusion.",
    "heart size is normal. lungs are clear.",
    "moderate cardiomegaly without pulmonary edema.",
    "no pneumothorax. no pleural effusion.",
]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _logits(rng: np.random.Generator, y: np.ndarray, signal: float, scale: float = 1.8) -> np.ndarray:
    z = rng.normal(0.0, 1.0, (len(y), len(LABELS)))
    z[np.arange(len(y)), y] += signal
    return z * scale


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    return auroc(y, p, task="multiclass")


def _with_ci(fn: Any, y: np.ndarray, p: np.ndarray, n_resamples: int, **kwargs: Any) -> dict[str, Any]:
    ci = bootstrap_ci(fn, y, p, n_resamples=n_resamples, seed=0, metric_kwargs=kwargs)
    return {"value": ci.value, "ci95": [ci.lo, ci.hi]}


def _temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Return the temperature minimising the NLL over a fine log-spaced grid (Guo et al. 2017)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 400))
    nll = [-np.log(_softmax(logits / t)[np.arange(len(y)), y]).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def _eod(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> float:
    """Equalised-odds difference: the largest TPR or FPR range across groups, over one-vs-rest classes."""
    worst = 0.0
    for k in range(len(LABELS)):
        tprs, fprs = [], []
        for g in np.unique(groups):
            sel = groups == g
            pos, neg = sel & (y == k), sel & (y != k)
            if pos.any() and neg.any():
                tprs.append(float((pred[pos] == k).mean()))
                fprs.append(float((pred[neg] == k).mean()))
        if tprs:
            worst = max(worst, max(tprs) - min(tprs), max(fprs) - min(fprs))
    return worst


def _subgroups(y: np.ndarray, probs: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    whole = {"accuracy": accuracy(y, probs.argmax(1)), "auroc": _auroc(y, probs)}
    out: dict[str, Any] = {}
    for column, groups in columns.items():
        entry: dict[str, Any] = {}
        for g in np.unique(groups):
            sel = groups == g
            values = {"accuracy": accuracy(y[sel], probs[sel].argmax(1)), "auroc": _auroc(y[sel], probs[sel])}
            entry[str(g)] = {
                "n": int(sel.sum()),
                "small": bool(sel.sum() < 30),
                "metrics": {k: {"value": v, "ci95": None} for k, v in values.items()},
                "gap": {k: values[k] - whole[k] for k in values},
            }
        entry["equalized_odds_difference"] = _eod(y, probs.argmax(1), groups)
        out[column] = entry
    return out


def _robustness(rng: np.random.Generator, y: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    fallback = {"image": _softmax(_logits(rng, y, 0.9)), "text": _softmax(_logits(rng, y, 1.3))}
    rates = [0.0, 0.25, 0.5, 0.75, 1.0]
    missing = {}
    for modality, alone in fallback.items():
        values = []
        for rate in rates:
            hidden = rng.random(len(y)) < rate
            values.append(_auroc(y, np.where(hidden[:, None], alone, _softmax(logits))))
        missing[modality] = {"rates": rates, "values": values, "metric": "auroc"}
    severities = [0, 1, 2, 3, 4, 5]
    corruption = {
        kind: {"severity": severities, "metric": "auroc",
               "values": [_auroc(y, _softmax(logits + rng.normal(0, strength * s, logits.shape))) for s in severities]}
        for kind, strength in (("gaussian_noise", 0.8), ("blur", 0.5), ("contrast", 0.3))
    }
    levels = [0.0, 0.1, 0.2, 0.4]
    noise = {"typos": {"levels": levels, "metric": "auroc",
                       "values": [_auroc(y, _softmax(logits + rng.normal(0, 6 * lv, logits.shape))) for lv in levels]}}
    return {"missing_modality": missing, "image_corruption": corruption, "text_noise": noise}


def _efficiency() -> dict[str, Any]:
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 3)).eval()
    batch = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(15):
            start = time.perf_counter()
            net(batch)
            times.append((time.perf_counter() - start) * 1e3)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    p50, p95 = np.percentile(times, [50, 95])
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "flops": 2 * sum(m.in_features * m.out_features for m in linear),
        "latency_ms": {"p50": float(p50), "p95": float(p95)},
        "throughput": 32 / (p50 / 1e3),
        "memory_mb": sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20,
        "batch_size": 32,
        "device": "cpu",
    }


def _modality_comparison(y: np.ndarray, fused: np.ndarray, rng: np.random.Generator, n_resamples: int) -> dict[str, Any]:
    singles = {"image only": _softmax(_logits(rng, y, 0.9)), "text only": _softmax(_logits(rng, y, 1.3))}
    task = {"task": "multiclass"}
    rows = [{"name": "fused", **_with_ci(auroc, y, fused, n_resamples, **task), "p_value": None}]
    for name, probs in singles.items():
        row = _with_ci(auroc, y, probs, n_resamples, **task)
        row["p_value"] = paired_bootstrap_test(auroc, y, fused, probs, n_resamples=n_resamples, seed=0, metric_kwargs=task)
        rows.append({"name": name, **row})
    return {"metric": "auroc", "rows": rows}


def _gradcam(rng: np.random.Generator, probs: np.ndarray) -> list[dict[str, Any]]:
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    chest = np.clip(0.75 - 1.6 * ((xx - 0.5) ** 2 + 0.6 * (yy - 0.55) ** 2), 0, 1)
    entries = []
    for i in range(3):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        cam = np.exp(-(((np.mgrid[0:8, 0:8] / 7.0 - np.array([cy, cx])[:, None, None]) ** 2).sum(0)) / 0.05)
        image = np.clip(chest + rng.normal(0, 0.04, chest.shape), 0, 1)
        k = int(probs[i].argmax())
        entries.append({"title": f"case {i + 1}", "image_png": png_base64(image), "overlay_png": png_base64(overlay(image, cam)),
                        "label": LABELS[k], "prob": float(probs[i, k])})
    return entries


def _retrieval(rng: np.random.Generator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n = 36
    texts = [FINDINGS[i % len(FINDINGS)] for i in range(n)]
    groups = np.array([FINDINGS.index(t) for t in texts])
    centres = rng.normal(0, 1, (len(FINDINGS), 16))
    image_emb = centres[groups] + rng.normal(0, 1.7, (n, 16))
    text_emb = centres[groups] + rng.normal(0, 0.3, (n, 16))
    metrics = retrieval_metrics(image_emb, text_emb, groups, groups)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sims = unit(image_emb) @ unit(text_emb).T
    examples = []
    for q in (0, 7):
        top = np.argsort(-sims[q])[:5]
        examples.append({"direction": "image → text", "query": {"text": f"image #{q}"},
                         "hits": [{"text": texts[j], "score": float(sims[q, j]), "relevant": bool(groups[j] == groups[q])}
                                  for j in top]})
    return metrics, examples


def _generation(rng: np.random.Generator) -> tuple[dict[str, float], list[dict[str, Any]]]:
    references = [FINDINGS[i % len(FINDINGS)] for i in range(12)]
    generated = []
    for ref in references:
        words = ref.split()
        if rng.random() < 0.5:
            words[int(rng.integers(len(words)))] = "mild"
        generated.append(" ".join(words) if rng.random() < 0.8 else FINDINGS[int(rng.integers(len(FINDINGS)))])
    metrics = {**generation_metrics(generated, references), **clinical_efficacy(generated, references)}
    examples = [{"generated": g, "reference": r, "scores": {"rouge_l": rouge_l([g], [r])}}
                for g, r in zip(generated[:3], references[:3])]
    return metrics, examples


def _vqa(rng: np.random.Generator) -> tuple[dict[str, float], list[dict[str, Any]]]:
    bank = [("is there a pleural effusion?", "yes", "CLOSED"), ("is the heart enlarged?", "no", "CLOSED"),
            ("which lobe shows consolidation?", "right lower lobe", "OPEN"), ("what modality is this?", "x-ray", "OPEN")]
    questions = [bank[i % len(bank)] for i in range(20)]
    preds = [a if rng.random() < 0.7 else ("no" if t == "CLOSED" else "left upper lobe") for _, a, t in questions]
    metrics = vqa_accuracy(preds, [a for _, a, _ in questions], [t for _, _, t in questions])
    examples = [{"question": q, "answer": a, "prediction": p, "answer_type": t, "score": vqa_score(p, a)}
                for (q, a, t), p in list(zip(questions, preds))[:6]]
    return metrics, examples


def _few_shot(rng: np.random.Generator, y: np.ndarray) -> dict[str, Any]:
    ks = [1, 2, 4, 8, 16]
    values, cis = [], []
    for k in ks:
        episodes = [_auroc(y, _softmax(_logits(rng, y, 2.0 * k / (k + 4)))) for _ in range(5)]
        values.append(float(np.mean(episodes)))
        cis.append([float(v) for v in np.percentile(episodes, [2.5, 97.5])])
    return {"metric": "auroc", "k": ks, "values": values, "ci95": cis}


def build_results(seed: int = 0, n: int = 240, n_resamples: int = 200) -> dict[str, Any]:
    """Return a results dictionary of the ``results.json`` schema, computed from seeded predictions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    logits = _logits(rng, y, 1.6)
    probs = _softmax(logits)
    metrics: dict[str, Any] = {k: {"value": v, "ci95": None}
                               for k, v in classification_metrics(y, probs, task="multiclass", labels=LABELS).items()}
    metrics["accuracy"] = _with_ci(accuracy, y, probs.argmax(1), n_resamples)
    metrics["auroc"] = _with_ci(auroc, y, probs, n_resamples, task="multiclass")
    metrics.update({k: {"value": v, "ci95": None} for k, v in calibration_metrics(y, probs, task="multiclass", n_bins=10).items()})
    temperature = _temperature(logits, y)
    rel = reliability_diagram(y, probs, n_bins=10, task="multiclass")
    roc, pr = {}, {}
    for k, label in enumerate(LABELS):
        r, p = roc_curve(y == k, probs[:, k]), pr_curve(y == k, probs[:, k])
        roc[label] = {"fpr": r.fpr.tolist(), "tpr": r.tpr.tolist(), "auc": metrics[f"auroc/{label}"]["value"]}
        pr[label] = {"recall": p.recall.tolist(), "precision": p.precision.tolist(), "ap": metrics[f"auprc/{label}"]["value"]}
    sex = rng.choice(np.array(["female", "male"]), n)
    site = rng.choice(np.array(["site A", "site B", "site C"]), n, p=[0.47, 0.45, 0.08])
    retrieval, retrieval_examples = _retrieval(rng)
    gen_metrics, gen_examples = _generation(rng)
    vqa_metrics, vqa_examples = _vqa(rng)
    wrap = lambda d: {k: {"value": float(v), "ci95": None} for k, v in d.items()}  # noqa: E731
    card = ModelCard(name="medfuse chest fusion (fixture)", description="Image + report fusion classifier.",
                     intended_use="Research on multimodal chest radiograph triage; not for clinical use.",
                     data="Synthetic chest radiographs with templated reports.",
                     limitations="Synthetic data; site C has few samples & results there are uncertain.",
                     metrics={"auroc": metrics["auroc"]["value"]})
    return {
        "task": "classification",
        "split": "test",
        "n": int(n),
        "metrics": metrics,
        "subgroups": _subgroups(y, probs, {"sex": sex, "site": site}),
        "config": {"model": {"kind": "diagnosis", "fusion": {"type": "gated"}}, "seed": seed},
        "medfuse_version": medfuse.__version__,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "model_card": card.to_dict(),
        "artifacts": {
            "roc": roc,
            "pr": pr,
            "confusion": {"labels": LABELS, "matrix": confusion_matrix(y, probs.argmax(1), num_classes=3).tolist()},
            "reliability": {"confidence": rel.confidence.tolist(), "accuracy": rel.accuracy.tolist(),
                            "count": rel.count.tolist(), "edges": rel.edges.tolist()},
            "temperature": temperature,
            "robustness": _robustness(rng, y, logits),
            "efficiency": _efficiency(),
            "modality_comparison": _modality_comparison(y, probs, rng, n_resamples),
            "gradcam": _gradcam(rng, probs),
            "few_shot": _few_shot(rng, y),
        },
        "tasks": {
            "retrieval": {"metrics": wrap(retrieval), "artifacts": {"retrieval_examples": retrieval_examples}},
            "generation": {"metrics": wrap(gen_metrics), "artifacts": {"generation_examples": gen_examples}},
            "vqa": {"metrics": wrap(vqa_metrics), "artifacts": {"vqa_examples": vqa_examples}},
        },
    }


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def build_task_results(seed: int = 1, n: int = 200) -> dict[str, Any]:
    """Return results laid out as ``medfuse.evaluate``'s runner writes them: every figure inside ``tasks``.

    Classification curves come as ``roc_curves``/``pr_curves`` with a ``per_label`` table, robustness as
    ``curves``, few-shot as ``k_curve`` (mean and s.d. over seeds), the modality comparison as
    ``configurations``, fairness as ``subgroups`` with ``groups``; one task was skipped and one failed.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    logits = _logits(rng, y, 1.4)
    probs = _softmax(logits)
    everything = classification_metrics(y, probs, task="multiclass", labels=LABELS)
    headline = {k: {"value": v, "ci95": None} for k, v in everything.items() if "/" not in k}
    headline["auroc"] = _with_ci(auroc, y, probs, 100, task="multiclass")
    roc_curves, pr_curves, per_label = {}, {}, {}
    for k, label in enumerate(LABELS):
        r, p = roc_curve(y == k, probs[:, k]), pr_curve(y == k, probs[:, k])
        roc_curves[label] = {"fpr": r.fpr.tolist(), "tpr": r.tpr.tolist(), "thresholds": _finite(r.thresholds)}
        pr_curves[label] = {"precision": p.precision.tolist(), "recall": p.recall.tolist(), "prevalence": float((y == k).mean())}
        per_label[label] = {"auroc": everything[f"auroc/{label}"], "auprc": everything[f"auprc/{label}"],
                            "support": int((y == k).sum()), "prevalence": float((y == k).mean())}
    rel = reliability_diagram(y, probs, n_bins=15, task="multiclass")
    temperature = _temperature(logits, y)
    scaled = reliability_diagram(y, _softmax(logits / temperature), n_bins=15, task="multiclass")
    as_dict = lambda d: {"edges": d.edges.tolist(), "confidence": _finite(d.confidence),  # noqa: E731
                         "accuracy": _finite(d.accuracy), "count": d.count.tolist()}
    robust = _robustness(rng, y, logits)
    ks, seeds = [1, 2, 4, 8], 3
    k_metrics: dict[str, dict[str, list[float]]] = {"auroc": {"mean": [], "std": []}, "accuracy": {"mean": [], "std": []}}
    for k in ks:
        runs = [_softmax(_logits(rng, y, 2.0 * k / (k + 4))) for _ in range(seeds)]
        for name, fn in (("auroc", _auroc), ("accuracy", lambda t, p: accuracy(t, p.argmax(1)))):
            values = [fn(y, p) for p in runs]
            k_metrics[name]["mean"].append(float(np.mean(values)))
            k_metrics[name]["std"].append(float(np.std(values, ddof=1)))
    comparison = _modality_comparison(y, probs, rng, 100)
    configurations = [{"name": row["name"].replace(" ", "_"), "kind": "fused" if row["name"] == "fused" else "single_modality",
                       "n": n, "metrics": {"auroc": {"value": row["value"], "ci95": row["ci95"]}}, "p_value": row["p_value"]}
                      for row in comparison["rows"]]
    efficiency = _efficiency()
    sex = rng.choice(np.array(["female", "male"]), n)
    age = rng.choice(np.array(["<40", "40-70", ">70"]), n, p=[0.1, 0.6, 0.3])
    flat = _subgroups(y, probs, {"sex": sex, "age": age})
    subgroups = {column: {"groups": {g: e for g, e in entry.items() if isinstance(e, dict)},
                          "equalized_odds_difference": entry["equalized_odds_difference"], "min_group_size": 30}
                 for column, entry in flat.items()}
    return {
        "task": "classification", "split": "test", "n": n, "metrics": headline, "subgroups": subgroups,
        "config": {"tasks": ["classification", "robustness", "few_shot", "modality_comparison", "efficiency",
                             "fairness", "vqa", "retrieval"]},
        "medfuse_version": medfuse.__version__,
        "tasks": {
            "classification": {"n": n, "metrics": headline, "seconds": 1.5, "artifacts": {
                "task": "multiclass", "labels": LABELS, "per_label": per_label, "roc_curves": roc_curves,
                "pr_curves": pr_curves, "reliability_diagram": as_dict(rel),
                "confusion_matrix": {"labels": LABELS, "matrix": confusion_matrix(y, probs.argmax(1), num_classes=3).tolist()},
                "temperature_scaling": {"split": "val", "n": n, "temperature": temperature,
                                        "reliability_diagram": as_dict(scaled)}}},
            "robustness": {"n": n, "metrics": {}, "artifacts": {"curves": {
                "metric": "auroc", "clean": headline["auroc"]["value"],
                "missing_modality": {m: {"rates": e["rates"], "values": e["values"]}
                                     for m, e in robust["missing_modality"].items()},
                "image_corruptions": {c: {"severities": e["severity"], "values": e["values"]}
                                      for c, e in robust["image_corruption"].items()},
                "text_corruptions": {}}}},
            "few_shot": {"n": n, "metrics": {}, "artifacts": {"k_curve": {"ks": ks, "seeds": seeds, "metrics": k_metrics}}},
            "modality_comparison": {"n": n, "metrics": {}, "artifacts": {"metric": "auroc", "configurations": configurations,
                                                                         "fusion_beats_all": True}},
            "efficiency": {"n": 32, "metrics": {
                "parameters": {"value": efficiency["params"], "ci95": None},
                "gflops_per_sample": {"value": efficiency["flops"] / 32 / 1e9, "ci95": None},
                "latency_ms_p50": {"value": efficiency["latency_ms"]["p50"], "ci95": None},
                "latency_ms_p95": {"value": efficiency["latency_ms"]["p95"], "ci95": None},
                "throughput_per_s": {"value": efficiency["throughput"], "ci95": None}},
                "artifacts": {"device": "cpu", "threads": 2, "latency_ms": [efficiency["latency_ms"]["p50"]] * 3}},
            "fairness": {"n": n, "metrics": {}, "artifacts": {"columns": list(subgroups)}, "subgroups": subgroups},
            "vqa": {"skipped": "VQA scores VQA models; this is a diagnosis model"},
            "retrieval": {"error": "RuntimeError: the text tower ran out of memory"},
        },
        "artifacts": {"results": "results.json", "quarantine": "manifest.quarantine.csv"},
        "model_card": {**ModelCard(name="fixture model", intended_use="Testing the report.").to_dict(),
                       "kind": "diagnosis", "label_names": LABELS, "parameters": efficiency["params"],
                       "versions": {"torch": torch.__version__}},
        "data": {"manifest": "manifest.csv", "read": n + 5, "kept": n, "quarantined": 5},
        "seed": seed,
    }
