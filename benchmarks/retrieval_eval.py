"""Time and peak memory of both-direction retrieval metrics on N x N synthetic embeddings; prints JSON.

    python benchmarks/retrieval_eval.py --n 100000 --dim 256     # the full-size run
    python benchmarks/retrieval_eval.py --n 2000                 # smoke run

Images are noisy copies of their texts (so R@K is neither 0 nor 1), and a share of texts are exact
duplicates of another text with its group id, which exercises ties and several relevant items per
query. The similarity matrix is never held whole: memory stays near the embeddings
plus ``--max-elements`` scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

from medfuse.evaluate.metrics import retrieval_metrics


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="images and texts (N each)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=4.0, help="image = text + noise * N(0, 1)")
    parser.add_argument(
        "--duplicates", type=float, default=0.05, help="share of texts that copy another text"
    )
    parser.add_argument("--max-elements", type=int, default=1 << 25, help="similarities held at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # reports: distinct ones plus exact duplicates (one group id per distinct report); image i is
    # described by text i, so an image is relevant to every copy of its report
    rng = np.random.default_rng(args.seed)
    n_distinct = max(1, int(round(args.n * (1 - args.duplicates))))
    groups = np.concatenate([np.arange(n_distinct), rng.integers(0, n_distinct, args.n - n_distinct)])
    generator = torch.Generator().manual_seed(args.seed)
    reports = torch.randn(n_distinct, args.dim, generator=generator)
    texts = reports[torch.as_tensor(groups)]
    images = texts + args.noise * torch.randn(args.n, args.dim, generator=generator)
    setup_rss = _peak_rss_mb()

    start, cpu_start = time.perf_counter(), time.process_time()
    metrics = retrieval_metrics(
        images, texts, groups, groups, max_elements=args.max_elements, device=args.device
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    result = {
        "benchmark": "retrieval_eval",
        "n_images": args.n,
        "n_texts": args.n,
        "dim": args.dim,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "max_elements": args.max_elements,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_after_setup_mb": round(setup_rss, 1),
        "full_matrix_mb": round(args.n * args.n * 4 / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
