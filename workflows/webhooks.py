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


def receive(db, *, platform, webhook_id: str, body: bytes, headers: dict, event_type: str) -> tuple[int, bool]:
    """Store a verified webhook; returns (row id, duplicate)."""
    allowed = SENDERS.get(event_type, ("national", "province"))
    if platform.kind not in allowed:
        raise DomainError("not_your_binding", f"a {platform.kind} platform may not send {event_type}")
    now = utcnow()
    session = db()
    try:
        with session.begin():
            existing = session.scalar(sa.select(ReceivedWebhook.id).where(
                ReceivedWebhook.platform_id == platform.id, ReceivedWebhook.webhook_id == webhook_id))
            if existing is not None:
                return existing, True
            row = ReceivedWebhook(platform_id=platform.id, webhook_id=webhook_id, type=event_type,
                                  body=body.decode("utf-8"), headers=headers, received_at=now, attempts=0)
            session.add(row)
            session.flush()
            msg = outbox.write(session, "webhook.received", now, {"received_webhook_id": row.id})
        outbox.published([msg])
        return row.id, False
    except sa.exc.IntegrityError:  # the same webhook-id arrived concurrently: the other one stored it
        with db() as s:
            return s.scalar(sa.select(ReceivedWebhook.id).where(
                ReceivedWebhook.platform_id == platform.id, ReceivedWebhook.webhook_id == webhook_id)), True
    finally:
        session.close()


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
