"""Where an operator is sent back to: after signing in (`next`), by the language switch, from an error page.

Why: a form's action (`/dashboard/bindings/<id>/expire`, `/dashboard/find`, `/dashboard/batches`) only takes
a POST. Sent to it again by a GET (after signing in, after switching the language) the operator lands on a
405. So a target that is not a page is replaced by the page its action belongs to: the binding it names,
the webhook (a retry), the platform's deliveries (a replay), the list (a look-up, a batch), else the overview. A referrer or `next` counts only when it is a dashboard
URL of this site; what comes back is a path (with its query), never another host. Nothing here puts an ID
number into a URL: a look-up is POSTed, and its page is the list without it."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed

PREFIX = "/dashboard"
_LIST_ACTIONS = {"dashboard.find_person", "dashboard.start_batch"}  # their form is on the list's pages
_SETTLEMENT_ACTIONS = {"dashboard.find_settlements"}  # its form is on the settlements' pages


def _inside(target: str | None) -> str | None:
    """`target` as a path with its query, if it is a dashboard URL of this site (relative, or this host)."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc) and (parts.scheme not in ("http", "https") or parts.netloc != request.host):
        return None
    if parts.path != PREFIX and not parts.path.startswith(PREFIX + "/"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page_of(target: str | None, *, not_to: tuple[str, ...] = ()) -> str | None:
    """The dashboard page `target` is, or the page its action belongs to when it only takes a POST; None
    for anything outside the dashboard or unknown. A page whose endpoint is in `not_to` counts as unknown."""
    inside = _inside(target)
    if inside is None:
        return None
    adapter = current_app.create_url_adapter(request)
    path = urlsplit(inside).path
    try:
        endpoint, _ = adapter.match(path, method="GET")
        return None if endpoint in not_to else inside
    except MethodNotAllowed:
        pass
    except HTTPException:  # no such page (or a redirect of one): nothing to go back to
        return None
    try:
        endpoint, args = adapter.match(path, method="POST")
    except HTTPException:
        return None
    if "binding_id" in args:
        return url_for("dashboard.binding", binding_id=args["binding_id"])
    if "received_id" in args:  # a webhook's retry: its page
        return url_for("dashboard.webhook", received_id=args["received_id"])
    if "platform_id" in args:  # a replay of a platform's dead deliveries: that platform's deliveries
        return url_for("dashboard.deliveries", platform=args["platform_id"])
    if "settlement_id" in args:  # a settlement's reversal: its page
        return url_for("dashboard.settlement", settlement_id=args["settlement_id"])
    if endpoint in _SETTLEMENT_ACTIONS:
        return url_for("dashboard.settlements")
    return url_for("dashboard.bindings" if endpoint in _LIST_ACTIONS else "dashboard.overview")


def _here() -> str:
    return request.full_path.rstrip("?")


def after_sign_in(target: str | None) -> str:
    """A `next` to follow after signing in: a dashboard page (the sign-in page itself is none), else the overview."""
    return page_of(target, not_to=("dashboard.sign_in",)) or url_for("dashboard.overview")


def before_sign_in() -> str:
    """The `next` for a request that needs a session: the page asked for; for a form sent (a POST), the page
    the form was on (the referrer, when it is a dashboard page here), else the page its action belongs to."""
    if request.method == "GET":
        return _here()
    return page_of(request.referrer, not_to=("dashboard.sign_in",)) or after_sign_in(_here())


def language_next() -> str:
    """Where the language switch returns: this page; for a page answering a POST (a failed sign-in, a
    look-up's results, a revealed identity), the page itself when it is one (the sign-in form, its `next`
    kept), else the page its action belongs to (the list, the binding)."""
    return page_of(_here()) or url_for("dashboard.overview")


def back_link() -> str | None:
    """A link back to the page a refused form came from (the referrer, when it is a dashboard page of this
    site), else to the page its action belongs to; None when neither is known."""
    return page_of(request.referrer, not_to=("dashboard.sign_in",)) or page_of(
        _here(), not_to=("dashboard.sign_in", "dashboard.overview", "dashboard.root"))
