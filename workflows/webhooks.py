"""Inbound webhooks: stored first (with an outbox row that gets them processed), processed by a worker.

`receive` runs inside the HTTP request after the signature was verified: one transaction stores the raw
body (encrypted: it may carry ID numbers) and its headers, deduplicated on (platform, webhook-id).
`process` applies it once; a rule refusal is a final outcome, anything else (also `conflict`: a concurrent
change won) is retried by the worker. Person, relationship and unbind events are `person_events`."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa

from models import ReceivedWebhook
from models.types import new_id, utcnow

from . import outbox, person_events, platforms
from .errors import DomainError
from .once import run_once
from .statements import PerDialect, Statement, autocommit
from .verification import record_verification_result

TYPES = ("verification.completed", "person.updated", "person.deceased", "relationship.ended",
         "binding.unbind_requested")
# which platform kinds may send which type
SENDERS = {"verification.completed": ("verifier",)}


RW = ReceivedWebhook.__table__
TOPIC = "webhook.received"
_FIND = Statement(sa.select(RW.c.id).where(RW.c.platform_id == sa.bindparam("p"),
                                           RW.c.webhook_id == sa.bindparam("w")))
_ROW = {c: sa.bindparam(c, type_=RW.c[c].type)
        for c in ("platform_id", "webhook_id", "type", "body", "headers", "received_at", "attempts")}


def _store(insert):
    """INSERT … ON CONFLICT (platform, webhook-id) DO NOTHING RETURNING id: nothing for a duplicate."""
    return (insert(RW).values(_ROW).on_conflict_do_nothing(index_elements=["platform_id", "webhook_id"])
            .returning(RW.c.id))


def _ingest_pg() -> Statement:
    """The stored row and its outbox row (the envelope of `outbox.message`, built in SQL around the new
    id) in one statement: on PostgreSQL an ingest is one round trip and one transaction."""
    from sqlalchemy.dialects import postgresql
    stored = _store(postgresql.insert).cte("s")
    key, text = sa.literal_column, sa.String

    def envelope_field(name):
        return key(f"'{name}'"), sa.bindparam(f"o_{name}", type_=text)
    envelope = sa.func.json_build_object(
        *envelope_field("type"), *envelope_field("id"), *envelope_field("created_at"),
        key("'data'"), sa.func.json_build_object(key("'received_webhook_id'"), stored.c.id))
    o = outbox.OUTBOX
    queued = sa.insert(o).from_select(
        ["topic", "created_at", "payload", "attempts"],
        sa.select(sa.bindparam("o_type", type_=text), sa.bindparam("received_at", type_=RW.c.received_at.type),
                  envelope, key("0")).select_from(stored)).returning(o.c.id).cte("o")
    return Statement(sa.select(stored.c.id, queued.c.id).select_from(stored.join(queued, sa.true())))


_INGEST_PG = _ingest_pg()
_STORE_OTHER = PerDialect(_store)  # SQLite: built on first use with that dialect's insert


def receive(db, *, platform, webhook_id: str, body: bytes, headers: dict, event_type: str) -> tuple[int, bool]:
    """Store a verified webhook with the outbox row that gets it processed; returns (row id, duplicate).

    The ingest hot path. The unique (platform, webhook-id) turns a duplicate's INSERT into nothing (also
    for two copies arriving at once). PostgreSQL: one statement in autocommit (`_ingest_pg`); elsewhere
    the INSERT and the outbox INSERT in one transaction."""
    allowed = SENDERS.get(event_type, ("national", "province"))
    if platform.kind not in allowed:
        raise DomainError("not_your_binding", f"a {platform.kind} platform may not send {event_type}")
    now = utcnow()
    row = dict(platform_id=platform.id, webhook_id=webhook_id, type=event_type, body=body.decode("utf-8"),
               headers=headers, received_at=now, attempts=0)
    with autocommit(db) as conn:
        if conn.dialect.name == "postgresql":
            found = _INGEST_PG.first(conn, {**row, "o_type": TOPIC, "o_id": new_id("evt"),
                                            "o_created_at": now.isoformat()})
            stored, msg = found if found is not None else (None, None)
        else:  # one transaction around both inserts
            stored = _STORE_OTHER(conn.dialect.name).scalar(conn, row)
            msg = None if stored is None else outbox.write(conn, TOPIC, now, {"received_webhook_id": stored})
        if stored is None:
            return _FIND.scalar(conn, {"p": platform.id, "w": webhook_id}), True
    outbox.published([msg])
    return stored, False


def sent_at(row: ReceivedWebhook) -> datetime:
    """The as-of time of an event without `data.updated_at`: its `webhook-timestamp` (unix seconds)."""
    try:
        return datetime.fromtimestamp(int((row.headers or {}).get("webhook-timestamp")), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return row.received_at


def _apply(db, row: ReceivedWebhook) -> str:
    data = json.loads(row.body).get("data") or {}
    if not isinstance(data, dict):
        raise DomainError("validation_failed", "data is an object")
    if row.type == "verification.completed":
        return record_verification_result(db, verification_id=str(data.get("verification_id")),
                                          binding_id=str(data.get("binding_id")), result=data.get("result"),
                                          verifier_id=row.platform_id, reason=data.get("reason"))
    handler = person_events.HANDLERS.get(row.type)
    if handler is None:
        return "unsupported_type"
    return handler(db, data, platform=platforms.get(db, row.platform_id), as_of=sent_at(row))


def _apply_final(db):
    def work(row: ReceivedWebhook) -> str:
        try:
            return _apply(db, row)
        except DomainError as exc:  # a refusal is the final outcome; other errors are retried
            if exc.code == "conflict":  # a concurrent change won (e.g. the same new person twice): retry
                raise
            return exc.code
    return work


def process(db, received_id: int) -> str:
    """Apply a stored webhook once. Returns its outcome."""
    return run_once(db, ReceivedWebhook, received_id, _apply_final(db))
