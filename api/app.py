"""The application factory."""

from __future__ import annotations

from flask import Flask, request

from api.auth import require_principal
from api.metrics import install_metrics
from api.problems import register_error_handlers
from api.ratelimit import create_limiter, enforce, install_rate_limit_headers
from api.runtime import ApiRuntime
from engine.db.session import Database
from engine.ports import Dispatcher
from engine.settings import Settings
from workers.events import event_bus


def create_app(settings: Settings | None = None, *, dispatcher: Dispatcher | None = None) -> Flask:
    settings = settings or Settings.from_env()
    # No static folder: every route is an API route (the docs serve their own assets).
    app = Flask("quorum", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        QUORUM_MAX_JSON_DEPTH=settings.max_json_depth,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    if dispatcher is None:
        from workers.celery_app import create_celery
        from workers.dispatch import CeleryDispatcher

        dispatcher = CeleryDispatcher(create_celery(settings))
    limiter = create_limiter(settings)
    app.extensions["quorum"] = ApiRuntime(
        settings=settings,
        db=Database(settings, pool_size=8),
        dispatcher=dispatcher,
        events=event_bus(settings),
        limiter=limiter,
    )
    register_error_handlers(app)
    install_metrics(app)
    install_rate_limit_headers(app)

    from api.routes import events, executions, feed, ops, runs, ui, workflows

    for module in (ops, workflows, runs, executions, ui, events, feed):
        app.register_blueprint(module.bp)

    @app.before_request
    def _authenticate() -> None:
        if request.path.startswith("/v1/") or request.path == "/v1":
            require_principal()
            # After authentication: the limit is per API key.
            enforce(limiter)

    return app
