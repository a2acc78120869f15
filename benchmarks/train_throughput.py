"""CLIP training throughput: medfuse's dual encoder against open_clip's CLIP of the same size, same run.

Both models are built at equal sizes (image tower: a ViT with CLIP's pre-norm, class-token pooling and a
bias-free patch embedding; text tower: a causal transformer with end-of-text pooling, the same width,
depth, heads, context and vocabulary; linear bias-free projections; a learnable temperature), so their
parameter counts agree (checked: within 1%). Both train on the same batch (random images and tokens,
made once), at the same precision, with AdamW at the same settings: medfuse builds it with
:func:`medfuse.train.loop.build_optimizer` (one-pass fused kernels on CUDA and CPU), open_clip's is
``torch.optim.AdamW`` with torch's default implementation (``foreach`` on CUDA, a per-tensor loop on CPU)
and the parameter groups of open_clip's ``main.py``. ``--before`` adds, in the same rounds, medfuse with
``foreach`` AdamW (``build_optimizer``'s CPU choice before fused), for the before/after of that change. A medfuse step is :class:`medfuse.train.step.TrainStep` over
:class:`medfuse.train.tasks.ContrastiveTask`; an open_clip step is what its ``train_one_epoch`` does
(forward, ``ClipLoss``, backward, ``optimizer.step``, clamp of the logit scale).

After warm-up, rounds alternate between the two (the order flips every round, so a change in machine
load falls on both); each round times ``--steps`` steps of each. The JSON gives the median samples/s
over rounds of each, their ratio, the median of the per-round ratios (robust to load drift), on a CPU
also samples per CPU second of this process (steadier than the wall clock on a shared machine), parameter
counts, FLOPs of one training step counted by ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs),
achieved TFLOP/s, MFU against the GPU's bf16 peak (GPU only) and peak memory of each (CUDA max allocated
on a GPU, peak RSS on a CPU; measured in a separate process per framework unless ``--memory inprocess``).

    python benchmarks/train_throughput.py                       # CPU: ViT-Ti/16 @224 + 4-layer text, batch 64
    python benchmarks/train_throughput.py --image-size 112      # quicker CPU run
    python benchmarks/train_throughput.py --threads 1 --before  # one thread (a loaded machine); before/after
    python benchmarks/train_throughput.py --preset gpu --compile   # GPU: ViT-B/16, batch 256, bf16
    python benchmarks/train_throughput.py --quick               # tiny sizes: a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

FRAMEWORKS = ("medfuse", "open_clip")
BEFORE = "medfuse_before"  # medfuse with foreach AdamW, build_optimizer's CPU default before it chose fused


@dataclass
class Sizes:
    """One CLIP size: both frameworks are built from it."""

    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 192
    vision_layers: int = 12
    vision_heads: int = 3
    text_width: int = 256
    text_layers: int = 4
    text_heads: int = 4
    context: int = 77
    vocab: int = 49408
    embed_dim: int = 256
    batch: int = 64
    timm_arch: str = "vit_tiny_patch16_224"  # widths, depth and heads are set from the fields above


PRESETS: dict[str, Sizes] = {
    # ViT-Ti/16 image tower with a 4-layer text tower: the CPU comparison
    "cpu": Sizes(),
    # open_clip's ViT-B-16 (embed 512; ViT 768 x 12, 12 heads; text 512 x 12, 8 heads)
    "gpu": Sizes(vision_width=768, vision_layers=12, vision_heads=12, text_width=512, text_layers=12,
                 text_heads=8, embed_dim=512, batch=256, timm_arch="vit_base_patch16_224"),
    # a smoke test: seconds on a CPU
    "quick": Sizes(image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=2, text_width=64,
                   text_layers=2, text_heads=2, context=16, vocab=1000, embed_dim=32, batch=8,
                   timm_arch="vit_base_patch8_224"),
}


# ---------------------------------------------------------------------------------------------- models
def build_medfuse(sizes: Sizes) -> nn.Module:
    """Return medfuse's dual encoder (a ``TaskModule``) of ``sizes`` through the model config."""
    from medfuse.models import build_model
    from medfuse.train.tasks import TaskModule

    image = {"type": "timm", "params": {
        "arch": sizes.timm_arch, "img_size": sizes.image_size, "output_tokens": False,
        "model_kwargs": {"embed_dim": sizes.vision_width, "depth": sizes.vision_layers,
                         "num_heads": sizes.vision_heads, "pre_norm": True}}}
    text = {"type": "transformer_text", "params": {
        "width": sizes.text_width, "layers": sizes.text_layers, "heads": sizes.text_heads,
        "max_length": sizes.context, "tokenizer": "byte", "vocab_size": sizes.vocab,
        "pooling": "eos", "causal": True}}
    cfg = {"kind": "dual_encoder", "encoders": {"image": image, "text": text}, "embed_dim": sizes.embed_dim,
           "projection": "linear"}
    return TaskModule(build_model(cfg))


