"""Decoded and augmented training images per second: PIL + torchvision against medfuse's pipeline.

Both read the same images and deliver the same batches, ``(B, 3, S, S)`` float32, normalised:

* baseline: ``PIL.Image.open(path).convert("RGB")`` then torchvision's ``RandomResizedCrop(S, scale=(0.85, 1))``,
  ``RandomRotation(7)``, ``ToTensor`` and ``Normalize`` per image, in a DataLoader with ``--workers`` workers;
* medfuse: :class:`medfuse.data.ManifestDataset` with its uint8 image cache warm (filled by an untimed first
  pass) and ``batch_transforms=True``, so workers read uint8 arrays from the memory map and augment the
  whole batch at once (random resized crop 0.85-1, rotation +-7 degrees and brightness/contrast jitter in
  one resampling), through :func:`medfuse.data.build_loader` with the same workers. Its samples also
  carry the manifest's text, labels and other columns; the baseline's only the image;
* medfuse_device: the same with ``batch_transforms="device"``: workers deliver uint8 batches and
  :func:`medfuse.data.finish_images` augments them on the GPU after the transfer (timed, with the
  transfer, when a GPU is present). Without a GPU only the uint8 delivery is timed, and the JSON says so.

An untimed pass over every image fills medfuse's cache (and the OS file cache for both). Each loader
then draws ``--batches`` batches per epoch (random indices with replacement) with persistent workers,
started by one untimed epoch. Rounds alternate (the order flips each round, so load changes fall on
both); a round times one epoch of each from its first batch to its last, so the rate is the steady
delivery rate, not the latency of filling the workers' queues. The JSON gives the median images/s of
each, their ratio and the median of the per-round ratios, images per CPU second (workers and main
process together: steadier than the wall clock on a shared machine), and whether a training step would
wait for data: the pipeline's rate against the training step's samples/s, from ``--step-rate`` (e.g. a GPU
figure) or, when not given, measured here with medfuse's CLIP step (``train_throughput.py``'s preset for
this device).

    python benchmarks/data_pipeline.py                                    # synthetic 256-px set, 2 workers
    python benchmarks/data_pipeline.py --manifest ../shared/data/medpix2/manifest.jsonl --step-rate 2612
    python benchmarks/data_pipeline.py --quick                            # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset, RandomSampler  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class TorchvisionImages(Dataset):
    """The baseline: PIL decode + torchvision per-image augmentation -> ``(3, S, S)`` float32."""

    def __init__(self, paths: list[Path], size: int) -> None:
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=(0.85, 1.0)),
            transforms.RandomRotation(7),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))


def sampler(n: int, batch: int, batches: int, seed: int) -> RandomSampler:
    """Return a sampler of ``batches * batch`` random indices (with replacement) from ``range(n)``."""
    return RandomSampler(range(n), replacement=True, num_samples=batch * batches,
                         generator=torch.Generator().manual_seed(seed))


def baseline_loader(paths: list[Path], size: int, batch: int, batches: int, workers: int, seed: int) -> DataLoader:
    """Return the PIL + torchvision DataLoader (random order, persistent workers)."""
    return DataLoader(TorchvisionImages(paths, size), batch_size=batch, sampler=sampler(len(paths), batch, batches, seed),
                      num_workers=workers, persistent_workers=workers > 0)


def medfuse_dataset(manifest: Path, size: int, cache_dir: Path, max_rows: int | None,
                    batch_transforms: bool | str = True) -> Any:
    """Return a training :class:`ManifestDataset` (3 channels, ``size`` px, cache on, batch transforms)."""
    from medfuse.data import ManifestDataset, read_manifest, resolve_config

    table = read_manifest(manifest)
    cfg = dataclasses.replace(resolve_config(None, table.columns), image_size=size, channels=3)
    return ManifestDataset(table, cfg, split=None, train=True, batch_transforms=batch_transforms,
                           cache_dir=cache_dir, max_rows=max_rows)


def epoch(loader: DataLoader, finish: Callable[[Any], Any] | None = None,
          device: torch.device | None = None) -> tuple[float, float]:
    """Return (images per wall second, images per CPU second) of one pass over ``loader``.

    The wall rate counts from the first batch to the last (the queues are filling before the first);
    the CPU rate divides all the pass's images by the CPU seconds its worker processes and this process
    spent on it, which a loaded, shared machine disturbs far less than the wall clock. ``finish``
    (optional) runs on each batch in this process (e.g. the augmentation on the GPU), and ``device`` is
    synchronised before the clock stops.
    """
    start = None
    count = total = 0
    cpu_start = _cpu_seconds(loader)  # persistent workers are idle between passes
    for batch in loader:
        if finish is not None:
            batch = finish(batch)
        images = batch["image"] if isinstance(batch, dict) else batch
        total += int(images.shape[0])
        if start is None:
            start = time.perf_counter()
        else:
            count += int(images.shape[0])
    if device is not None:
        common.synchronize(device)
    wall = time.perf_counter() - start if start is not None else float("nan")
    return count / wall, total / (_cpu_seconds(loader) - cpu_start)


def _cpu_seconds(loader: DataLoader) -> float:
    """Return the CPU seconds used so far by this process and the loader's persistent workers (Linux)."""
    seconds = time.process_time()
    workers = getattr(getattr(loader, "_iterator", None), "_workers", None) or []
    ticks = os.sysconf("SC_CLK_TCK")
    for worker in workers:
        try:
            with open(f"/proc/{worker.pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            seconds += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        except (OSError, ValueError, IndexError):
            return float("nan")
    return seconds


def fill(loader: Iterable[Any]) -> float:
    """Iterate ``loader`` once; return the seconds it took."""
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def synthetic_manifest(out: Path, n: int, seed: int) -> Path:
    """Write ``n`` synthetic studies at 256 px under ``out``; return the manifest path."""
    from medfuse.data.synth import generate_synthetic

    return Path(generate_synthetic(out, n=n, seed=seed, image_size=256).manifest_path)


def measured_step_rate(quick: bool) -> tuple[float, str]:
    """Return medfuse's CLIP training samples/s on this device (``train_throughput.py``'s preset) and what it was."""
    import train_throughput as tt

    device = common.pick_device("auto")
    argv = ["--quick"] if quick else []
    args = tt.parse_args(argv)
    sizes = tt.resolve(args, device)
    images, ids = tt.make_batch(sizes, 0)
    runner = tt.medfuse_runner(sizes, images, ids, device, args)
    runner.step()
    seconds = common.timed(runner.step, device, repeats=2)
    return sizes.batch * 2 / seconds, (f"measured: medfuse CLIP step, preset {args.preset} "
                                       f"({sizes.image_size} px, batch {sizes.batch}) on {device.type}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=None, help="a manifest (default: a synthetic set at 256 px)")
    parser.add_argument("--n", type=int, default=None, help="synthetic images (default 256; 32 with --quick)")
    parser.add_argument("--max-rows", type=int, default=None, help="use only the first rows of --manifest")
    parser.add_argument("--image-size", type=int, default=None, help="output size (default 224; 64 with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 64; 16 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for both")
    parser.add_argument("--batches", type=int, default=None, help="batches per timed epoch (default 12; 5 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timed epochs (default 3; 2 with --quick)")
    parser.add_argument("--step-rate", type=float, default=None,
                        help="training samples/s to compare with (default: measure medfuse's step here)")
    parser.add_argument("--quick", action="store_true", help="a small set and small images: a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    common.add_json_out(parser)
    args = parser.parse_args(argv)
    args.n = args.n or (32 if args.quick else 256)
    args.batches = args.batches or (5 if args.quick else 12)
    args.image_size = args.image_size or (64 if args.quick else 224)
    args.batch = args.batch or (16 if args.quick else 64)
    args.rounds = args.rounds or (2 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = common.pick_device("auto")
    with tempfile.TemporaryDirectory(prefix="medfuse-bench-data-") as tmp:
        work = Path(tmp)
        manifest = args.manifest or synthetic_manifest(work / "synthetic", args.n, args.seed)
        dataset = medfuse_dataset(manifest, args.image_size, work / "cache", args.max_rows)
        deferred = medfuse_dataset(manifest, args.image_size, work / "cache", args.max_rows, "device")
        finish = _device_finish(deferred.pipeline, device) if device.type == "cuda" else None
        paths = [p for p in dataset.paths["image"] if p is not None]
        fill_seconds = {
            "torchvision": fill(DataLoader(TorchvisionImages(paths, args.image_size), batch_size=args.batch,
                                           num_workers=args.workers)),
            "medfuse": fill(_medfuse_loader(dataset, args.batch, args.workers, None, args.seed)),  # fills the cache
        }
        loaders = {
            "torchvision": baseline_loader(paths, args.image_size, args.batch, args.batches, args.workers, args.seed),
            "medfuse": _medfuse_loader(dataset, args.batch, args.workers, args.batches, args.seed),
            "medfuse_device": _medfuse_loader(deferred, args.batch, args.workers, args.batches, args.seed,
                                              pin_memory=device.type == "cuda"),
        }
        finishers = {"medfuse_device": finish}
        for loader in loaders.values():
            fill(loader)  # starts the persistent workers
        cache_ready = dataset.cache.n_ready if dataset.cache is not None else 0
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        cpu_rates: dict[str, list[float]] = {name: [] for name in loaders}
        order = list(loaders)
        for round_index in range(args.rounds):
            for name in order if round_index % 2 == 0 else order[::-1]:
                wall_rate, cpu_rate = epoch(loaders[name], finishers.get(name), device)
                rates[name].append(wall_rate)
                cpu_rates[name].append(cpu_rate)
        del loaders  # stop the workers before the step measurement

    if args.step_rate is not None:
        step_rate, step_source = float(args.step_rate), "--step-rate"
    else:
        step_rate, step_source = measured_step_rate(args.quick)
    med = {name: common.median(r) for name, r in rates.items()}
    cpu_med = {name: common.median(r) for name, r in cpu_rates.items()}
    paired = [m / t for m, t in zip(rates["medfuse"], rates["torchvision"], strict=True)]
    doc = {
        "benchmark": "data_pipeline",
        "what": "decoded + augmented training images per second delivered by a DataLoader",
        **common.device_info(device),
        "manifest": str(manifest) if args.manifest else f"synthetic ({args.n} studies, 256 px PNG)",
        "images": len(paths),
        "image_size": args.image_size,
        "batch": args.batch,
        "workers": args.workers,
        "rounds": args.rounds,
        "batches_per_round": args.batches,
        "torchvision": {"images_per_s": common.summary(rates["torchvision"], 1),
                        "images_per_cpu_s": common.summary(cpu_rates["torchvision"], 1),
                        "first_pass_images_per_s": round(len(paths) / fill_seconds["torchvision"], 1)},
        "medfuse": {"images_per_s": common.summary(rates["medfuse"], 1),
                    "images_per_cpu_s": common.summary(cpu_rates["medfuse"], 1),
                    "first_pass_images_per_s": round(len(paths) / fill_seconds["medfuse"], 1),
                    "first_pass_note": "decodes every image and writes the cache",
                    "cache_ready": cache_ready},
        "medfuse_device": {"images_per_s": common.summary(rates["medfuse_device"], 1),
                           "images_per_cpu_s": common.summary(cpu_rates["medfuse_device"], 1),
                           "timed": "uint8 delivery, GPU transfer and GPU augmentation" if finish is not None
                           else "uint8 delivery only (no GPU here: the augmentation would run on the GPU)"},
        "ratio_medfuse_over_torchvision": round(med["medfuse"] / med["torchvision"], 3),
        "paired_ratio_median": round(common.median(paired), 3),
        "cpu_time_ratio": round(cpu_med["medfuse"] / cpu_med["torchvision"], 3),
        "step_rate_samples_per_s": round(step_rate, 2),
        "step_rate_source": step_source,
        "pipeline_over_step_rate": round(med["medfuse"] / step_rate, 3),
        "gpu_would_wait": bool(med["medfuse"] < step_rate),
        "gpu_would_wait_device_transforms": bool(med["medfuse_device"] < step_rate),
        "torchvision_would_wait": bool(med["torchvision"] < step_rate),
    }
    if device.type == "cpu" and args.step_rate is None:
        doc["caveat"] = ("step rate measured on this CPU, whose cores the workers would share with the training; "
                         "pass --step-rate with a GPU figure to ask whether a GPU would wait")
    common.write_json(doc, args.json_out)
    return 0


def _device_finish(pipeline: Any, device: torch.device) -> Callable[[Any], Any]:
    """Return ``batch -> batch`` moving it to ``device`` and augmenting/normalising the images there."""
    from medfuse.data import finish_images
    from medfuse.models.inference import to_device

    return lambda batch: finish_images(to_device(batch, device), pipeline)


def _medfuse_loader(dataset: Any, batch: int, workers: int, batches: int | None, seed: int, *,
                    pin_memory: bool = False) -> DataLoader:
    """Return medfuse's loader: every row in order (``batches=None``) or ``batches`` random batches."""
    from medfuse.data import build_loader

    draw = sampler(len(dataset), batch, batches, seed) if batches else None
    return build_loader(dataset, batch_size=batch, num_workers=workers, seed=seed, sampler=draw,
                        pin_memory=pin_memory, persistent_workers=workers > 0 and batches is not None)


if __name__ == "__main__":
    raise SystemExit(main())
