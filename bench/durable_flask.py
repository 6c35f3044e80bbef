"""A floor for durable webhook ingest: the least a handler on this stack that commits each request does
before it may answer 2xx.

Same gunicorn settings as `gongji web` and `bare_flask.py` (served by `bench/webhooks.py`). Per request:
verify the Standard Webhooks signature (the same library, one secret), then one statement in autocommit on
a connection kept by the thread, prepared: INSERT the raw body keyed on webhook-id, ON CONFLICT DO NOTHING
(the dedupe); the COMMIT waits for the WAL's fsync. One round trip to PostgreSQL, answer 202. Nothing else:
no platform look-up, no encryption, no outbox row, no worker wake-up, no metrics, no problem+json, no
SQLAlchemy (through its engine the same handler measured 0.29 of bare Flask instead of 0.42, 2026-11-25).
Gongji's ingest does all of those, and shares one statement and one commit among the concurrent requests
of a process (group commit, 3.1–3.5 webhooks a statement in the benchmark), which this floor does not:
it is the least for a handler that commits each request, not for every design. It is CPU-bound, not
waiting (2 × 8 and 2 × 32 threads measured alike).

Environment: FLOOR_DATABASE_URL (a database the bench made; libpq form), FLOOR_SECRET (the whsec_ secret)."""
from __future__ import annotations

import os
import threading

import psycopg
from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
URL = os.environ["FLOOR_DATABASE_URL"]
verifier = Webhook(os.environ["FLOOR_SECRET"])
INSERT = "insert into floor_webhooks(webhook_id, body) values (%s, %s) on conflict do nothing"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_local = threading.local()


def create_table() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("create table if not exists floor_webhooks(id bigserial primary key,"
                     " webhook_id text not null unique, body text not null,"
                     " received_at timestamptz not null default now())")


@app.post("/webhooks/<platform_id>")
def receive(platform_id: str):
    raw = request.get_data()
    headers = {h: request.headers.get(h, "") for h in HEADERS}
    try:
        verifier.verify(raw, headers, json_parse=False)
    except WebhookVerificationError:
        return {"error": "bad signature"}, 401
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(URL, autocommit=True)
    conn.execute(INSERT, (headers["webhook-id"], raw.decode()), prepare=True)
    return {"received": platform_id}, 202


@app.get("/")
def ready():
    return {"ok": True}
