"""Every HTTP request's id (`workflows/correlation.py`): taken from the caller's `X-Request-Id` when it is
safe to keep, else made; current while the request runs (log lines, history rows and events carry it) and
answered in `X-Request-Id` on every answer, errors included (problem+json bodies also say `request_id`)."""
from __future__ import annotations

from flask import Flask, g, request

from workflows import correlation

HEADER = "X-Request-Id"


def init_app(app: Flask) -> None:
    """Registered first, so the id is current before any other hook (a rate limit, a role check) runs."""
    app.before_request_funcs.setdefault(None, []).insert(0, _begin)
    app.after_request(_answer)
    app.teardown_request(_end)


def _begin() -> None:
    key = request.headers.get("Idempotency-Key") if request.path.startswith("/api/") else None
    context = correlation.RequestContext(correlation.request_id(request.headers.get(HEADER)),
                                         key if request.method != "GET" else None)  # checked if an event takes it
    g.gongji_request_token = correlation.begin(context)


def _answer(response):
    found = correlation.current_id()
    if found is not None:
        response.headers[HEADER] = found
    return response


def _end(_exc=None) -> None:
    token = g.pop("gongji_request_token", None)
    if token is not None:
        correlation.end(token)
