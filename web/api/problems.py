"""RFC 9457 problem+json answers with Gongji's stable `code`; every code is documented at
`/api/v1/problems/<code>`. Details never echo request values (they may be ID numbers)."""
from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from flask import Response, current_app, request
from werkzeug.exceptions import BadRequest, Conflict, ServiceUnavailable

from workflows import correlation
from workflows.errors import (CODES, RETRY_UNREACHABLE_S, DomainError, database_error_reason, database_unreachable,
                             lock_wait_expired, lost_to_concurrent)

from .codes import answer_for

MEDIA = "application/problem+json"
log = logging.getLogger(__name__)


def problem(code: str, detail: str | None = None, *, status: int | None = None, **extra) -> Response:
    listed, detail = answer_for(request.endpoint, code, detail or CODES[code][1])  # the operation's own codes
    if listed != code:  # strict mode (web/api/codes.py): an undeclared code is a 500 naming it
        code, status, extra = listed, None, {}
    default_status, title = CODES[code]
    status = status or default_status
    body = {"type": f"/api/v1/problems/{code}", "title": title, "status": status,
            "detail": detail or title, "code": code, "instance": request.path, **extra}
    if (request_id := correlation.current_id()) is not None:  # to quote to the bureau: its log lines say it
        body["request_id"] = request_id
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA)
    if "retry_after_s" in extra:
        resp.headers["Retry-After"] = str(extra["retry_after_s"])
    if code == "unauthorized":  # RFC 9110: a 401 names the scheme it wants
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gongji"'
    return resp


def from_error(exc: DomainError) -> Response:
    return problem(exc.code, exc.detail, **exc.extra)


def register(app) -> None:
    app.register_error_handler(DomainError, from_error)

    @app.errorhandler(404)
    def _not_found(_e):
        return problem("not_found", "no such resource")

    @app.errorhandler(405)
    def _method(e):
        resp = problem("method_not_allowed", "no such method on this resource")
        if getattr(e, "valid_methods", None):
            resp.headers["Allow"] = ", ".join(e.valid_methods)
        return resp

    @app.errorhandler(413)
    def _too_large(_e):
        return problem("too_large")

    @app.errorhandler(sa.exc.DataError)
    def _unstorable(e):
        """A value the database refuses (a NUL character in a text, a number beyond its column): the client's
        400/422, logged by its type only (the message may hold the value) in case it is ours."""
        log.warning("the database refused a value: %s", type(getattr(e, "orig", e)).__name__)
        if request.path.startswith("/dashboard"):  # the dashboard's own 400 page
            return current_app.handle_http_exception(BadRequest())
        return problem("validation_failed", "a value in the request cannot be stored (e.g. a NUL character)")

    def _database(e):
        """Outside a command (commands answer lock timeouts and lost races themselves): a database that cannot
        be reached now (`database_unreachable`: restarting, failing over, no free connection) is 503
        `unavailable` with a Retry-After, logged in one line (an outage would write a traceback a request);
        a lock wait past PostgreSQL's `lock_timeout` or a transaction the server aborted for a concurrent one
        (deadlock, serialization) is 409 `conflict`, nothing written, try again. Anything else stays a 500."""
        if database_unreachable(e):
            log.warning("database unreachable (%s): answered 503", database_error_reason(e))
            if request.path.startswith("/dashboard"):  # the dashboard's own 503 page
                return current_app.handle_http_exception(ServiceUnavailable(retry_after=RETRY_UNREACHABLE_S))
            return problem("unavailable", retry_after_s=RETRY_UNREACHABLE_S)
        waited = lock_wait_expired(e)  # PostgreSQL's lock_timeout, SQLite's busy timeout
        if not waited and not lost_to_concurrent(e):
            raise e
        if request.path.startswith("/dashboard"):  # the dashboard's own 409 page
            return current_app.handle_http_exception(Conflict())
        return problem("conflict", "another change held the data too long (lock timeout); retry"
                       if waited else "a concurrent change won; retry")

    for cls in (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.InternalError, sa.exc.TimeoutError):
        app.register_error_handler(cls, _database)

    @app.errorhandler(500)
    def _internal(e):
        """An unexpected error (logged by Flask with its traceback): problem+json, never an HTML page
        or the exception's text (it may hold request values)."""
        return problem("internal_error")