def build_open_clip(sizes: Sizes) -> nn.Module:
    """Return ``open_clip.CLIP`` of ``sizes``."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=sizes.vision_layers, width=sizes.vision_width,
                           head_width=sizes.vision_width // sizes.vision_heads, patch_size=sizes.patch_size,
                           image_size=sizes.image_size)
    text = CLIPTextCfg(context_length=sizes.context, vocab_size=sizes.vocab, width=sizes.text_width,
                       heads=sizes.text_heads, layers=sizes.text_layers)
    return CLIP(sizes.embed_dim, vision_cfg=vision, text_cfg=text)


def make_batch(sizes: Sizes, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Return normalised-looking images ``(B, 3, S, S)`` and token ids ``(B, L)`` ending in end-of-text.

    Ids are drawn from ``[1, vocab - 2]``; the last position holds ``vocab - 1``, the end-of-text id
    (open_clip pools at the largest id, medfuse at the last real token: the same position).
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(sizes.batch, 3, sizes.image_size, sizes.image_size, generator=gen)
    ids = torch.randint(1, sizes.vocab - 1, (sizes.batch, sizes.context), generator=gen)
    ids[:, -1] = sizes.vocab - 1
    return images, ids


def count_params(module: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------- steps
@dataclass
class Runner:
    """A framework's model, its one-step function and the batch it trains on."""

    name: str
    model: nn.Module
    step: Callable[[], Any]
    loss_fn: Callable[[], Tensor]  # forward + loss only, never compiled (FLOP counting)
    optimizer_impl: str


def medfuse_runner(sizes: Sizes, images: Tensor, ids: Tensor, device: torch.device, args: argparse.Namespace) -> Runner:
    """Return medfuse's runner: ``TrainStep`` over ``ContrastiveTask`` with ``build_optimizer``'s AdamW."""
    from medfuse.train.config import OptimConfig
    from medfuse.train.loop import build_optimizer
    from medfuse.train.step import TrainStep, set_grad_checkpointing
    from medfuse.train.tasks import ContrastiveTask

    torch.manual_seed(args.seed)
    module = build_medfuse(sizes).to(device)
    if args.grad_checkpointing:
        set_grad_checkpointing(module, True)
    fused = {"auto": None, "fused": True, "foreach": False}.get(args.medfuse_optimizer)
    optim_cfg = OptimConfig(name="adamw", lr=args.lr, weight_decay=args.weight_decay, fused=fused)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    optimizer = build_optimizer(named, optim_cfg, device)
    impl = "fused" if optimizer.defaults.get("fused") else "foreach" if optimizer.defaults.get("foreach") else "for-loop"
    task = ContrastiveTask({"name": "clip", "local_loss": bool(getattr(args, "local_loss", False))})
    batch: dict[str, Any] = {"image": images.to(device), "text": {"input_ids": ids.to(device)}}
    if args.text_mask:
        batch["text"]["attention_mask"] = torch.ones_like(batch["text"]["input_ids"])
    step = TrainStep(task, module, optimizer, device=device, precision=args.precision, compile=args.compile,
                     clip_grad_norm=args.clip_grad_norm)

    def loss_fn() -> Tensor:
        with common_autocast(device, args.precision):
            return task.loss(module, batch).total

    return Runner("medfuse", module, lambda: step(batch), loss_fn, impl)


