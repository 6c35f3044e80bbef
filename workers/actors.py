"""Actors. Each receives an outbox id, is idempotent (a row already processed is skipped) and survives
redelivery; failures are recorded on the row and retried by dramatiq with backoff (max 10 retries,
1 s to 5 min); the periodic relay pass re-sends anything still unprocessed after that."""
from __future__ import annotations

import dramatiq

from models import OutboxMessage
from workflows import webhooks
from workflows.once import run_once

from . import runtime
from .broker import QUEUE


def _handle(topic: str, payload: dict) -> str:
    if topic == "webhook.received":
        return webhooks.process(runtime.db(), payload["data"]["received_webhook_id"])
    # binding.* events: delivery to platforms is not built yet; the outbox row is the durable record
    return "recorded"


@dramatiq.actor(queue_name=QUEUE, max_retries=10, min_backoff=1_000, max_backoff=300_000)
def process_outbox(outbox_id: int) -> None:
    run_once(runtime.db(), OutboxMessage, outbox_id, lambda msg: _handle(msg.topic, msg.payload))
