"""Actors. Each receives an id, is idempotent (a row already processed, or a delivery no longer due, is
skipped) and survives redelivery; failures are recorded on the row and retried by dramatiq with backoff
(max 10 retries, 1 s to 5 min); the periodic passes re-send anything still unprocessed after that.

`process_outbox` handles one outbox event: an inbound webhook to apply, or a binding/settlement event
to fan out into deliveries; `process_outbox_many` the ids a web process gathered into one message.
`deliver` makes one try of one delivery (HTTP outside any transaction), and of each successor its
acknowledgement releases (`workers.sending`); its retry schedule is data (`workflows.deliveries`), so
dramatiq does not retry it.

An actor that meets a database it cannot reach (a restart, a failover) is retried with its backoff like any
failure (`deliver` is left to the scheduler's passes), but logged in one line, not as an error with its
traceback: an outage would write one per message (`outage_is_a_retry`)."""
from __future__ import annotations

import functools
import json
import logging

import dramatiq

from models import OutboxMessage
from workflows import batches, face_sessions, routing, webhooks
from workflows.errors import database_error_reason, database_unreachable
from workflows.once import run_once

from . import outbound, runtime, sending
from .broker import QUEUE

log = logging.getLogger(__name__)


def outage_is_a_retry(fn=None, *, swept: bool = False):
    """Log a database that cannot be reached in one line (the worker would log an error with its traceback
    per message: an outage writes hundreds). Then dramatiq's `Retry`, with the actor's own backoff (its
    retries last minutes, as for any failure); or, `swept`, for an actor dramatiq does not retry (`deliver`:
    its schedule is data), nothing more: the scheduler's next pass sends what is still due."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not database_unreachable(exc):
                    raise
                if swept:
                    log.warning("%s: the database cannot be reached (%s); left to the scheduler's next pass",
                                fn.__name__, database_error_reason(exc))
                    return None
                log.warning("%s: the database cannot be reached (%s); retried", fn.__name__,
                            database_error_reason(exc))
                raise dramatiq.Retry("the database cannot be reached") from None  # no delay: the backoff
        return run
    return wrap(fn) if fn is not None else wrap


def send_deliveries(ids: list[int]) -> None:
    """Deliveries to be sent by any worker process (`deliver` messages)."""
    for delivery_id in ids:
        deliver.send(delivery_id)


def _handle(msg: OutboxMessage) -> str:
    if msg.topic == "webhook.received":
        return webhooks.process(runtime.db(), msg.payload["data"]["received_webhook_id"])
    if msg.topic == batches.TOPIC:  # resumable: a time limit or a crash continues at the job's cursor
        return batches.run(runtime.db(), msg.payload["data"]["batch_id"])
    return "recorded"


@dramatiq.actor(queue_name=QUEUE, max_retries=10, min_backoff=1_000, max_backoff=300_000)
@outage_is_a_retry
def process_outbox(outbox_id: int) -> None:
    """Binding and settlement events: fanned out and marked processed in one transaction (the hot path);
    anything else through `run_once`. Sends after commit are covered by the periodic passes if lost."""
    if not _fan_out(outbox_id).handled:
        run_once(runtime.db(), OutboxMessage, outbox_id, _handle)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def process_outbox_many(ids: list[int]) -> None:
    """Outbox ids a web process gathered into one message (`workers.publisher`), handled one after the
    other as `process_outbox` handles them, except a batch job (it may run for minutes): that one, and any
    id that failed here, goes on alone as a `process_outbox` message with that actor's retries, so one slow
    or failing row does not hold up the rest."""
    for outbox_id in ids:
        try:
            done = _fan_out(outbox_id)
            if done.handled or done.topic is None:
                continue
            if done.topic != batches.TOPIC:
                run_once(runtime.db(), OutboxMessage, outbox_id, _handle)
                continue
        except Exception as exc:  # noqa: BLE001 - retried on its own below
            log.warning("outbox row %s failed in a batch (%s); retried on its own", outbox_id,
                        database_error_reason(exc), exc_info=not database_unreachable(exc))
        process_outbox.send(outbox_id)


def _fan_out(outbox_id: int) -> routing.FanOut:
    """Fan a binding or settlement event out and send what may leave now (`handled`); else nothing."""
    done = routing.fan_out(runtime.db(), outbox_id)
    for verification_id in done.verifications:
        open_face_session.send(verification_id)
    send_deliveries(done.ready)
    return done


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
@outage_is_a_retry(swept=True)
def deliver(delivery_id: int) -> None:
    sending.deliver_now(delivery_id, rest=deliver.send)


class ProviderError(Exception):
    """The face-verification provider did not open the session; dramatiq retries with backoff."""


@dramatiq.actor(queue_name=QUEUE, max_retries=8, min_backoff=1_000, max_backoff=60_000, time_limit=60_000)
@outage_is_a_retry
def open_face_session(verification_id: str, only_if_queued: bool = False) -> None:
    """Ask the provider to open a face-verification session for a pending attempt (idempotent: an attempt
    no longer pending, or already opened, is left alone; the scheduler's second ask, `only_if_queued`, also
    one asked meanwhile)."""
    db = runtime.db()
    request = face_sessions.session_request(db, verification_id, callback_base=runtime.settings().public_url,
                                            only_if_queued=only_if_queued)
    if request is None:
        return
    answer = outbound.post_signed(request.url, request.secrets, request.event_id, request.payload)
    if answer.ok:
        face_sessions.session_opened(db, verification_id, _session_id(answer.body))
        return
    # the request carried the identity: keep no part of the provider's answer, which might echo it
    error = f"HTTP {answer.status_code}" if answer.status_code is not None else (answer.error or "no answer")
    if face_sessions.session_failed(db, verification_id, error):
        raise ProviderError(f"provider {request.verifier_id}: {error}")


def _session_id(body: bytes) -> str | None:
    try:
        return str(json.loads(body or b"{}").get("session_id") or "") or None
    except (ValueError, AttributeError):
        return None