def open_clip_runner(sizes: Sizes, images: Tensor, ids: Tensor, device: torch.device, args: argparse.Namespace) -> Runner:
    """Return open_clip's runner: its ``train_one_epoch`` step with ``main.py``'s AdamW groups."""
    from open_clip import ClipLoss

    torch.manual_seed(args.seed)
    model: Any = build_open_clip(sizes).to(device)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    named = list(model.named_parameters())

    def exclude(n: str, p: nn.Parameter) -> bool:  # open_clip main.py
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    groups = [
        {"params": [p for n, p in named if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p) and p.requires_grad], "weight_decay": args.weight_decay},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)  # torch's default kernels
    foreach_default = device.type == "cuda"  # torch picks foreach for CUDA tensors when left unset
    impl = "default (foreach)" if foreach_default else "default (for-loop)"
    loss = ClipLoss()
    train_module: Callable[..., Any] = torch.compile(model) if args.compile else model
    model.train()
    images, ids = images.to(device), ids.to(device)

    def forward_loss(module: Callable[..., Any]) -> Tensor:
        with common_autocast(device, args.precision):
            image_features, text_features, logit_scale = module(images, ids)
            return loss(image_features, text_features, logit_scale)

    def step() -> Tensor:
        optimizer.zero_grad()
        total = forward_loss(train_module)
        total.backward()
        if args.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm, norm_type=2.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        return total.detach()

    return Runner("open_clip", model, step, lambda: forward_loss(model), impl)


def common_autocast(device: torch.device, precision: str) -> Any:
    """The autocast context both frameworks run under (medfuse's :func:`medfuse.train.step.autocast`)."""
    from medfuse.train.step import autocast

    return autocast(device, precision)


def make_runner(name: str, sizes: Sizes, images: Tensor, ids: Tensor, device: torch.device, args: argparse.Namespace) -> Runner:
    """Return the runner of ``name``: ``medfuse``, ``open_clip`` or ``medfuse_before`` (foreach AdamW)."""
    if name == BEFORE:
        runner = medfuse_runner(sizes, images, ids, device, argparse.Namespace(**{**vars(args), "medfuse_optimizer": "foreach"}))
        return dataclasses.replace(runner, name=BEFORE)
    return (medfuse_runner if name == "medfuse" else open_clip_runner)(sizes, images, ids, device, args)


def train_step_flops(runner: Runner) -> int:
    """Return the FLOPs of one forward + backward pass (the optimizer's elementwise work is not counted)."""
    counter = FlopCounterMode(display=False)
    with counter:
        runner.loss_fn().backward()
    runner.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------- measuring
