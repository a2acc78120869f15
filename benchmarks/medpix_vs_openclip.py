"""MedPix 2.0 retrieval: the same towers trained by medfuse's recipe and by open_clip's training loop; prints JSON.

    OMP_NUM_THREADS=1 python benchmarks/medpix_vs_openclip.py --out runs/apps/bench-medpix
    python benchmarks/medpix_vs_openclip.py --out runs/apps/bench-smoke --set data.max_rows=128 --set train.epochs=1
    python benchmarks/medpix_vs_openclip.py --out DIR --medfuse-run runs/apps/medpix-clip   # reuse a medfuse run

Both arms start from the recipe ``configs/medpix-clip.yaml`` (with the ``--set`` overrides): the same model
config built under the same seed (EfficientNet-Lite0 + MiniLM-L6, the recipe's strategy freezing the same
parameters), the same ``ManifestDataset`` rows, preprocessing and augmentation, batch size, epochs,
learning rate, weight decay, warm-up share and gradient clipping.

- ``medfuse``: ``medfuse.train.train_from_config`` (its loop, its CLIP loss, its optimiser groups).
- ``open_clip``: ``open_clip_train.train.train_one_epoch`` (open_clip's own loop, with the logit-scale
  clamp to ln 100) with ``open_clip.loss.ClipLoss``, ``open_clip_train.scheduler.cosine_lr`` and the
  AdamW parameter groups of ``open_clip_train.main`` (no decay on gains, biases, ``logit_scale``).

Both trained models are saved as medfuse checkpoints and scored by the same ``medfuse evaluate`` retrieval
task on the ``dev`` split (bootstrap 95% intervals), so only the training differs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mrr")


class OpenClipAdapter(nn.Module):
    """A medfuse dual encoder behind open_clip's ``model(images, texts) -> {image_features, ...}`` interface.

    ``texts`` arrive as one tensor ``(B, 2, L)`` (token ids and attention mask stacked) because open_clip's
    loop moves them with ``texts.to(device)``. ``logit_scale`` is the medfuse parameter itself (log scale),
    which open_clip's loop clamps in place after every step.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    def forward(self, images: Tensor, texts: Tensor) -> dict[str, Tensor]:
        tokens = {"input_ids": texts[:, 0], "attention_mask": texts[:, 1]}
        image_features = F.normalize(self.model.encode_image(images, normalize=False).float(), dim=-1)
        text_features = F.normalize(self.model.encode_text(tokens, normalize=False).float(), dim=-1)
        return {"image_features": image_features, "text_features": text_features,
                "logit_scale": self.model.logit_scale.exp()}


