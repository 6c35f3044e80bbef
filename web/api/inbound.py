"""What became of a webhook a platform sent (`GET /api/v1/webhooks/{webhook_id}`): a webhook is answered
202 once stored, and its processing happens later in a worker, so without this a platform could not tell
an applied `person.deceased` from one refused (an unknown person) or still being retried."""
from __future__ import annotations

from flask import g

from workflows import platforms, webhooks

from . import db, endpoint
from .schemas import WebhookStatus


@endpoint("GET", "/webhooks/{webhook_id}", "What became of a webhook this platform sent, by its webhook-id: "
          "pending or processed, and its outcome (percent-encode a `/` in the id)", answer=WebhookStatus,
          tag="webhooks", codes=("not_found",), any_text=("webhook_id",), kinds=platforms.KINDS)
def webhook_status(webhook_id: str):
    return webhooks.status(db(), g.platform.id, webhook_id)
