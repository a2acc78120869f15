"""HTTP service: classify (dynamically batched; images, text, vitals, audio, video), embed, retrieve, answer and
draft reports (whole, or streamed as Server-Sent Events); a clinician web page; API docs served offline.

>>> run_server(ServeConfig(checkpoint="runs/demo", index="runs/index"))   # doctest: +SKIP

FastAPI and uvicorn are optional (``pip install 'medfuse[serve]'``) and imported by :func:`create_app`.
"""

from __future__ import annotations

from typing import Any

from medfuse.serve.config import GenerationRequest, GeneratorFn, ServeConfig

__all__ = ["GenerationRequest", "GeneratorFn", "ServeConfig", "create_app", "run_server"]


def create_app(cfg: ServeConfig) -> Any:
    """Return the FastAPI app for ``cfg`` (see :func:`medfuse.serve.app.create_app`)."""
    from medfuse.serve.app import create_app as build

    return build(cfg)


def run_server(cfg: ServeConfig) -> None:
    """Serve ``cfg`` with uvicorn until interrupted (see :func:`medfuse.serve.app.run_server`)."""
    from medfuse.serve.app import run_server as run

    run(cfg)
