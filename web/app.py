"""The Flask app factory. The database session factory, engine and settings live in
`app.extensions["gongji"]`; views take a session per command from it (commands own their transactions)."""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from models import db as models_db
from models.settings import Settings

from . import dashboard, health, metrics, request_ids
from .api import bp as api_bp
from .api import problems
from .webhooks import bp as webhooks_bp

MAX_BODY = 1 << 20  # bytes
SESSION_HOURS = 8  # a dashboard sign-in lasts one working day


class DashboardSessions(SecureCookieSessionInterface):
    """The signed-cookie session exists for the dashboard only: the API (bearer keys), the webhooks
    (signatures) and the probes get Flask's null session, so they neither decode nor set a cookie."""

    def open_session(self, app, request):
        if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
            return super().open_session(app, request)
        return self.make_null_session(app)


def create_app(settings: Settings | None = None, *, db=None, engine=None) -> Flask:
    settings = settings or Settings.from_env()
    if db is None:
        engine, db = models_db.from_settings(settings)
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=MAX_BODY,
                      SESSION_COOKIE_SECURE=not settings.dev_mode, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax")
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_HOURS * 3600
    app.json.ensure_ascii = False
    app.session_interface = DashboardSessions()
    if settings.proxy_hops:  # behind a reverse proxy: the client address and scheme it forwards
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops)
    app.extensions["gongji"] = {"db": db, "engine": engine, "settings": settings}
    request_ids.init_app(app)
    problems.register(app)
    metrics.instrument(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    dashboard.init_app(app, exempt=(api_bp, webhooks_bp))  # bearer keys and signatures, not cookies
    return app
