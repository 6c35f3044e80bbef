"""Operator repairs of a platform's traffic rather than of one binding: retry an inbound webhook, replay a
platform's dead deliveries. Each is audited like `repair`'s actions (a refusal too, with its code).

`retry_webhook`: a webhook whose processing gave up (`failed:<error>`, or `conflict` after MAX_ATTEMPTS) or
that is still pending is reset to pending (no outcome, attempts 0, no error) and handed to the worker
again, in one transaction with its audit row. The row is locked first (`FOR UPDATE`), so the database
decides a race with the worker: the worker's statements on the row (`once.run_once`: take, record the
outcome) wait for the retry, or the retry reads what the worker recorded and refuses a webhook that was
processed meanwhile. A gave-up webhook gets a new outbox row, `webhook.received`, as `webhooks.receive`
writes it on ingest. A pending one still has its own (unprocessed: a failed run leaves it for the
worker's retry): that row is published again rather than a second one written, because a webhook has no
lease of its own, one outbox row carries it (`workflows/once.py`), and two could run it at once. A webhook
refused by a rule is final: the rule would refuse it again (`illegal_transition`).

`replay_dead`: the dead deliveries of one platform (or one of them) get a fresh retry schedule through
`delivery_repair.replay`, whose selection and order `gongji deliveries replay --platform` shares
(`replay_from_console`), so the dashboard and the command line replay the same rows the same way; another
platform's dead deliveries stay as they are.
That function commits its own transaction; the audit row and the internal event that sends what may
leave now (`routing.RETRY_TOPIC`) follow in a second one (should that fail, the scheduler's delivery
pass sends them: they are due)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from models import Delivery, OutboxMessage, ReceivedWebhook

from . import delivery_repair, free_text, inbound, platforms, routing, webhooks
from .errors import DomainError
from .operators import OperatorInfo, record, record_refusal
from .repair import check_allowed, clean_reason
from .unit import command

ROLE_FOR = {"webhook_retry": "operator", "deliveries_replay": "operator", "delivery_replay": "operator"}
RW, OB, D = ReceivedWebhook.__table__, OutboxMessage.__table__, Delivery.__table__
_LOCK = sa.select(RW.c.platform_id, RW.c.webhook_id, RW.c.type, RW.c.processed_at, RW.c.outcome, RW.c.attempts,
                  RW.c.binding_id).where(RW.c.id == sa.bindparam("rid")).with_for_update()
_RESET = sa.update(RW).where(RW.c.id == sa.bindparam("rid")).values(processed_at=None, outcome=None, attempts=0,
                                                                    last_error=None)
# its own outbox rows still to be processed (ix_outbox_pending: the unprocessed rows only)
_CARRIERS = sa.select(OB.c.id).where(OB.c.processed_at.is_(None), OB.c.topic == webhooks.TOPIC,
                                     OB.c.payload[("data", "received_webhook_id")].as_integer() == sa.bindparam("rid"))


def retry_webhook(db, who: OperatorInfo, received_id: int, reason: str | None, *,
                  now: datetime | None = None) -> dict:
    """Hand a gave-up or pending webhook to the worker again (see the module docstring); what was done."""
    binding_id = None
    try:
        why = check_allowed(who, "webhook_retry", reason, ROLE_FOR)
        with command(db, now=now) as cmd:
            s = cmd.session
            found = s.execute(_LOCK, {"rid": received_id}).first()
            if found is None:
                raise DomainError("not_found", f"no received webhook {received_id}")
            binding_id = found.binding_id
            kind = inbound.kind_of(found.processed_at, found.outcome, found.attempts)
            if kind not in inbound.RETRYABLE:
                raise DomainError("webhook_final", "a webhook refused by a rule is final" if kind == "refused"
                                  else f"the webhook was processed ({found.outcome}): nothing to retry")
            s.execute(_RESET, {"rid": received_id})
            carriers = [] if kind == "failed" else list(s.scalars(_CARRIERS, {"rid": received_id}))
            if carriers:
                cmd.messages += carriers  # published again after commit
            else:
                cmd.emit(webhooks.TOPIC, {"received_webhook_id": received_id})
            detail = {"received_webhook_id": received_id, "platform_id": found.platform_id, "type": found.type,
                      "webhook_id": free_text.clean(found.webhook_id), "was": found.outcome or kind,
                      "attempts": found.attempts, "requeued": "again" if carriers else "new"}
            record(s, who, "webhook_retry", binding_id=binding_id, now=cmd.now, detail=detail,
                   reason=free_text.clean_about_binding(s, why, binding_id))
            return detail
    except DomainError as exc:
        record_refusal(db, who, "webhook_retry", exc, binding_id=binding_id, reason=clean_reason(reason))
        raise


def replay_dead(db, who: OperatorInfo, platform_id: str, reason: str | None, *, delivery_id: int | None = None,
                now: datetime | None = None) -> dict:
    """Replay the platform's dead deliveries (or the one `delivery_id`, which must be one of them)."""
    binding_id = None
    action = "deliveries_replay" if delivery_id is None else "delivery_replay"  # a platform's, or one of them
    try:
        why = check_allowed(who, action, reason, ROLE_FOR)
        platforms.get(db, platform_id)  # not_found for a platform nobody registered
        mine = (D.c.platform_id == platform_id, D.c.status == "dead")
        with db() as s:
            if delivery_id is None:
                dead = s.scalar(sa.select(sa.func.count()).select_from(D).where(*mine))
            else:
                found = s.execute(sa.select(D.c.binding_id).where(D.c.id == delivery_id, *mine)).first()
                dead, binding_id = (1, found.binding_id) if found is not None else (0, None)
        if not dead:
            raise DomainError("nothing_to_replay", f"no dead delivery to {platform_id}" if delivery_id is None
                              else f"delivery {delivery_id} to {platform_id} is not dead")
        ready = delivery_repair.replay(db, ids=[delivery_id] if delivery_id is not None else None,
                                       platform_id=platform_id, now=now)
        detail = {"platform_id": platform_id, "dead": dead, "sent_now": len(ready),
                  **({"delivery_id": delivery_id} if delivery_id is not None else {})}
        with command(db, now=now) as cmd:
            if ready:
                cmd.emit(routing.RETRY_TOPIC, {"deliveries": ready})
            record(cmd.session, who, action, binding_id=binding_id, now=cmd.now, detail=detail,
                   reason=free_text.clean_about_binding(cmd.session, why, binding_id))
        return detail
    except DomainError as exc:
        record_refusal(db, who, action, exc, binding_id=binding_id, reason=clean_reason(reason),
                       detail={"platform_id": free_text.clean(platform_id, limit=64),  # (typed into a URL)
                               **({"delivery_id": delivery_id} if delivery_id is not None else {})})
        raise