def measure(runners: dict[str, Runner], device: torch.device, args: argparse.Namespace,
            batch: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Return per-round samples per wall second and per CPU second of each runner.

    Warm-up, then alternating timed rounds. CPU seconds are this process's (all its threads), which on a
    shared, loaded machine measure the work of a step more steadily than the wall clock does.
    """
    for runner in runners.values():
        for _ in range(args.warmup):
            runner.step()
        common.synchronize(device)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    cpu_rates: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners)
    for round_index in range(args.rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            cpu_start = time.process_time()
            seconds = common.timed(runners[name].step, device, repeats=args.steps)
            rates[name].append(batch * args.steps / seconds)
            cpu_rates[name].append(batch * args.steps / max(time.process_time() - cpu_start, 1e-9))
    return rates, cpu_rates


def child_memory(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Return the peak memory of ``name``'s training, measured in a fresh process (see ``--child``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, *args.forward_argv]
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout)


def run_child(name: str, sizes: Sizes, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Build one framework, run warm-up + one step, return its peak memory (this process only)."""
    baseline = common.current_rss_mb()
    images, ids = make_batch(sizes, args.seed)
    runner = make_runner(name, sizes, images, ids, device, args)
    resident = common.current_rss_mb() if device.type == "cpu" else torch.cuda.memory_allocated(device) / 2**20
    common.reset_peak_memory(device)
    for _ in range(max(args.warmup, 1) + 1):
        runner.step()
    common.synchronize(device)
    return {"peak_mb": round(common.peak_memory_mb(device), 1), "before_steps_mb": round(resident, 1),
            "process_start_mb": round(baseline, 1) if device.type == "cpu" else None}


def _before_after(rates: dict[str, list[float]], med: dict[str, float],
                  cpu_med: dict[str, float] | None) -> dict[str, Any]:
    """Return medfuse's step before (foreach AdamW) and after (fused) in the same rounds."""
    paired = [a / b for a, b in zip(rates["medfuse"], rates[BEFORE], strict=True)]
    return {"before_after": {
        "cpu_time_speedup": round(cpu_med["medfuse"] / cpu_med[BEFORE], 4) if cpu_med else None,
        "cpu_time_before_over_open_clip": round(cpu_med[BEFORE] / cpu_med["open_clip"], 4) if cpu_med else None,
        "before": "medfuse with foreach AdamW (build_optimizer's former CPU default)",
        "after": "medfuse as built now (fused AdamW on CPU and CUDA)",
        "before_samples_per_s": common.summary(rates[BEFORE], 2),
        "after_samples_per_s_median": round(med["medfuse"], 2),
        "speedup": round(med["medfuse"] / med[BEFORE], 4),
        "paired_speedup_median": round(common.median(paired), 4),
        "before_over_open_clip": round(med[BEFORE] / med["open_clip"], 4),
    }}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="sizes: cpu (ViT-Ti/16), gpu (ViT-B/16), quick; default: gpu on CUDA, else cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds: a smoke test")
    parser.add_argument("--image-size", type=int, default=None, help="override the image size (a multiple of the patch)")
    parser.add_argument("--batch", type=int, default=None, help="override the batch size")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                        help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models' forward (and medfuse's loss)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="gradient checkpointing in both")
    parser.add_argument("--medfuse-optimizer", choices=("auto", "fused", "foreach"), default="auto",
                        help="medfuse's AdamW kernels (auto: fused on CUDA, foreach on CPU)")
    parser.add_argument("--before", action="store_true",
                        help="also time medfuse with foreach AdamW (its CPU default before fused) in the same rounds")
    parser.add_argument("--text-mask", action=argparse.BooleanOptionalAction, default=True,
                        help="give medfuse the tokenizer's attention_mask (all ones here), as a tokenised batch has")
    parser.add_argument("--clip-grad-norm", type=float, default=None, help="clip gradients in both (default: off)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.2)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per framework (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timed rounds (default 7 CPU, 5 GPU, 3 quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per framework per round (default 1 CPU, 10 GPU, 2 quick)")
    parser.add_argument("--memory", choices=("subprocess", "inprocess", "none"), default=None,
                        help="how peak memory is measured (default: subprocess; inprocess with --quick)")
    parser.add_argument("--no-flops", action="store_true", help="skip counting FLOPs")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak TFLOP/s for MFU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=FRAMEWORKS, default=None, help=argparse.SUPPRESS)
    common.add_json_out(parser)
    args = parser.parse_args(argv)
    args.forward_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    return args


