"""`/metrics` in the Prometheus text format: HTTP requests per route and status with their latency, and the
workflow gauges an operator's alerts watch (`workflows.gauges`; the rules are docs/alerts.yml).

Under gunicorn each worker process counts its own requests, and a scrape reaches one of them. `gongji web`
points PROMETHEUS_MULTIPROC_DIR at a directory (a fresh temporary one, or the one set, emptied at start), so
prometheus_client keeps the counts in files there and a scrape answered by any process sums them all. The
gauges are read from the database, so any process gives the same answer. A failed read does not fail the
scrape: `gongji_workflow_gauges_up` is 0 and the HTTP counts are still served.

With GONGJI_METRICS_TOKEN set, only `Authorization: Bearer <that token>` is answered (the counts per route
and status are nobody else's business)."""
from __future__ import annotations

import hmac
import logging
import os
import re
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from models.types import seconds_since, utcnow
from workflows import gauges
from workflows.errors import database_error_reason, database_unreachable

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)
REQUESTS = Counter("gongji_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("gongji_http_request_seconds", "HTTP request latency (s)", ["endpoint"])
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
UP_DOC = "1 if the workflow gauges were read from the database"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# the files prometheus_client's multiprocess mode writes (counter_<pid>.db, gauge_livesum_<pid>.db, …)
_COUNT_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_\d+\.db$")


def instrument(app) -> None:
    """Count every request by route (the rule, not the path: bounded), method (any other: OTHER) and status.
    In multiprocess mode the directory must exist before the first count: made here if it does not."""
    if os.environ.get(MULTIPROC):
        os.makedirs(os.environ[MULTIPROC], exist_ok=True)

    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _count(resp):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METHODS else "OTHER"
        REQUESTS.labels(method, endpoint, str(resp.status_code)).inc()
        LATENCY.labels(endpoint).observe(time.perf_counter() - getattr(g, "_t0", time.perf_counter()))
        return resp


def _family(name: str, doc: str, label: str | None, values: dict | float):
    family = GaugeMetricFamily(name, doc, labels=[label] if label else None)
    if label is None:
        family.add_metric([], values)
    else:
        for key, value in values.items():
            family.add_metric([key], value)
    return family


class WorkflowGauges:
    """A custom collector: one `gauges.read` a scrape (cached there), as gauge families; the app's
    extensions give the database and, where a broker is wired (`queue_depth`), the queue."""

    def __init__(self, ext: dict):
        self.ext = ext

    def collect(self):
        try:
            r = gauges.read(self.ext["db"])
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer: the up gauge says what failed
            if database_unreachable(exc):  # an outage: a line a scrape, not a traceback
                log.warning("workflow gauges could not be read: the database cannot be reached (%s)",
                            database_error_reason(exc))
            else:
                log.exception("workflow gauges could not be read")
            yield _family("gongji_workflow_gauges_up", UP_DOC, None, 0)
            return
        since = seconds_since(r.as_of, utcnow())  # a cached reading's ages grow meanwhile

        def age(v: float) -> float:
            return v + since if v else 0.0

        yield _family("gongji_workflow_gauges_up", UP_DOC, None, 1)
        yield _family("gongji_workflow_gauges_age_seconds", "How old the oldest part of the reading served is "
                      "(sync_behind's count)", None, since + seconds_since(r.stuck_as_of, r.as_of))
        yield _family("gongji_bindings_stuck", "Bindings stuck, per reason (DESIGN §2)", "reason", r.stuck)
        p = r.platforms
        yield _family("gongji_platform_unacknowledged", "Deliveries a platform has not acknowledged", "platform",
                      {k: v["behind"] for k, v in p.items()})
        yield _family("gongji_platform_deliveries_dead", "Dead-lettered deliveries (wait for a replay)", "platform",
                      {k: v["dead"] for k, v in p.items()})
        yield _family("gongji_platform_deliveries_failing", "Open deliveries tried and failed, still retrying",
                      "platform", {k: v["failing"] for k, v in p.items()})
        yield _family("gongji_platform_oldest_open_delivery_age_seconds",
                      "Age of the oldest delivery still being tried, pending or failing (0: none)", "platform",
                      {k: age(v["oldest_open_age_s"]) for k, v in p.items()})
        i = r.inbound
        yield _family("gongji_inbound_webhooks_pending", "Stored inbound webhooks not processed yet", "platform",
                      {k: v["pending"] for k, v in i.items()})
        yield _family("gongji_inbound_webhooks_retrying", "Pending inbound webhooks whose processing failed "
                      "and is retried", "platform", {k: v["retrying"] for k, v in i.items()})
        yield _family("gongji_inbound_webhooks_failed", "Inbound webhooks that gave up, received in the last "
                      "7 days (an operator may retry them)", "platform", {k: v["failed"] for k, v in i.items()})
        yield _family("gongji_inbound_webhooks_oldest_untried_age_seconds",
                      "Age of the oldest stored inbound webhook no worker has tried yet (0: none)", "platform",
                      {k: age(v["oldest_untried_age_s"]) for k, v in i.items()})
        yield _family("gongji_outbox_unprocessed", "Outbox events no worker has handled yet", None,
                      r.outbox["unprocessed"])
        yield _family("gongji_outbox_with_error", "Unhandled outbox events a worker failed on", None,
                      r.outbox["with_error"])
        yield _family("gongji_outbox_oldest_unprocessed_age_seconds",
                      "Age of the oldest outbox event no worker has handled nor failed on (0: none)", None,
                      age(r.outbox["oldest_age_s"]))
        yield _family("gongji_processes_running", "Worker and scheduler processes seen in the last minute "
                      "(scheduler: the active one; scheduler_standby: those waiting for its lock)", "process",
                      r.processes["running"])
        yield _family("gongji_process_last_seen_age_seconds", "Seconds since a process of the kind was last "
                      "seen running (-1: none in the last day)", "process",
                      {k: age(v) if v >= 0 else -1.0 for k, v in r.processes["last_seen_age_s"].items()})
        depth = self.ext["queue_depth"]() if self.ext.get("queue_depth") else {}
        known = {k: v for k, v in depth.items() if v is not None}
        if known:
            yield _family("gongji_queue_messages", "Messages in the worker queue (the broker's)", "state", known)


def registry_for(app) -> CollectorRegistry:
    """The workflow gauges' registry of this app (made once; the HTTP counts live elsewhere)."""
    ext = app.extensions["gongji"]
    if "metrics_registry" not in ext:
        registry = CollectorRegistry()
        registry.register(WorkflowGauges(ext))
        ext["metrics_registry"] = registry
    return ext["metrics_registry"]


def _http_counts() -> bytes:
    if os.environ.get(MULTIPROC):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


@bp.get("/metrics")
def metrics():
    token = current_app.extensions["gongji"]["settings"].metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response("metrics need the bearer token (GONGJI_METRICS_TOKEN)\n", status=401,
                            mimetype="text/plain", headers={"WWW-Authenticate": "Bearer"})
    answer = Response(_http_counts() + generate_latest(registry_for(current_app)))
    answer.headers["Content-Type"] = CONTENT_TYPE_LATEST  # as is: `mimetype=` would add a second charset
    return answer


def prepare_multiprocess_dir(environ: dict) -> str:
    """For `gongji web` before it starts gunicorn: the directory the worker processes keep their counts in,
    rid of an earlier run's count files (they would be summed in; nothing else in it is touched); a fresh
    temporary one unless the variable is set."""
    import tempfile

    path = environ.get(MULTIPROC) or tempfile.mkdtemp(prefix="gongji-metrics-")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if _COUNT_FILE.match(name):
            os.remove(os.path.join(path, name))
    environ[MULTIPROC] = path
    return path
