"""RFC 9457 problem+json answers with Gongji's stable `code`; every code is documented at
`/api/v1/problems/<code>`. Details never echo request values (they may be ID numbers)."""
from __future__ import annotations

import json

from flask import Response, request

from workflows.errors import CODES, DomainError

MEDIA = "application/problem+json"


def problem(code: str, detail: str | None = None, *, status: int | None = None, **extra) -> Response:
    default_status, title = CODES[code]
    status = status or default_status
    body = {"type": f"/api/v1/problems/{code}", "title": title, "status": status,
            "detail": detail or title, "code": code, "instance": request.path, **extra}
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA)
    if "retry_after_s" in extra:
        resp.headers["Retry-After"] = str(extra["retry_after_s"])
    return resp


def from_error(exc: DomainError) -> Response:
    return problem(exc.code, exc.detail, **exc.extra)


def register(app) -> None:
    app.register_error_handler(DomainError, from_error)

    @app.errorhandler(404)
    def _not_found(_e):
        return problem("not_found", "no such resource")

    @app.errorhandler(405)
    def _method(_e):
        return problem("not_found", "no such method on this resource", status=405)

    @app.errorhandler(413)
    def _too_large(_e):
        return problem("malformed", "the request body is too large", status=413)
