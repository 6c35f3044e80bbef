"""`/healthz` (the process answers) and `/readyz` (the database answers); `/metrics` is web/metrics.py.

Readiness is the database alone: without Redis the API still answers and writes its outbox rows (they are
sent when Redis is back), so a load balancer must not take every web process out during a Redis outage.
Redis is reported in the answer (`checks.redis`, status `degraded`), still 200."""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from workflows.errors import database_error_reason

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    ext = current_app.extensions["gongji"]
    checks = {}
    try:
        with ext["engine"].connect() as conn:
            conn.execute(sa.text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
        checks["database"] = f"error: {type(exc).__name__}"  # the answer is public: the cause goes to the log
        log.warning("not ready: the database does not answer (%s)", database_error_reason(exc))
    if ext["settings"].redis_url:
        try:
            import redis
            redis.Redis.from_url(ext["settings"].redis_url, socket_timeout=1).ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"error: {type(exc).__name__}"
    if checks["database"] != "ok":
        return jsonify({"status": "unavailable", "checks": checks}), 503
    return jsonify({"status": "ok" if all(v == "ok" for v in checks.values()) else "degraded", "checks": checks})
