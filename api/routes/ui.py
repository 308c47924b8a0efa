"""The run inspector: a static page that reads a run through the /v1 API in the browser.

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
    return send_from_directory(UI_DIR, "inspector.html", mimetype="text/html")


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
