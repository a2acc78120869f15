"""Wall time of ``medfuse demo``, stage by stage, in a temporary directory.

Calls the library behind the command, :func:`medfuse.demo.run_demo`, and prints the seconds of each stage
it reports (synthesise, pre-train, fine-tune, evaluate), their sum and the whole call's wall time (which
adds imports and writing the report) as one JSON document.

    python benchmarks/demo_time.py                 # the demo's default size (600 studies)
    python benchmarks/demo_time.py --quick         # a small set: a smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="synthetic studies (default 600, the demo's; 40 with --quick)")
    parser.add_argument("--image-size", type=int, default=None, help="image size (default 64, the demo's; 32 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="keep the demo's output here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a small set: a smoke test")
    common.add_json_out(parser)
    args = parser.parse_args(argv)
    args.n = args.n or (40 if args.quick else 600)
    args.image_size = args.image_size or (32 if args.quick else 64)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    from medfuse.demo import run_demo

    import_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="medfuse-bench-demo-") as tmp:
        out = args.out or Path(tmp) / "demo"
        start = time.perf_counter()
        result = run_demo(out, n=args.n, seed=args.seed, image_size=args.image_size)
        wall = time.perf_counter() - start
        report_written = result.report is not None and result.report.is_file()
    stages = {name: round(float(seconds), 3) for name, seconds in result.seconds.items()}
    doc = {
        "benchmark": "demo_time",
        "what": "wall seconds per stage of medfuse demo (medfuse.demo.run_demo)",
        **common.device_info(common.pick_device("auto")),
        "n": args.n,
        "image_size": args.image_size,
        "seed": args.seed,
        "stages_s": stages,
        "stages_total_s": round(sum(stages.values()), 3),
        "run_demo_wall_s": round(wall, 3),
        "import_medfuse_demo_s": round(import_s, 3),
        "report_written": report_written,
        "comparison": {k: round(float(v), 4) for k, v in result.comparison.items()},
        "comparison_metric": result.metric,
        "torch_threads": torch.get_num_threads(),
    }
    common.write_json(doc, args.json_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
