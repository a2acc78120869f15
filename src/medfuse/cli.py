"""``medfuse ...``: the command line. Thin: parse, load a config, call one library function, print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medfuse import __version__
from medfuse.core.errors import MedfuseError

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------- handlers


def cmd_demo(args: argparse.Namespace) -> int:
    from medfuse.demo import run_demo

    result = run_demo(Path(args.out), n=args.n, seed=args.seed, image_size=args.image_size)
    for line in result.summary_lines():
        print(line)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from medfuse.data.synth import generate_synthetic

    res = generate_synthetic(Path(args.out), n=args.n, seed=args.seed, image_size=args.image_size, dicom=args.dicom,
                             media=args.media)
    print(f"wrote {res.n_rows} studies of {res.n_patients} patients to {res.manifest_path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from medfuse.data import default_quarantine_path, load_data_config, validate_manifest

    config = load_data_config(args.config, manifest=args.manifest, preset=args.preset) if (args.config or args.preset) else None
    quarantine = args.quarantine or default_quarantine_path(args.manifest, Path.cwd())
    report = validate_manifest(args.manifest, config, quarantine_path=quarantine, decode=not args.no_decode)
    print(report.summary())
    print(f"quarantine: {quarantine} ({report.quarantined} rows)")
    if args.json:
        _print_json(report.to_dict())
    return 0 if report.quarantined == 0 or not args.strict else 1


def cmd_train(args: argparse.Namespace) -> int:
    from medfuse.train import train_from_config

    result = train_from_config(args.config, Path(args.out), overrides=args.set or [], resume=args.resume)
    print(result.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medfuse.evaluate import evaluate_checkpoint

    overrides = list(args.set or [])
    if args.gallery_split:
        overrides.append(f"train_split={args.gallery_split}")
    results = evaluate_checkpoint(
        args.checkpoint, args.manifest, split=args.split, tasks=args.task, out=Path(args.out),
        overrides=overrides, seed=args.seed, config=args.config,
    )
    print(results.summary())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from medfuse.evaluate.predict import predict_files

    for row in predict_files(args.checkpoint, args.inputs, text=args.text, vitals=args.vitals):
        print(json.dumps(row, default=str))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from medfuse.index import build_index_from_manifest, query_index

    if args.index_cmd == "build":
        info = build_index_from_manifest(
            args.checkpoint, args.manifest, Path(args.out), modality=args.modality, kind=args.kind,
            split=args.split,
        )
        _print_json(info)
    else:
        for hit in query_index(Path(args.index), checkpoint=args.checkpoint, text=args.text, image=args.image, k=args.k):
            print(json.dumps(hit, default=str))
    return 0


def cmd_deid(args: argparse.Namespace) -> int:
    if args.text:
        from medfuse.text.deid.runner import deidentify_text_file

        audit = deidentify_text_file(Path(args.text), Path(args.out), mode=args.mode, seed=args.seed,
                                     text_columns=args.text_columns, id_column=args.id_column,
                                     secret=os.environ.get("MEDFUSE_DEID_SECRET"))
    else:
        from medfuse.data.dicom_deid import deidentify_dicom_dir

        audit = deidentify_dicom_dir(Path(args.dicom), Path(args.out), seed=args.seed, keep_private=args.keep_private,
                                     secret=os.environ.get("MEDFUSE_DEID_SECRET"))
    print(audit.summary())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from medfuse.export import export_checkpoint

    report = export_checkpoint(args.checkpoint, Path(args.out), fmt=args.format, int8=args.int8,
                               calibration_manifest=args.manifest)
    _print_json(report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from medfuse.serve import ServeConfig, run_server

    limits = {name: value for name, value in (
        ("max_upload_bytes", None if args.max_upload_mb is None else int(args.max_upload_mb * 1024 * 1024)),
        ("max_video_bytes", None if args.max_video_mb is None else int(args.max_video_mb * 1024 * 1024)),
        ("max_audio_seconds", args.max_audio_seconds), ("max_video_frames", args.max_video_frames),
        ("request_timeout_s", args.timeout), ("threads", args.threads)) if value is not None}
    run_server(ServeConfig(checkpoint=args.checkpoint, host=args.host, port=args.port, index=args.index,
                           api_key=args.api_key, generator=args.generator, **limits))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from medfuse.catalog import registered_parts

    for kind, names in registered_parts().items():
        print(f"{kind}: {', '.join(names)}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from medfuse.tracking import cli_runs

    return cli_runs(args)


def cmd_registry(args: argparse.Namespace) -> int:
    from medfuse.tracking import cli_registry

    return cli_registry(args)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medfuse", description="Multimodal medical AI: align, fuse, adapt, evaluate, serve.")
    p.add_argument("--version", action="version", version=f"medfuse {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    sp = add("demo", cmd_demo, "generate data, train, evaluate, write report.html")
    sp.add_argument("--out", default="runs/demo")
    sp.add_argument("--n", type=int, default=600, help="synthetic studies")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--image-size", type=int, default=64)

    sp = add("synth", cmd_synth, "synthetic multimodal chest data set")
    sp.add_argument("--out", required=True)
    sp.add_argument("--n", type=int, default=600)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--image-size", type=int, default=128)
    sp.add_argument("--dicom", action="store_true", help="also write DICOM files")
    sp.add_argument("--media", action="store_true", help="also write a heart sound, echo clip and ECG per study")

    sp = add("validate", cmd_validate, "check a manifest; bad rows listed with reasons")
    sp.add_argument("manifest")
    sp.add_argument("--config", help="YAML data config mapping columns to roles")
    sp.add_argument("--preset", help="column preset (medpix2, slake, pneumoniamnist, heartsound2016, ecg_cinc2021, synthetic)")
    sp.add_argument("--quarantine", help="where to write the quarantined rows (default: next to the manifest)")
    sp.add_argument("--no-decode", action="store_true", help="check files exist but do not decode them")
    sp.add_argument("--strict", action="store_true", help="exit 1 when any row is quarantined")
    sp.add_argument("--json", action="store_true", help="also print the report as JSON")

    sp = add("train", cmd_train, "train from a YAML recipe")
    sp.add_argument("config")
    sp.add_argument("--out", required=True)
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")

    sp = add("evaluate", cmd_evaluate, "evaluate a checkpoint on a manifest: results.json + report.html")
    sp.add_argument("--checkpoint", required=True, help="checkpoint directory or registered name@version")
    sp.add_argument("--manifest", required=True)
    sp.add_argument("--split", default=None)
    sp.add_argument("--task", action="append", help="evaluation task (repeatable); default: those fitting the model")
    sp.add_argument("--gallery-split", default=None,
                    help="split that drafting, probes and few-shot draw from (default: train; same as --set train_split=S)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--config", help="YAML evaluation config")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE")
    sp.add_argument("--seed", type=int, default=0)

    sp = add("predict", cmd_predict, "one-off predictions as JSON lines")
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("inputs", nargs="+", help="image / DICOM / audio files")
    sp.add_argument("--text", help="report text for every input")
    sp.add_argument("--vitals", help="JSON mapping of vital signs")

    sp = add("index", cmd_index, "FAISS retrieval index over a manifest")
    isub = sp.add_subparsers(dest="index_cmd", required=True)
    b = isub.add_parser("build", help="embed a manifest and build an index")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--manifest", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--modality", choices=["image", "text"], default="image")
    b.add_argument("--kind", choices=["flat", "ivf", "hnsw"], default="flat")
    b.add_argument("--split", default=None)
    q = isub.add_parser("query", help="query an index with text or an image")
    q.add_argument("--index", required=True)
    q.add_argument("--checkpoint", default=None)
    q.add_argument("--text")
    q.add_argument("--image")
    q.add_argument("-k", type=int, default=5)

    sp = add("deid", cmd_deid, "remove PHI from reports and DICOM headers")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="a text file, a folder of .txt, or a manifest")
    g.add_argument("--dicom", help="a folder of DICOM files")
    sp.add_argument("--out", required=True)
    sp.add_argument("--mode", choices=["placeholder", "surrogate"], default="placeholder")
    sp.add_argument("--text-columns", nargs="+", help="manifest columns to clean (default: the text-like ones)")
    sp.add_argument("--id-column", help="patient id column (keeps date shifts consistent per patient)")
    sp.add_argument("--keep-private", action="store_true", help="DICOM: keep private tags")
    sp.add_argument("--seed", type=int, default=0)

    sp = add("export", cmd_export, "export towers and classifier to ONNX (optionally int8)")
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--format", choices=["onnx"], default="onnx")
    sp.add_argument("--int8", action="store_true")
    sp.add_argument("--manifest", help="dev manifest to measure the int8 accuracy drop on")
    sp.add_argument("--out", required=True)

    sp = add("serve", cmd_serve, "HTTP service and clinician web page")
    sp.add_argument("--checkpoint", required=True)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--index", help="FAISS index directory for /v1/retrieve")
    sp.add_argument("--generator", help="generative checkpoint for /v1/answer and /v1/report")
    sp.add_argument("--api-key", help="require this key in the X-API-Key header")
    sp.add_argument("--max-upload-mb", type=float, help="largest request body in MiB (default 20)")
    sp.add_argument("--max-video-mb", type=float, help="largest video upload in MiB (default 20; within --max-upload-mb)")
    sp.add_argument("--max-audio-seconds", type=float, help="longest audio upload in seconds (default 300)")
    sp.add_argument("--max-video-frames", type=int, help="most frames in a video upload (default 1000)")
    sp.add_argument("--timeout", type=float, help="seconds a request may wait for the model, or a stream run (default 30)")
    sp.add_argument("--threads", type=int, help="torch threads for the model (default: OMP_NUM_THREADS, else one CPU fewer than available)")

    sp = add("models", cmd_models, "registered encoders, fusions, losses, tasks")
    msub = sp.add_subparsers(dest="models_cmd")
    msub.add_parser("list", help="list registered parts")

    sp = add("runs", cmd_runs, "tracked runs: list, show, compare")
    rsub = sp.add_subparsers(dest="runs_cmd", required=True)
    r = rsub.add_parser("list")
    r.add_argument("--store", default=None)
    r = rsub.add_parser("show")
    r.add_argument("run")
    r.add_argument("--store", default=None)
    r = rsub.add_parser("compare")
    r.add_argument("runs", nargs="+")
    r.add_argument("--store", default=None)
    r.add_argument("--out", default="runs/compare")

    sp = add("registry", cmd_registry, "model registry: register and list checkpoints as name@version")
    gsub = sp.add_subparsers(dest="registry_cmd", required=True)
    r = gsub.add_parser("register")
    r.add_argument("checkpoint")
    r.add_argument("--name", required=True)
    r.add_argument("--store", default=None)
    r = gsub.add_parser("list")
    r.add_argument("--store", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
    )
    from medfuse.core import progress

    progress.enable(not args.quiet)
    try:
        return int(args.handler(args) or 0)
    except MedfuseError as exc:
        print(f"medfuse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
