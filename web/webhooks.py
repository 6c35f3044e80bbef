"""`POST /webhooks/<platform>`: Standard Webhooks verification of the raw bytes (5-minute tolerance),
then the webhook is stored (deduplicated on webhook-id) and answered; a worker processes it.

The only state-changing route without a CSRF token: the signature is its authentication."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, request
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from workflows import platforms, webhooks
from workflows.errors import DomainError

from .api.problems import problem

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@bp.post("/webhooks/<platform_id>")
def receive(platform_id: str):
    db = current_app.extensions["gongji"]["db"]
    try:
        platform = platforms.get(db, platform_id)
    except DomainError:
        return problem("not_found", "unknown platform")
    headers = {h: request.headers.get(h, "") for h in HEADERS}
    if not all(headers.values()):
        return problem("bad_signature", "webhook-id, webhook-timestamp and webhook-signature are required")
    raw = request.get_data(cache=False)
    refusal = _verify(platform.signing_secrets(), raw, headers)
    if refusal is not None:
        return refusal
    try:
        payload = json.loads(raw)
        event_type = payload["type"]
        if not isinstance(event_type, str) or not isinstance(payload.get("data"), dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):
        return problem("malformed", "the body is {type, data} JSON")
    if event_type not in webhooks.TYPES:
        return problem("validation_failed", "unknown webhook type")
    _row_id, duplicate = webhooks.receive(db, platform=platform, webhook_id=headers["webhook-id"], body=raw,
                                          headers=headers, event_type=event_type)
    status = 200 if duplicate else 202
    # the webhook-id, not the row's id: that counts every platform's webhooks, which no platform may learn
    return Response(json.dumps({"received": headers["webhook-id"], "duplicate": duplicate}), status=status,
                    mimetype="application/json")


def _verify(secrets, raw: bytes, headers: dict):
    """None if a signature verifies with one of the platform's secrets (two during a rotation), else the
    problem answer. A malformed signature header raises ValueError in standardwebhooks 1.1."""
    refusal = None
    for secret in secrets:
        try:
            hook = Webhook(secret)
        except (ValueError, EmptyWebhookSecretError):  # stored before `platform_checks` refused such a secret:
            log.error("a webhook secret of this platform is not base64; it verifies nothing")  # the other may
            continue
        try:
            hook.verify(raw, headers, json_parse=False)
            return None
        except WebhookVerificationError as exc:
            code = "stale_timestamp" if "timestamp" in str(exc).lower() else "bad_signature"
            refusal = problem(code, str(exc))
            if code == "stale_timestamp":
                return refusal
        except ValueError:
            return problem("bad_signature", "the webhook-signature header is malformed")
    return refusal or problem("bad_signature", "no signature verifies")
