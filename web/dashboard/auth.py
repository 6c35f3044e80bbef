"""Sign-in, sign-out, the language switch, and `requires(role)` which every dashboard view carries.

Sign-in is limited per client address and username (SIGN_IN_LIMIT) and per address (ADDRESS_LIMIT; set
GONGJI_PROXY_HOPS behind a reverse proxy so the address is the client's); a wrong password and an unknown
user answer the same. The signed session cookie is cleared and rebuilt on sign-in and lasts
PERMANENT_SESSION_LIFETIME (8 hours). It names the operator's session generation: signing out (or a new
password) changes it, which ends every session of that operator, including any copy of the cookie."""
from __future__ import annotations

from functools import wraps

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import UserMixin, current_user, login_required, login_user, logout_user

from workflows import operators
from workflows.errors import DomainError

from . import LOCALES, bp, limiter, login, returning
from .forms import LanguageForm, SignInForm

SIGN_IN_LIMIT = "10 per minute"  # tries per client address and username
ADDRESS_LIMIT = "30 per minute"  # tries per client address, whatever the usernames


def _sign_in_key() -> str:
    return f"{get_remote_address()}|{(request.form.get('username') or '')[:64]}"


class User(UserMixin):
    def __init__(self, info: operators.OperatorInfo):
        self.info = info
        self.id = info.id

    def get_id(self) -> str:
        """What the session cookie holds: the operator and the session generation it was signed in under."""
        return f"{self.info.id}:{self.info.session_generation}"

    @property
    def username(self) -> str:
        return self.info.username

    def can(self, role: str) -> bool:
        return self.info.can(role)


def db():
    return current_app.extensions["gongji"]["db"]


@login.user_loader
def load_user(session_id: str):
    """The operator of a session cookie, unless disabled or signed out since (a new generation)."""
    operator_id, _, generation = session_id.partition(":")
    info = operators.get(db(), operator_id)
    return User(info) if info and info.session_generation and info.session_generation == generation else None


def requires(role: str):
    """Declare and enforce the least role a view needs (viewer < operator < admin)."""
    def wrap(view):
        @wraps(view)
        @login_required
        def guarded(*args, **kwargs):
            if not current_user.can(role):
                abort(403)
            return view(*args, **kwargs)
        guarded.required_role = role
        return guarded
    return wrap


def public(view):
    view.required_role = "public"
    return view


@login.unauthorized_handler
def to_sign_in():
    """A request that needs a session, without one: to the sign-in page, whose `next` is the page to come back
    to. Not Flask-Login's default `next` (the URL asked for): for a form sent after the session ended that is
    its POST-only action, and signing in would land on a 405 (`returning.before_sign_in`)."""
    flash(str(login.login_message), "message")
    return redirect(url_for("dashboard.sign_in", next=returning.before_sign_in()))


# `/dashboard/login` is the address API.md ("Pages") gives; `/dashboard/sign-in`, its name before, still
# answers (bookmarks). The rule registered first (the lower decorator) is the one `url_for` builds.
@bp.route("/sign-in", methods=["GET", "POST"])
@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(SIGN_IN_LIMIT, methods=["POST"], key_func=_sign_in_key)
@limiter.limit(ADDRESS_LIMIT, methods=["POST"])
@public
def sign_in():
    form = SignInForm()
    if form.validate_on_submit():
        try:
            info = operators.authenticate(db(), form.username.data, form.password.data)
        except DomainError:
            flash(_("Wrong username or password."), "error")
            return render_template("dashboard/sign_in.html", form=form), 401
        _clear_keeping_language()
        session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME (web/app.py)
        login_user(User(info))
        return redirect(returning.after_sign_in(request.args.get("next")))
    return render_template("dashboard/sign_in.html", form=form)


@bp.post("/sign-out")
@requires("viewer")
def sign_out():
    """Ends every session of this operator, not just this browser's: a copy of the cookie dies with it."""
    operators.end_sessions(db(), current_user.id)
    logout_user()
    _clear_keeping_language()
    return redirect(url_for("dashboard.sign_in"))


def _clear_keeping_language() -> None:
    """Empty the session cookie but for the reader's chosen language (nothing of the operator stays)."""
    lang = session.get("lang")
    session.clear()
    if lang in LOCALES:
        session["lang"] = lang


@bp.post("/language")
@public
def language():
    form = LanguageForm()
    if form.validate_on_submit() and form.lang.data in LOCALES:
        session["lang"] = form.lang.data
    return redirect(returning.page_of(request.form.get("next")) or url_for("dashboard.overview"))
