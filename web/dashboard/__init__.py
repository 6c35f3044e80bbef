"""The operator dashboard (DESIGN §6, issue 4): server-rendered Flask pages under `/dashboard`.

Wired here: Flask-Login sessions, CSRF on every form (Flask-WTF; only the bearer-key API and the signed
webhooks are exempt), rate limits on sign-in and on the look-up by ID number (Flask-Limiter; Redis in
production, memory embedded), Flask-Babel with zh-CN first and English available, dates in Asia/Shanghai.
Every view declares the role it needs with `@requires`; a view without one is refused (403) before it
runs, so none can be forgotten."""
from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, g, render_template, request, session
from flask_babel import Babel
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from workflows import correlation

from . import returning

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="../templates")
LOCALES = ("zh_CN", "en")
csrf = CSRFProtect()
login = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def select_locale() -> str:
    chosen = session.get("lang")
    return chosen if chosen in LOCALES else LOCALES[0]


def _limit_the_dashboard_only(app: Flask) -> None:
    """Flask-Limiter hooks every request of the app; only the dashboard has limits (sign-in), so its
    request hooks move onto the dashboard blueprint. The API and the webhooks skip them: with the cookie
    session they cost ~0.1 ms of a webhook ingest's ~0.5 ms of CPU in-process."""
    def ours(f) -> bool:
        return getattr(f, "__self__", None) is limiter or limiter in getattr(f, "args", ())
    moved = 0
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        mine = [f for f in hooks.get(None, []) if ours(f)]
        hooks[None] = [f for f in hooks.get(None, []) if not ours(f)]
        hooks.setdefault(bp.name, []).extend(mine)
        moved += len(mine)
    if moved != 3:  # a Flask-Limiter that hooks requests differently: look again rather than guess
        raise RuntimeError(f"expected Flask-Limiter's 3 request hooks, found {moved}")


ERROR_PAGES = (400, 403, 404, 405, 409, 429, 500, 503)  # answered with a dashboard page under /dashboard


def _ours() -> bool:
    return request.path == bp.url_prefix or request.path.startswith(bp.url_prefix + "/")


@bp.after_request
def no_framing(response):
    """No dashboard page may be framed by another site (clickjacking)."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


def _error_pages(app: Flask) -> None:
    """Under /dashboard an HTTP error is a small translated page with the navigation; everywhere else the
    handler registered before (the API's problem+json, `web/api/problems.py`) or Werkzeug's answers as it did.
    App-level, so a /dashboard URL no route matches is covered too (blueprint handlers only see matched ones)."""
    from werkzeug.exceptions import default_exceptions

    for code in ERROR_PAGES:
        cls = default_exceptions[code]
        before = app.error_handler_spec.get(None, {}).get(code, {}).get(cls)

        def handle(exc, code=code, before=before):
            if not _ours():
                return before(exc) if before is not None else exc
            _signed_in_or_nobody()
            response = current_app.make_response((_error_page(code, exc), code))
            if code in (429, 503) and getattr(exc, "retry_after", None):
                response.headers["Retry-After"] = str(exc.retry_after)
            return no_framing(response)
        app.register_error_handler(code, handle)


def _signed_in_or_nobody() -> None:
    """The page shows who is signed in: when loading them fails (the database away, a 503), nobody is, for
    the rest of this request. Else the page would fail inside its own error handler: a bare 500."""
    if "_login_user" in g:
        return
    try:
        current_user._get_current_object()
    except Exception:  # noqa: BLE001 - the error being answered is the one that matters
        g._login_user = login.anonymous_user()


def _error_page(code: int, exc) -> str:
    """A refused CSRF token (a 400) is nearly always a form left open too long or sent after signing out:
    the page says so and links back to the page the form came from, rather than "bad request"."""
    expired = {"form_expired": True, "back": returning.back_link()} if isinstance(exc, CSRFError) else {}
    if expired and not request.is_secure and current_app.config.get("SESSION_COOKIE_SECURE"):
        # not expired: over plain HTTP the browser never sends the Secure session cookie back (production's),
        # so no form can pass; say what to do instead of "reload" (ProxyFix reads the TLS proxy's scheme)
        expired = {"needs_https": True}
    # the request's id, for the operator to quote: the log lines of the request name it
    return render_template("dashboard/error.html", code=code, request_id=correlation.current_id(), **expired)


@bp.before_request
def role_declared():
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "required_role", None) is None:
        abort(403)


def init_app(app: Flask, *, exempt: tuple = ()) -> None:
    settings = app.extensions["gongji"]["settings"]
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[0])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Shanghai")
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    app.config.setdefault("REMEMBER_COOKIE_SECURE", app.config.get("SESSION_COOKIE_SECURE", True))
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.redis_url or "memory://")
    # Redis away: the limits are kept in this process's memory until it answers again (Flask-Limiter checks
    # back with a growing pause), so signing in and the look-ups keep working in an outage, still limited;
    # an error the fallback cannot absorb lets the request through rather than answer 500.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    if settings.redis_url:  # a Redis that drops packets instead of refusing must not hold a sign-in for long
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    csrf.init_app(app)
    login.init_app(app)
    login.login_view = "dashboard.sign_in"
    login.login_message = _l("Please sign in to see this page.")
    login.localize_callback = str  # the flash is stored in the session: a plain string, in the reader's language
    # No client binding: Flask-Login's "strong" deletes a session whose address or User-Agent changed, but not
    # a permanent one (ours, for the 8-hour expiry): it only marks it not fresh. And its address is the raw
    # X-Forwarded-For, which a thief sets at will, like the User-Agent. What ends a stolen cookie is the
    # session generation (signing out, a new password, `gongji operator disable`), and the 8 hours.
    login.session_protection = None
    limiter.init_app(app)
    _limit_the_dashboard_only(app)
    for blueprint in exempt:  # the bearer-key API and the signed webhooks: no CSRF token
        csrf.exempt(blueprint)
    Babel(app, locale_selector=select_locale)
    from . import actions, auth, lookup, settlements, templating, traffic, views  # noqa: F401  (their routes)
    templating.register(app)
    app.register_blueprint(bp)
    _error_pages(app)
