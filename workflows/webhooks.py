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
from models.types import utcnow

from . import outbox, person_events, platforms
from .errors import DomainError
from .once import run_once
from .verification import record_verification_result

TYPES = ("verification.completed", "person.updated", "person.deceased", "relationship.ended",
         "binding.unbind_requested")
# which platform kinds may send which type
SENDERS = {"verification.completed": ("verifier",)}


RW = ReceivedWebhook.__table__
_FIND = sa.select(RW.c.id).where(RW.c.platform_id == sa.bindparam("p"), RW.c.webhook_id == sa.bindparam("w"))
_STORE: dict[str, sa.Insert] = {}  # per dialect: INSERT … ON CONFLICT (platform, webhook-id) DO NOTHING


def _store_statement(dialect: str):
    if dialect not in _STORE:
        from sqlalchemy.dialects import postgresql, sqlite
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _STORE[dialect] = (insert(RW).on_conflict_do_nothing(index_elements=["platform_id", "webhook_id"])
                           .returning(RW.c.id))
    return _STORE[dialect]


def receive(db, *, platform, webhook_id: str, body: bytes, headers: dict, event_type: str) -> tuple[int, bool]:
    """Store a verified webhook with the outbox row that gets it processed; returns (row id, duplicate).

    The ingest hot path: one INSERT that the unique (platform, webhook-id) turns into nothing for a duplicate
    (also for two copies arriving at once), one outbox INSERT, one commit; statements built once."""
    allowed = SENDERS.get(event_type, ("national", "province"))
    if platform.kind not in allowed:
        raise DomainError("not_your_binding", f"a {platform.kind} platform may not send {event_type}")
    now = utcnow()
    with db.begin() as session:
        stored = session.execute(_store_statement(session.get_bind().dialect.name), dict(
            platform_id=platform.id, webhook_id=webhook_id, type=event_type, body=body.decode("utf-8"),
            headers=headers, received_at=now, attempts=0)).scalar()
        if stored is None:
            return session.execute(_FIND, {"p": platform.id, "w": webhook_id}).scalar_one(), True
        msg = outbox.write(session, "webhook.received", now, {"received_webhook_id": stored})
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
