"""A floor for durable webhook ingest: the least a handler on this stack that commits each request does
before it may answer 2xx.

Same gunicorn settings as `gongji web` and `bare_flask.py` (served by `bench/webhooks.py`). Per request:
verify the Standard Webhooks signature (the same library, one secret), then one statement in autocommit on
a connection kept by the thread, prepared: INSERT the raw body keyed on webhook-id, ON CONFLICT DO NOTHING
(the dedupe); the COMMIT waits for the WAL's fsync. One round trip to PostgreSQL, answer 202. Nothing else:
no platform look-up, no encryption, no outbox row, no worker wake-up, no metrics, no problem+json, no
SQLAlchemy (through its engine the same handler measured 0.29 of bare Flask instead of 0.42, 2026-11-25).
Gongji's ingest does all of those, and shares one statement and one commit among the concurrent requests
of a process (group commit, 3.1–3.5 webhooks a statement in the benchmark), which `app` does not:
it is the least for a handler that commits each request, not for every design. It is CPU-bound, not
waiting (2 × 8 and 2 × 32 threads measured alike).

`group_app` is the same handler with group commit, as Gongji's (`workflows.group_commit`, the same class):
the concurrent requests of a process share one `INSERT … SELECT FROM unnest(…)` and its commit. It is the
floor for a design that stores before it answers and shares commits, the one the issue's ingest target
has to be measured against.

Environment: FLOOR_DATABASE_URL (a database the bench made; libpq form), FLOOR_SECRET (the whsec_ secret)."""
from __future__ import annotations

import os
import threading

import psycopg
from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from workflows.group_commit import GroupCommit

app = Flask(__name__)
group_app = Flask(__name__ + ".group")
URL = os.environ["FLOOR_DATABASE_URL"]
verifier = Webhook(os.environ["FLOOR_SECRET"])
INSERT = "insert into floor_webhooks(webhook_id, body) values (%s, %s) on conflict do nothing"
INSERT_MANY = ("insert into floor_webhooks(webhook_id, body) select * from unnest(%s::text[], %s::text[])"
               " on conflict do nothing")
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_local = threading.local()


def create_table() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("create table if not exists floor_webhooks(id bigserial primary key,"
                     " webhook_id text not null unique, body text not null,"
                     " received_at timestamptz not null default now())")


def _conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(URL, autocommit=True)
    return conn


def _verified() -> tuple[str, bytes] | None:
    raw = request.get_data()
    headers = {h: request.headers.get(h, "") for h in HEADERS}
    try:
        verifier.verify(raw, headers, json_parse=False)
    except WebhookVerificationError:
        return None
    return headers["webhook-id"], raw


@app.post("/webhooks/<platform_id>")
def receive(platform_id: str):
    found = _verified()
    if found is None:
        return {"error": "bad signature"}, 401
    _conn().execute(INSERT, (found[0], found[1].decode()), prepare=True)
    return {"received": platform_id}, 202


def _write_many(rows):
    """One statement and one commit for the batch (on the connection of the thread that writes it)."""
    _conn().execute(INSERT_MANY, ([r[0] for r in rows], [r[1] for r in rows]), prepare=True)
    return [None] * len(rows)


_group = GroupCommit(_write_many)


@group_app.post("/webhooks/<platform_id>")
def receive_grouped(platform_id: str):
    found = _verified()
    if found is None:
        return {"error": "bad signature"}, 401
    _group.submit((found[0], found[1].decode()))
    return {"received": platform_id}, 202


@group_app.get("/")
def group_ready():
    return {"ok": True}


@app.get("/")
def ready():
    return {"ok": True}