def resolve(args: argparse.Namespace, device: torch.device) -> Sizes:
    """Fill the defaults that depend on the device and the preset; return the sizes."""
    preset = args.preset or ("quick" if args.quick else "gpu" if device.type == "cuda" else "cpu")
    sizes = dataclasses.replace(PRESETS[preset])
    if args.image_size:
        sizes.image_size = args.image_size
    if args.batch:
        sizes.batch = args.batch
    if sizes.image_size % sizes.patch_size:
        raise SystemExit(f"--image-size {sizes.image_size} is not a multiple of the patch size {sizes.patch_size}")
    args.preset = preset
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    args.warmup = args.warmup if args.warmup is not None else 1
    gpu = device.type == "cuda"
    args.rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5 if gpu else 7)
    args.steps = args.steps if args.steps is not None else (2 if args.quick else 10 if gpu else 1)
    args.memory = args.memory or ("inprocess" if args.quick else "subprocess")
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    sizes = resolve(args, device)
    if args.child:
        json.dump(run_child(args.child, sizes, device, args), sys.stdout)
        return 0

    import timm.layers

    images, ids = make_batch(sizes, args.seed)
    names = [*FRAMEWORKS, BEFORE] if args.before else list(FRAMEWORKS)
    runners = {name: make_runner(name, sizes, images, ids, device, args) for name in names}
    params = {name: count_params(r.model) for name, r in runners.items()}
    param_gap = abs(params["medfuse"] - params["open_clip"]) / params["open_clip"]
    if param_gap > 0.01:
        raise SystemExit(f"the two models differ by {param_gap:.2%} in parameters: {params}")

    flops: dict[str, int | None] = {name: None for name in runners}
    if not args.no_flops:
        flops = {name: train_step_flops(r) for name, r in runners.items() if name in FRAMEWORKS}
        if BEFORE in runners:
            flops[BEFORE] = flops["medfuse"]  # the same model and batch

    memory: dict[str, Any] = {}
    if args.memory == "inprocess":
        for name, runner in runners.items():
            common.reset_peak_memory(device)
            runner.step()
            common.synchronize(device)
            memory[name] = {"peak_mb": round(common.peak_memory_mb(device), 1)}

    rates, cpu_rates = measure(runners, device, args, sizes.batch)
    if args.memory == "subprocess":
        memory = {name: child_memory(name, args) for name in FRAMEWORKS}
    memory.pop(BEFORE, None)

    med = {name: common.median(r) for name, r in rates.items()}
    paired = [m / o for m, o in zip(rates["medfuse"], rates["open_clip"], strict=True)]
    cpu_med = {name: common.median(r) for name, r in cpu_rates.items()}
    peak = common.peak_tflops(device, args.peak_tflops)
    frameworks: dict[str, Any] = {}
    for name, runner in runners.items():
        step_flops = flops[name]
        achieved = step_flops * med[name] / sizes.batch / 1e12 if step_flops else None
        frameworks[name] = {
            "samples_per_s": common.summary(rates[name], 2),
            "samples_per_cpu_s": common.summary(cpu_rates[name], 2) if device.type == "cpu" else None,
            "params": params[name],
            "train_flops_per_step": step_flops,
            "achieved_tflops": round(achieved, 4) if achieved is not None else None,
            "mfu": round(achieved / peak, 4) if achieved is not None and peak else None,
            "optimizer": f"AdamW {runner.optimizer_impl}",
            "peak_memory": memory.get(name),
        }
    doc = {
        "benchmark": "train_throughput",
        "what": "CLIP training steps (forward + loss + backward + AdamW) per second, medfuse vs open_clip",
        **common.device_info(device),
        "preset": args.preset,
        "sizes": dataclasses.asdict(sizes),
        "precision": args.precision,
        "compile": args.compile,
        "grad_checkpointing": args.grad_checkpointing,
        "clip_grad_norm": args.clip_grad_norm,
        "timm_fused_attn": bool(timm.layers.use_fused_attn()),
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "medfuse": frameworks["medfuse"],
        "open_clip": frameworks["open_clip"],
        **({BEFORE: frameworks[BEFORE]} if BEFORE in frameworks else {}),
        "ratio_medfuse_over_open_clip": round(med["medfuse"] / med["open_clip"], 4),
        "paired_ratio_median": round(common.median(paired), 4),
        "paired_ratios": [round(r, 4) for r in paired],
        "cpu_time_ratio": round(cpu_med["medfuse"] / cpu_med["open_clip"], 4) if device.type == "cpu" else None,
        **(_before_after(rates, med, cpu_med if device.type == "cpu" else None) if BEFORE in rates else {}),
        "param_difference": round(param_gap, 6),
        "peak_tflops": peak,
        "memory_method": "not measured" if args.memory == "none" else
        {"subprocess": "a fresh process per framework", "inprocess": "this process, after a reset"}[args.memory]
        + (" (CUDA max allocated)" if device.type == "cuda" else " (peak RSS, Python and libraries included)"),
    }
    common.write_json(doc, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
