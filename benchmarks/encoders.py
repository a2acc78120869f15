"""Parameters, FLOPs and CPU latency of the image/text/signal/audio/video encoders and of every registered fusion.

Prints one JSON document. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one
sample (a multiply-add counts as 2 FLOPs; operators it does not model, such as pooling and norms, add
nothing). Latency is the median wall time of ``--runs`` forward passes in inference mode at batch 1 and 8,
after warm-up, on the CPU threads torch uses by default. Text encoders are timed on already tokenised
input, so tokenisation is not included. Audio encoders are timed on waveform windows (the log-mel
frontend included), video encoders on decoded, normalised frames, ECG encoders on ``(C, T)`` waveforms:
decoding files is not included.

    python benchmarks/encoders.py            # default sizes
    python benchmarks/encoders.py --quick    # tiny sizes, 2 runs: a smoke test
    python benchmarks/encoders.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medfuse.models import FUSIONS
from medfuse.models.encoders import (
    AudioCNNEncoder,
    AudioTimmEncoder,
    HFTextEncoder,
    SignalCNN1dEncoder,
    SignalTransformerEncoder,
    TimmImageEncoder,
    TransformerTextEncoder,
    VideoFramesEncoder,
    VitalsMLPEncoder,
)
from medfuse.models.fusion import build_fusion


def count_flops(module: nn.Module, inputs: Any) -> int:
    """Return the FLOPs of one forward pass of ``module`` on ``inputs``."""
    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.TransformerEncoder's fused inference kernel hides its matrix products from the counter
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), counter:
            _call(module, inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def _call(module: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return module(*inputs[:-1], **inputs[-1])
    return module(inputs)


def median_ms(module: nn.Module, inputs: Any, runs: int, warmup: int = 2) -> float:
    """Return the median latency in milliseconds of ``runs`` forward passes after ``warmup`` passes."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            _call(module, inputs)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(name: str, group: str, build: Callable[[], nn.Module], make_input: Callable[[int], Any], runs: int) -> dict:
    """Return ``{"name", "group", "params", "flops", "latency_ms": {"b1", "b8"}}`` or a skip reason."""
    try:
        module = build().eval()
    except Exception as exc:  # a missing optional package: report it, measure the rest
        return {"name": name, "group": group, "skipped": f"{type(exc).__name__}: {exc}"}
    params = sum(p.numel() for p in module.parameters())
    return {
        "name": name,
        "group": group,
        "params": params,
        "flops": count_flops(module, make_input(1)),
        "latency_ms": {"b1": round(median_ms(module, make_input(1), runs), 3),
                       "b8": round(median_ms(module, make_input(8), runs), 3)},
    }


