"""The browser UI: static pages that read runs and workflows through the /v1 API.

``/ui`` (runs, the home page), ``/ui/workflows``, ``/ui/workflows/{id}`` and the run
inspector ``/ui/runs/{id}``.

The HTML shell and its assets are public (they hold no data); every data fetch the page makes
goes to ``/v1`` with the API key the user gives it (``#key=...`` in the URL fragment, which a
browser never sends to the server, or a form), kept in the tab's ``sessionStorage``. All assets
are served from ``api/ui``: no CDN, no external font, nothing fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_from_directory

from api.registry import registry

bp = Blueprint("ui", __name__)
route = registry.route
UI_DIR = Path(__file__).resolve().parents[1] / "ui"

# The page may talk to this origin only, run only its own scripts, and never be framed.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    # Revalidate (ETag) on every load, so an upgrade never mixes old and new modules.
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _page(name: str) -> Any:
    return send_from_directory(UI_DIR, name, mimetype="text/html")


@route(
    bp,
    "GET",
    "/ui",
    summary="Runs page, the UI's home (data is fetched from /v1 with the user's API key)",
    tag="ui",
    auth=False,
    content=("text/html",),
)
def runs_page() -> Any:
    return _page("runs.html")


@route(
    bp,
    "GET",
    "/ui/workflows",
    summary="Workflows page",
    tag="ui",
    auth=False,
    content=("text/html",),
)
def workflows_page() -> Any:
    return _page("workflows.html")


@route(
    bp,
    "GET",
    "/ui/workflows/<workflow_id>",
    summary="One workflow's page: graph, draft changes, runs, block re-runs",
    tag="ui",
    auth=False,
    content=("text/html",),
)
def workflow_page(workflow_id: str) -> Any:
    return _page("workflow.html")


@route(
    bp,
    "GET",
    "/ui/runs/<run_id>",
    summary="Run inspector page (data is fetched from /v1 with the user's API key)",
    tag="ui",
    auth=False,
    content=("text/html",),
)
def run_inspector(run_id: str) -> Any:
    # The shell is the same for every run: the page reads the run id from its own path.
    return _page("inspector.html")


@route(
    bp,
    "GET",
    "/ui/assets/<path:name>",
    summary="Assets of the run inspector (served locally)",
    tag="ui",
    auth=False,
    content=tuple(dict.fromkeys(MEDIA_TYPES.values())),
)
def ui_assets(name: str) -> Any:
    mimetype = MEDIA_TYPES.get(Path(name).suffix)
    return send_from_directory(UI_DIR, name, mimetype=mimetype)
