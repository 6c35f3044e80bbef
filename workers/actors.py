"""Actors. Each receives an outbox id, is idempotent (a row already processed is skipped) and survives
redelivery; failures are recorded on the row and retried by dramatiq with backoff (max 10 retries,
1 s to 5 min); the periodic relay pass re-sends anything still unprocessed after that."""
from __future__ import annotations

import dramatiq

from models import OutboxMessage
from models.types import utcnow
from workflows import webhooks

from . import runtime
from .broker import QUEUE


def _handle(topic: str, payload: dict) -> str:
    if topic == "webhook.received":
        return webhooks.process(runtime.db(), payload["data"]["received_webhook_id"])
    # binding.* events: delivery to platforms is not built yet; the outbox row is the durable record
    return "recorded"


@dramatiq.actor(queue_name=QUEUE, max_retries=10, min_backoff=1_000, max_backoff=300_000)
def process_outbox(outbox_id: int) -> None:
    db = runtime.db()
    with db.begin() as s:
        msg = s.get(OutboxMessage, outbox_id)
        if msg is None or msg.processed_at is not None:
            return
        msg.attempts += 1
        topic, payload = msg.topic, msg.payload
    try:
        _handle(topic, payload)
    except Exception as exc:
        with db.begin() as s:
            s.get(OutboxMessage, outbox_id).last_error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    with db.begin() as s:
        row = s.get(OutboxMessage, outbox_id)
        row.processed_at, row.last_error = utcnow(), None
