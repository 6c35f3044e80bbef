"""One `deliver` message: a try of the delivery, and of each successor its acknowledgement releases.

Why: a released successor (the next version of the binding to the same platform, which just answered)
used to leave as a `deliver` message of its own: enqueue, fetch and ack are three Lua scripts on Redis and
dramatiq's middleware on both ends, about as much of the worker's CPU as the signed POST itself
(bench/webhooks.py). Now the same call tries it at once, within `BUDGET_S` seconds (one try takes up to
~26 s: 3 s to connect, 10 s to read, once more after a broken connection); what is left then goes on as
messages, so the actor stays inside its time limit.

Measured and left out: sending the deliveries a fan-out makes ready from threads of the worker process
instead of as messages. With 4 or 8 such threads per process the lifecycle over HTTP slowed by a fifth
(PostgreSQL's CPU per transition nearly doubled: more sessions at once on two cores), and with 1 or 2 it
was no faster than without them."""
from __future__ import annotations

import time
from typing import Callable

from workflows import deliveries

from . import outbound, runtime

BUDGET_S = 30.0


def deliver_now(delivery_id: int, *, rest: Callable[[int], None], budget_s: float = BUDGET_S) -> None:
    """Try one delivery, then each successor its acknowledgement releases (HTTP outside any transaction);
    successors still to try after `budget_s` seconds go to `rest`."""
    db, todo, started = runtime.db(), [delivery_id], time.monotonic()
    while todo:
        if todo[-1] != delivery_id and time.monotonic() - started > budget_s:
            for later in todo:
                rest(later)
            return
        claim = deliveries.claim(db, todo.pop())
        if claim is None:  # not open, not due, blocked, or another try has it
            continue
        answer = outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload)
        todo += deliveries.record(db, claim, status_code=answer.status_code, error=answer.error,
                                  duration_ms=answer.duration_ms)