class OpenClipData:
    """The ``data["train"]`` object open_clip's loop reads: ``set_epoch`` and a loader with its counts."""

    def __init__(self, dataset: Any, tokenizer: Any, max_length: int, batch_size: int, seed: int) -> None:
        self.dataset, self.tokenizer, self.max_length = dataset, tokenizer, max_length
        self.batch_size, self.seed = batch_size, seed
        self.dataloader = self._loader(0)

    def _collate(self, samples: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        batch = self.dataset.collate_fn(samples)
        enc = self.tokenizer(list(batch["text"]), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return batch["image"], torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)

    def _loader(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, generator=generator,
                            collate_fn=self._collate)
        loader.num_batches = len(loader)  # type: ignore[attr-defined]
        loader.num_samples = len(self.dataset)  # type: ignore[attr-defined]
        return loader

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch
        self.dataloader = self._loader(epoch)


def train_open_clip(config: Path, overrides: list[str], out_dir: Path) -> float:
    """Train the recipe's towers with open_clip's loop and save a medfuse checkpoint in ``out_dir/model``."""
    from open_clip.loss import ClipLoss
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    from medfuse.core.seed import seed_everything
    from medfuse.train import load_recipe
    from medfuse.train.runner import _save, build_datasets, build_task
    from medfuse.train.strategies import apply_strategy

    recipe = load_recipe(config, overrides)
    seed_everything(recipe.seed)
    start = time.perf_counter()
    _, train, _ = build_datasets(recipe, out_dir)
    _, module = build_task(recipe, train)
    model: Any = apply_strategy(cast(nn.Module, module.model), recipe.strategy)[0]
    adapter = OpenClipAdapter(model)
    text_tower = model.text_encoder
    data = {"train": OpenClipData(train, text_tower.tokenizer, text_tower.max_length, recipe.train.batch_size,
                                  recipe.seed)}
    named = [(n, p) for n, p in adapter.named_parameters() if p.requires_grad]

    def exclude(n: str, p: Tensor) -> bool:  # open_clip_train.main's rule
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
         {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": recipe.optim.weight_decay}],
        lr=recipe.optim.lr, betas=(recipe.optim.betas[0], recipe.optim.betas[1]), eps=recipe.optim.eps,
    )
    steps_per_epoch = len(data["train"].dataloader)
    total = steps_per_epoch * recipe.train.epochs
    warmup = recipe.schedule.warmup_steps or int(round(recipe.schedule.warmup_ratio * total))
    scheduler = cosine_lr(optimizer, recipe.optim.lr, warmup, total)
    args = SimpleNamespace(device="cpu", precision="fp32", distill=False, accum_freq=1, skip_scheduler=False,
                           grad_clip_norm=recipe.train.clip_grad_norm, horovod=False, log_every_n_steps=10,
                           batch_size=recipe.train.batch_size, world_size=1, rank=0, local_rank=0, wandb=False)
    loss = ClipLoss()
    for epoch in range(recipe.train.epochs):
        train_one_epoch(adapter, data, loss, epoch, optimizer, None, scheduler, None, args)
    model.eval()
    extra = {"data": _plain(train.config), "train_task": "contrastive", "trained_by": "open_clip_train.train_one_epoch"}
    _save(model, recipe, train, out_dir, extra, {})
    return time.perf_counter() - start


def _plain(config: Any) -> dict[str, Any]:
    from medfuse.core.config import to_dict

    return dict(to_dict(config))


def evaluate(run: Path, manifest: str, split: str, seed: int, resamples: int, max_rows: int | None) -> dict[str, Any]:
    """Return the retrieval metrics (value and 95% interval) of the checkpoint in ``run``."""
    from medfuse.evaluate import evaluate_checkpoint

    overrides = [f"n_resamples={resamples}"] + ([f"max_rows={max_rows}"] if max_rows else [])
    result = evaluate_checkpoint(run, manifest, split=split, tasks=["retrieval"], out=run / "eval",
                                 overrides=overrides, seed=seed)
    metrics = result.results["metrics"]
    return {"n": result.results["n"], **{k: metrics[k] for k in METRICS if k in metrics}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "medpix-clip.yaml"))
    parser.add_argument("--out", required=True, help="folder for both runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (both arms)")
    parser.add_argument("--medfuse-run", help="an existing medfuse run of the same recipe to evaluate instead of training")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--skip", choices=["medfuse", "open_clip"], help="leave one arm out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    from medfuse.train import load_recipe, train_from_config

    out = Path(args.out)
    recipe = load_recipe(args.config, args.set)
    max_rows = recipe.data.max_rows
    doc: dict[str, Any] = {"benchmark": "medpix_vs_openclip", "config": args.config, "overrides": args.set,
                           "seed": recipe.seed, "epochs": recipe.train.epochs, "split": args.split,
                           "threads": torch.get_num_threads(), "arms": {}}
    if args.skip != "medfuse":
        if args.medfuse_run:
            run, wall = Path(args.medfuse_run), None
        else:
            run, begin = out / "medfuse", time.perf_counter()
            train_from_config(args.config, run, overrides=args.set)
            wall = time.perf_counter() - begin
        doc["arms"]["medfuse"] = {"run": str(run), "train_wall_s": wall,
                                  **evaluate(run, recipe.data.manifest, args.split, recipe.seed, args.resamples, max_rows)}
    if args.skip != "open_clip":
        run = out / "open_clip"
        wall = train_open_clip(Path(args.config), args.set, run)
        doc["arms"]["open_clip"] = {"run": str(run), "train_wall_s": wall,
                                    **evaluate(run, recipe.data.manifest, args.split, recipe.seed, args.resamples, max_rows)}
    json.dump(_finite(doc), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return doc


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    main()
