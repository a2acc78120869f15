"""The API's documentation at ``/docs``, served from this machine: nothing is loaded from a CDN.

With the ``swagger-ui-bundle`` package installed, ``/docs`` is Swagger UI from that package's files
(served under ``/docs-assets``). Without it, ``/docs`` is the service's own page (``static/docs.html`` and
``docs.js``), which reads ``/openapi.json`` and lists every endpoint with its method, parameters, form
fields, responses and schemas. ReDoc is not served (it too would come from a CDN).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("medfuse.serve")

STATIC = Path(__file__).parent / "static"
SWAGGER_PREFIX = "/docs-assets"


def swagger_assets() -> Path | None:
    """Return the folder of Swagger UI's files from the ``swagger-ui-bundle`` package, or None without it."""
    try:
        bundle = importlib.import_module("swagger_ui_bundle")
    except ImportError:
        return None
    folder = Path(str(getattr(bundle, "swagger_ui_path", "")))
    needed = ("swagger-ui-bundle.js", "swagger-ui.css")
    if not all((folder / name).is_file() for name in needed):
        log.warning("swagger_ui_bundle has no %s; /docs uses the built-in page", " or ".join(needed))
        return None
    return folder


def add_docs(app: Any, title: str) -> str:
    """Add ``GET /docs`` to ``app`` (created with ``docs_url=None, redoc_url=None``); return which page it serves:
    ``swagger-ui`` or ``built-in``."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse
    from fastapi.staticfiles import StaticFiles

    folder = swagger_assets()
    if folder is None:
        @app.get("/docs", include_in_schema=False)
        async def builtin_docs() -> FileResponse:
            return FileResponse(STATIC / "docs.html", media_type="text/html")

        return "built-in"

    favicon = f"{SWAGGER_PREFIX}/favicon-32x32.png" if (folder / "favicon-32x32.png").is_file() else "data:,"
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=str(folder)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{title} - API",
                                   swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css", swagger_favicon_url=favicon)

    return "swagger-ui"
