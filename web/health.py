"""`/healthz` (the process answers), `/readyz` (the database answers) and `/metrics` (Prometheus text format).

Readiness is the database alone: without Redis the API still answers and writes its outbox rows (they are
sent when Redis is back), so a load balancer must not take every web process out during a Redis outage.
Redis is reported in the answer (`checks.redis`, status `degraded`), still 200."""
from __future__ import annotations

import hmac
import time

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

bp = Blueprint("health", __name__)
REQUESTS = Counter("gongji_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("gongji_http_request_seconds", "HTTP request latency (s)", ["endpoint"])


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
        checks["database"] = f"error: {type(exc).__name__}"
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


@bp.get("/metrics")
def metrics():
    """Prometheus text; with GONGJI_METRICS_TOKEN set, only for `Authorization: Bearer <that token>` (the
    request counts per endpoint and status are nobody else's business)."""
    token = current_app.extensions["gongji"]["settings"].metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("metrics need the bearer token (GONGJI_METRICS_TOKEN)\n", status=401,
                            mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def instrument(app) -> None:
    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _count(resp):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(resp.status_code)).inc()
        LATENCY.labels(endpoint).observe(time.perf_counter() - getattr(g, "_t0", time.perf_counter()))
        return resp
