"""Operations: liveness, readiness, metrics, the OpenAPI document and offline docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_openapi3_swagger
from flask import Blueprint, Response, current_app, send_from_directory

from api.openapi import openapi_document
from api.registry import registry
from api.resources import Health, OpenApiDocument, Ready
from api.routing import json_response
from api.runtime import runtime

bp = Blueprint("ops", __name__)
route = registry.route
SWAGGER_DIR = Path(flask_openapi3_swagger.__file__).parent / "templates" / "swagger"
# What the docs assets are served as (Python's mimetypes; JavaScript differs by version).
ASSET_TYPES = ("text/css", "text/javascript", "application/javascript", "image/svg+xml")

DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Quorum API</title>
<link rel="stylesheet" href="/docs/assets/css/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/js/swagger-ui-bundle.js"></script>
<script src="/docs/assets/js/swagger-ui-standalone-preset.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui",
presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout",
validatorUrl: null});
</script></body></html>"""


@route(
    bp,
    "GET",
    "/healthz",
    summary="The process is alive",
    tag="operations",
    auth=False,
    response=Health,
)
def healthz() -> Any:
    return {"status": "ok"}


@route(
    bp,
    "GET",
    "/readyz",
    summary="Database and broker are reachable",
    tag="operations",
    auth=False,
    errors=(503,),
    response=Ready,
)
def readyz() -> Any:
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        rt.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks["broker"] = _broker_check(rt)
    ok = all(v == "ok" for v in checks.values())
    if ok:
        return {"status": "ok", "checks": checks}
    from api.problems import problem

    return problem(503, "a dependency is unavailable", extra={"checks": checks})


def _broker_check(rt: Any) -> str:
    app = getattr(rt.dispatcher, "app", None)
    if app is None:
        return "ok"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


@route(
    bp,
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tag="operations",
    auth=False,
    content=("text/plain",),
)
def metrics() -> Any:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry_ = current_app.extensions["quorum_metrics"].registry
    return Response(generate_latest(registry_), mimetype=CONTENT_TYPE_LATEST.split(";")[0])


@route(
    bp,
    "GET",
    "/openapi.json",
    summary="This API's OpenAPI document",
    tag="operations",
    auth=False,
    response=OpenApiDocument,
)
def openapi() -> Any:
    doc = openapi_document(registry, title="Quorum", version="1")
    return json_response(doc)


@route(
    bp,
    "GET",
    "/docs",
    summary="Interactive API docs (served locally)",
    tag="operations",
    auth=False,
    content=("text/html",),
)
def docs() -> Any:
    return Response(DOCS_PAGE, mimetype="text/html")


@route(
    bp,
    "GET",
    "/docs/assets/<path:name>",
    summary="Assets of the docs page (served locally)",
    tag="operations",
    auth=False,
    content=ASSET_TYPES,
)
def docs_assets(name: str) -> Any:
    return send_from_directory(SWAGGER_DIR, name)
