"""Contrastive losses across two CPU processes (gloo) equal the one-process loss on the global batch.

Each rank holds half of the global batch and a copy of the same projections and loss parameters. The
checks: the loss (each rank's value for the global variants, the mean over ranks for the local ones), the
gradient of each rank's features (``world_size`` times the global-loss gradient, the factor DDP's
averaging removes), and the parameter gradients averaged over ranks as DDP does (equal to one process).
"""

from __future__ import annotations

import importlib.util
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medfuse.objectives import ClipLoss, SigLipLoss

WORLD = 2
BATCH = 8  # global batch, 4 per rank
CASES = {
    "clip_global": lambda: ClipLoss(gather_with_grad=True),
    "clip_local": lambda: ClipLoss(local_loss=True, gather_with_grad=True),
    "clip_plain_gather": lambda: ClipLoss(gather_with_grad=False),
    "siglip_global": lambda: SigLipLoss(init_logit_bias=-2.0, gather_with_grad=True),
    "siglip_local": lambda: SigLipLoss(init_logit_bias=-2.0, local_loss=True, gather_with_grad=True),
}
LOCAL_CASES = {"clip_local", "siglip_local"}


def _open_clip_loss_module():
    """open_clip's loss.py loaded on its own (the package import pulls in far more than the losses)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss_reference", path)
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module


def _setup(case: str):
    """Deterministic inputs, projections and loss module (float64) shared by the ranks and the reference."""
    g = torch.Generator().manual_seed(0)
    raw_image = torch.randn(BATCH, 6, generator=g, dtype=torch.float64)
    raw_text = torch.randn(BATCH, 6, generator=g, dtype=torch.float64)
    image_proj = nn.Linear(6, 5).double()
    text_proj = nn.Linear(6, 5).double()
    with torch.no_grad():
        for p in (*image_proj.parameters(), *text_proj.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return raw_image, raw_text, image_proj, text_proj, CASES[case]().double()


def _run(case: str, rows: slice) -> dict[str, torch.Tensor]:
    raw_image, raw_text, image_proj, text_proj, loss_fn = _setup(case)
    image, text = image_proj(raw_image[rows]), text_proj(raw_text[rows])
    image.retain_grad()
    text.retain_grad()
    loss = loss_fn(image, text).total
    loss.backward()
    params = {
        **{f"image_proj.{k}": v for k, v in image_proj.named_parameters()},
        **{f"text_proj.{k}": v for k, v in text_proj.named_parameters()},
        **{f"loss.{k}": v for k, v in loss_fn.named_parameters()},
    }
    out = {"loss": loss.detach(), "image_grad": image.grad, "text_grad": text.grad}
    out.update({f"grad:{k}": v.grad.detach().clone() for k, v in params.items()})
    return out


def _open_clip_parity(rank: int) -> dict[str, torch.Tensor]:
    """Our local-loss variants and open_clip's distributed losses on the same rank inputs."""
    reference = _open_clip_loss_module()
    if reference is None:
        return {}
    g = torch.Generator().manual_seed(1)
    image_all = nn.functional.normalize(torch.randn(BATCH, 5, generator=g, dtype=torch.float64), dim=-1)
    text_all = nn.functional.normalize(torch.randn(BATCH, 5, generator=g, dtype=torch.float64), dim=-1)
    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    results = {}
    pairs = {
        "clip": (
            ClipLoss(local_loss=True, normalize=False).double(),
            lambda i, t, m: reference.ClipLoss(
                local_loss=True, gather_with_grad=True, rank=rank, world_size=WORLD
            )(i, t, m.scale()),
        ),
        "siglip": (
            SigLipLoss(local_loss=True, normalize=False).double(),
            lambda i, t, m: reference.SigLipLoss(rank=rank, world_size=WORLD, dist_impl="bidir")(
                i, t, m.scale(), m.logit_bias
            ),
        ),
    }
    for name, (ours_fn, ref_fn) in pairs.items():
        for who, compute in (
            ("ours", lambda i, t, m=ours_fn: m(i, t).total),
            ("ref", lambda i, t, m=ours_fn, r=ref_fn: r(i, t, m)),
        ):
            image = image_all[rows].clone().requires_grad_()
            text = text_all[rows].clone().requires_grad_()
            with warnings.catch_warnings():  # open_clip calls the all_gather that torch now deprecates
                warnings.simplefilter("ignore", FutureWarning)
                loss = compute(image, text)
                image_grad, text_grad = torch.autograd.grad(loss, (image, text))
            results[f"{name}_{who}_loss"] = loss.detach()
            results[f"{name}_{who}_image_grad"] = image_grad
            results[f"{name}_{who}_text_grad"] = text_grad
    return results


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        local = BATCH // WORLD
        results = {case: _run(case, slice(rank * local, (rank + 1) * local)) for case in CASES}
        for case_results in results.values():
            for key, value in case_results.items():
                if key.startswith("grad:"):  # what DDP does with parameter gradients
                    dist.all_reduce(value)
                    value /= WORLD
        results["open_clip"] = _open_clip_parity(rank)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    out_dir = tmp_path_factory.mktemp("dist")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # tiny tensors: idle OpenMP workers only compete for the cores
        mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_equal_one_process_on_the_global_batch(rank_results, case):
    reference = _run(case, slice(0, BATCH))
    ranks = [r[case] for r in rank_results]
    if case in LOCAL_CASES:
        torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), reference["loss"])
    else:
        for r in ranks:
            torch.testing.assert_close(r["loss"], reference["loss"])
    # A differentiable gather returns every rank's share of the gradient: world_size x the global one.
    factor = 1.0 if case == "clip_plain_gather" else float(WORLD)
    local = BATCH // WORLD
    for rank, r in enumerate(ranks):
        rows = slice(rank * local, (rank + 1) * local)
        torch.testing.assert_close(r["image_grad"], factor * reference["image_grad"][rows])
        torch.testing.assert_close(r["text_grad"], factor * reference["text_grad"][rows])
    for key in (k for k in reference if k.startswith("grad:")):
        # Without a differentiable gather the encoders see only their own share (1 / world_size of the
        # global gradient after averaging) while the temperature, computed from the full loss, sees it all.
        full = factor == WORLD or key.startswith("grad:loss.")
        expected = reference[key] if full else reference[key] / WORLD
        torch.testing.assert_close(ranks[0][key], expected, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_local_loss_matches_open_clip_distributed(rank_results, name):
    if not rank_results[0]["open_clip"]:
        pytest.skip("open_clip is not installed")
    for r in rank_results:
        parity = r["open_clip"]
        for what in ("loss", "image_grad", "text_grad"):
            torch.testing.assert_close(parity[f"{name}_ours_{what}"], parity[f"{name}_ref_{what}"])
