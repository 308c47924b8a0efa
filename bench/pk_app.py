"""The S5 baseline: a Flask route doing one primary-key select, nothing else.

Served like the API, by the same gunicorn configuration (``api.gunicorn_conf``: uvicorn
workers, ``QUORUM_API_WORKERS`` of them, the Flask app on ``QUORUM_API_THREADS`` threads
through the same WSGI adapter), on the same database through the same engine settings
(``engine.db.session.Database``, pool of 8)::

    gunicorn -c python:api.gunicorn_conf 'bench.pk_app:create_asgi_app()'
"""

from __future__ import annotations

from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask, request

from bench.seam import AccessLogged, Database, Run, Settings


def create_app() -> Flask:
    settings = Settings.from_env()
    db = Database(settings, pool_size=8)
    app = Flask("bench-pk", static_folder=None)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.post("/pk")
    def pk() -> Any:
        body = request.get_json(force=True)
        with db.transaction() as s:
            run = s.get(Run, str(body.get("id", "")))
            if run is None:
                return {"error": "not found"}, 404
            return {"id": run.id, "status": run.status, "updated_at": run.updated_at.isoformat()}

    return app


def create_asgi_app() -> Any:
    threads = Settings.from_env().api_threads
    return AccessLogged(WSGIMiddleware(create_app(), workers=threads))  # type: ignore[arg-type]
