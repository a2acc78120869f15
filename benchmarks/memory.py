"""Training memory of medfuse's CLIP step per option: plain, gradient checkpointing, full gather, local loss.

On a GPU: the largest batch that trains (forward, loss, backward, AdamW step) without running out of
memory, found by doubling then bisecting on ``torch.cuda.OutOfMemoryError``, and the CUDA peak
(``max_memory_allocated``) at that batch. Without a GPU: the JSON says so, and gives the peak RSS of each
option at one fixed small batch, each measured in a fresh process.

The model is ``train_throughput.py``'s medfuse dual encoder (ViT-B/16 + 12-layer text tower on a GPU,
ViT-Ti/16 + 4-layer text tower on a CPU). The loss options only differ when several processes train
together, so they are measured with a simulated world of ``--world-size`` ranks: the gather returns this
rank's rows plus fixed rows standing for the others'. ``full_gather`` scores the whole global batch
(``(W b) x (W b)`` logits), ``local_loss`` only this rank's rows against it (``b x (W b)``).

    python benchmarks/memory.py                # GPU: largest batch per option; CPU: peak RSS at batch 16
    python benchmarks/memory.py --quick        # tiny sizes: a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
import train_throughput as tt  # noqa: E402

OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {"grad_checkpointing": False, "local_loss": False, "simulated_world": False},
    "grad_checkpointing": {"grad_checkpointing": True, "local_loss": False, "simulated_world": False},
    "full_gather": {"grad_checkpointing": False, "local_loss": False, "simulated_world": True},
    "local_loss": {"grad_checkpointing": False, "local_loss": True, "simulated_world": True},
}


@contextlib.contextmanager
def simulated_world(world_size: int, embed_dim: int, device: torch.device) -> Iterator[None]:
    """Make the contrastive losses see ``world_size`` ranks (this one is rank 0) inside the block.

    The gather appends ``(world_size - 1) * b`` fixed unit rows for the other ranks (no gradient flows to
    them, as none flows to another rank's features here).
    """
    import medfuse.objectives.contrastive as contrastive

    saved = contrastive.world, contrastive.gather
    others: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def gather(local: torch.Tensor, *, with_grad: bool) -> torch.Tensor:
        key = (local.shape[0], local.dtype)
        if key not in others:
            gen = torch.Generator().manual_seed(0)
            rows = torch.randn((world_size - 1) * local.shape[0], embed_dim, generator=gen)
            others[key] = torch.nn.functional.normalize(rows, dim=-1).to(device=device, dtype=local.dtype)
        return torch.cat([local if with_grad else local.detach(), others[key]], dim=0)

    contrastive.world = lambda: (0, world_size)  # type: ignore[assignment]
    contrastive.gather = gather  # type: ignore[assignment]
    try:
        yield
    finally:
        contrastive.world, contrastive.gather = saved


def runner_args(args: argparse.Namespace, option: str, batch: int) -> tuple[argparse.Namespace, tt.Sizes]:
    """Return ``train_throughput``'s arguments and sizes for ``option`` at ``batch``."""
    argv = ["--preset", args.preset, "--batch", str(batch)]
    if args.image_size:
        argv += ["--image-size", str(args.image_size)]
    targs = tt.parse_args(argv)
    sizes = tt.resolve(targs, args.device)
    targs.grad_checkpointing = OPTIONS[option]["grad_checkpointing"]
    targs.local_loss = OPTIONS[option]["local_loss"]
    targs.compile = False
    return targs, sizes


def train_steps(args: argparse.Namespace, option: str, batch: int, steps: int = 2) -> float:
    """Run ``steps`` training steps of ``option`` at ``batch``; return the peak memory in MiB."""
    targs, sizes = runner_args(args, option, batch)
    context = (simulated_world(args.world_size, sizes.embed_dim, args.device)
               if OPTIONS[option]["simulated_world"] else contextlib.nullcontext())
    images, ids = tt.make_batch(sizes, 0)
    common.reset_peak_memory(args.device)
    runner = tt.medfuse_runner(sizes, images, ids, args.device, targs)
    with context:
        for _ in range(steps):  # the second step has the optimizer's state too
            runner.step()
    common.synchronize(args.device)
    peak = common.peak_memory_mb(args.device)
    del runner, images, ids
    return peak


def fits(args: argparse.Namespace, option: str, batch: int) -> tuple[bool, float | None]:
    """Return (whether ``batch`` trains without running out of GPU memory, its peak MiB)."""
    ok, peak = True, None
    try:
        peak = train_steps(args, option, batch)
    except torch.cuda.OutOfMemoryError:
        ok = False
    gc.collect()  # after the handler, so the failed step's tensors are unreferenced
    torch.cuda.empty_cache()
    return ok, peak


def largest_batch(args: argparse.Namespace, option: str) -> dict[str, Any]:
    """Return the largest batch of ``option`` that fits (to ``--granularity``), its peak and the trials."""
    tried: list[list[Any]] = []
    good, good_peak, bad = 0, None, None
    batch = args.start_batch
    while batch <= args.max_batch:  # doubling
        ok, peak = fits(args, option, batch)
        tried.append([batch, ok])
        if not ok:
            bad = batch
            break
        good, good_peak = batch, peak
        batch *= 2
    if bad is None:
        return {"max_batch": good, "peak_mb_at_max": round(good_peak or 0.0, 1), "capped_at": args.max_batch,
                "tried": tried}
    while bad - good > args.granularity:  # bisection
        mid = (good + bad) // 2 // args.granularity * args.granularity or args.granularity
        if mid <= good:
            break
        ok, peak = fits(args, option, mid)
        tried.append([mid, ok])
        if ok:
            good, good_peak = mid, peak
        else:
            bad = mid
    return {"max_batch": good, "peak_mb_at_max": round(good_peak, 1) if good_peak else None,
            "first_failing": bad, "tried": tried}


def rss_of(args: argparse.Namespace, option: str) -> dict[str, Any]:
    """Return the peak RSS of two steps of ``option`` at ``--batch`` and the RSS before them (MiB)."""
    before = common.current_rss_mb()
    peak = train_steps(args, option, args.batch)
    return {"peak_rss_mb": round(peak, 1), "rss_before_mb": round(before, 1), "peak_above_before_mb": round(peak - before, 1)}


def child_rss(args: argparse.Namespace, option: str) -> dict[str, Any]:
    """Return the peak RSS of ``option`` at ``--batch``, measured in a fresh process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", option, *args.forward_argv]
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--image-size", type=int, default=None, help="override the preset's image size")
    parser.add_argument("--batch", type=int, default=None, help="CPU: the fixed batch (default 16; 8 with --quick)")
    parser.add_argument("--world-size", type=int, default=8, help="simulated ranks for the loss options")
    parser.add_argument("--start-batch", type=int, default=None, help="GPU: first batch tried (default 64)")
    parser.add_argument("--max-batch", type=int, default=None, help="GPU: stop doubling here (default 16384)")
    parser.add_argument("--granularity", type=int, default=None, help="GPU: bisect to this many samples (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--child", choices=sorted(OPTIONS), default=None, help=argparse.SUPPRESS)
    common.add_json_out(parser)
    args = parser.parse_args(argv)
    args.forward_argv = list(argv if argv is not None else sys.argv[1:])
    args.device = common.pick_device(args.device)
    gpu = args.device.type == "cuda"
    args.preset = "quick" if args.quick else "gpu" if gpu else "cpu"
    args.batch = args.batch or (8 if args.quick else 16)
    args.start_batch = args.start_batch or (8 if args.quick else 64)
    args.max_batch = args.max_batch or (256 if args.quick else 16384)
    args.granularity = args.granularity or (8 if args.quick else 16)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        json.dump(rss_of(args, args.child), sys.stdout)
        return 0
    _, sizes = runner_args(args, "plain", args.batch)
    doc: dict[str, Any] = {
        "benchmark": "memory",
        "what": "training memory per option of medfuse's CLIP step (forward, loss, backward, AdamW)",
        **common.device_info(args.device),
        "preset": args.preset,
        "sizes": {k: v for k, v in vars(sizes).items() if k != "batch"},
        "simulated_world_size": args.world_size,
    }
    if args.device.type == "cuda":
        doc["precision"] = "bf16"
        doc["options"] = {name: largest_batch(args, name) for name in OPTIONS}
        doc["measure"] = "largest batch per GPU that trains; CUDA max_memory_allocated at that batch"
    else:
        doc["no_gpu"] = "no GPU: the largest-batch search needs CUDA; peak RSS per option at a fixed batch instead"
        doc["batch"] = args.batch
        doc["precision"] = "fp32"
        if args.quick:  # one process: quicker, but each option's peak sits on what the earlier ones left
            doc["options"] = {name: rss_of(args, name) for name in OPTIONS}
            doc["measure"] = "peak RSS of this process over two steps per option, reset before each (Linux)"
        else:
            doc["options"] = {name: child_rss(args, name) for name in OPTIONS}
            doc["measure"] = "peak RSS of a fresh process per option over two steps (Python and torch included)"
    common.write_json(doc, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