def _tokens(batch: int, length: int, vocab: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _open_clip_text(width: int, layers: int, heads: int, context: int, vocab: int) -> nn.Module:
    from medfuse.models.interop import OpenCLIPTextEncoder

    return OpenCLIPTextEncoder({"context_length": context, "vocab_size": vocab, "width": width, "heads": heads,
                                "layers": layers}, embed_dim=width)


def encoder_cases(quick: bool) -> Iterator[tuple[str, str, Callable[[], nn.Module], Callable[[int], Any]]]:
    """Yield (name, group, build, make_input) for each encoder at default (or ``quick``) sizes."""
    size = 64 if quick else 224
    archs = ["test_resnet", "test_vit"] if quick else ["resnet18", "efficientnet_lite0", "vit_tiny_patch16_224", "vit_small_patch16_224"]
    for arch in archs:
        kwargs = {"img_size": size} if "vit" in arch else {}
        yield (f"timm:{arch}@{size}", "image", lambda a=arch, k=kwargs: TimmImageEncoder(a, **k),
               lambda b: torch.randn(b, 3, size, size))
    length = 16 if quick else 64
    if not quick:
        yield ("hf_text:all-MiniLM-L6-v2@64", "text", lambda: HFTextEncoder(max_length=64),
               lambda b: _tokens(b, 64, 30522))
    small = dict(width=64, layers=2, heads=2) if quick else dict(width=256, layers=4, heads=4)
    yield (f"transformer_text:w{small['width']}x{small['layers']}@{length}", "text",
           lambda: TransformerTextEncoder(**small, max_length=length), lambda b: _tokens(b, length, 259))
    # the text tower of open_clip ViT-B-32 and transformer_text of the same size (width 512, 12 layers,
    # 8 heads, 77 tokens, 49408-token vocabulary; transformer_text runs bidirectional, open_clip causal)
    big = dict(width=64, layers=2, heads=2, context=16) if quick else dict(width=512, layers=12, heads=8, context=77)
    yield (f"transformer_text:clip-size w{big['width']}x{big['layers']}@{big['context']}", "text",
           lambda: TransformerTextEncoder(width=big["width"], layers=big["layers"], heads=big["heads"],
                                          max_length=big["context"], vocab_size=49408, causal=True, pooling="eos"),
           lambda b: _tokens(b, big["context"], 259))
    yield (f"open_clip_text:w{big['width']}x{big['layers']}@{big['context']}", "text",
           lambda: _open_clip_text(big["width"], big["layers"], big["heads"], big["context"], 49408),
           lambda b: {"input_ids": _tokens(b, big["context"], 49408)["input_ids"]})
    features = 16
    yield (f"vitals_mlp:F{features}", "signal", lambda: VitalsMLPEncoder(features), lambda b: torch.randn(b, features))
    channels, steps = (2, 256) if quick else (12, 1000)
    yield (f"signal_cnn1d:C{channels}xT{steps}", "signal", lambda: SignalCNN1dEncoder(channels),
           lambda b: torch.randn(b, channels, steps))
    yield (f"signal_transformer:C{channels}xT{steps}", "signal",
           lambda: SignalTransformerEncoder(channels, depth=2 if quick else 4),
           lambda b: torch.randn(b, channels, steps))
    yield from ecg_cases(quick)
    yield from audio_cases(quick)
    yield from video_cases(quick)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _inputs(*shape: int) -> Callable[[int], torch.Tensor]:
    """Return ``batch -> (batch, *shape)`` fixed random input."""
    return lambda batch: _randn(batch, *shape)


def ecg_cases(quick: bool) -> Iterator[tuple[str, str, Callable[[], nn.Module], Callable[[int], Any]]]:
    """Yield the waveform encoders on ECGs: the 3-lead 10 s 250 Hz records of ``medfuse synth --media`` and a
    12-lead 10 s 500 Hz record (PhysioNet/CinC 2021); a quarter of the length with ``quick``."""
    widths = (16, 32) if quick else (32, 64, 128)
    for leads, rate in ((3, 250), (12, 500)):
        steps = 10 * rate // (4 if quick else 1)
        yield (f"signal_cnn1d:ecg {leads}-lead {rate}Hz T{steps}", "ecg",
               partial(SignalCNN1dEncoder, leads, widths=widths), _inputs(leads, steps))
        # 100 ms patches
        yield (f"signal_transformer:ecg {leads}-lead {rate}Hz T{steps}", "ecg",
               partial(SignalTransformerEncoder, leads, patch_size=rate // 10, depth=2 if quick else 4),
               _inputs(leads, steps))


def audio_cases(quick: bool) -> Iterator[tuple[str, str, Callable[[], nn.Module], Callable[[int], Any]]]:
    """Yield the audio encoders on heart-sound windows: 5 s at 2 kHz (one window, as the data pipeline cuts
    them), log-mel (64 mels, 10 ms hop) into the small CNN, or 128 mels into a timm ResNet-18; 1 s, 32 mels
    and tiny widths with ``quick``."""
    rate, seconds = 2000, (1 if quick else 5)
    if quick:
        cnn = partial(AudioCNNEncoder, 32, sample_rate=rate, n_mels=32, channels=(8, 16))
    else:
        cnn = partial(AudioCNNEncoder, sample_rate=rate)
    yield f"audio_cnn:{seconds}s@{rate}Hz", "audio", cnn, _inputs(1, rate * seconds)
    backbone = "test_resnet" if quick else "resnet18"
    yield (f"audio_timm:{backbone} {seconds}s@{rate}Hz", "audio",
           partial(AudioTimmEncoder, backbone, sample_rate=rate, n_mels=32 if quick else 128),
           _inputs(1, rate * seconds))


def video_cases(quick: bool) -> Iterator[tuple[str, str, Callable[[], nn.Module], Callable[[int], Any]]]:
    """Yield the video encoder (a 2-D encoder per frame, then temporal pooling) on greyscale echo clips:
    16 frames of 112x112 (EchoNet-Dynamic's size) with the small CNN and attention or Transformer pooling, and
    with a timm ResNet-18 per frame; 4 frames of 32x32 and tiny widths with ``quick``."""
    frames, size = (4, 32) if quick else (16, 112)
    channels = (8, 16) if quick else (16, 32, 64, 128)
    dim = 64 if quick else 128
    for temporal in ("attention", "transformer"):
        yield (f"video_frames:cnn+{temporal} {frames}x{size}", "video",
               partial(VideoFramesEncoder, dim, channels=channels, temporal=temporal), _inputs(frames, 1, size, size))
    backbone = "test_resnet" if quick else "resnet18"
    yield (f"video_frames:{backbone}+attention {frames}x{size}", "video",
           partial(VideoFramesEncoder, dim, backbone=backbone, in_chans=1), _inputs(frames, 1, size, size))


def fusion_cases(quick: bool) -> Iterator[tuple[str, str, Callable[[], nn.Module], Callable[[int], Any]]]:
    """Yield each registered fusion over image (512), text (384) and vitals (128) features, fused to 256.

    Token-level fusions get 49 image tokens, 32 text tokens and 1 vitals token (8/8/1 with ``quick``).
    """
    dims = {"image": 512, "text": 384, "vitals": 128}
    counts = {"image": 8, "text": 8, "vitals": 1} if quick else {"image": 49, "text": 32, "vitals": 1}
    for name in FUSIONS.names():
        tokens = bool(getattr(FUSIONS.get(name), "uses_tokens", False))

        def make(batch: int, tokens: bool = tokens) -> Any:
            gen = torch.Generator().manual_seed(0)
            shape = {m: (batch, counts[m], d) if tokens else (batch, d) for m, d in dims.items()}
            feats = {m: torch.randn(*s, generator=gen) for m, s in shape.items()}
            mask = {m: torch.ones(batch, dtype=torch.bool) for m in dims}
            return (feats, mask, {})

        yield (f"fusion:{name}", "fusion", lambda n=name: build_fusion(n, dims, 256), make)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 runs: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per setting (default 10; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = [measure(n, g, b, i, runs) for n, g, b, i in (*encoder_cases(args.quick), *fusion_cases(args.quick))]
    doc = {
        "benchmark": "encoders",
        "quick": args.quick,
        "runs": runs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "results": results,
    }
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
