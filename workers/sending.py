"""Sending deliveries from the worker process that made them ready, without a round trip through Redis.

Why: a delivery used to be one `deliver` message per try. Over HTTP that message (enqueue, fetch, ack:
three Lua scripts on Redis and dramatiq's middleware on both ends) cost about as much of the worker's CPU
as the signed POST itself (bench/webhooks.py). The rows are the truth, not the messages, so a delivery
made ready here is handed to a few local threads instead:
- `deliver_now` makes one try and then, in the same thread, the try of the successor its acknowledgement
  released (the next version to the same platform, which just answered);
- `Senders.submit` hands ids to `THREADS` daemon threads of this process, at most `BACKLOG` waiting;
  beyond that (a platform slow to answer holds threads) ids go to other processes as `deliver` messages.
An id lost with its process (a crash, a stop) is a row that is due `deliveries.GRACE_S` (30 s) after it
was made ready, or `LEASE_S` after its claim: the scheduler's delivery pass sends it then."""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from workflows import deliveries

from . import outbound, runtime

log = logging.getLogger(__name__)
THREADS, BACKLOG = 4, 64


def deliver_now(delivery_id: int) -> None:
    """Try one delivery, then each successor its acknowledgement releases (HTTP outside any transaction)."""
    db, todo = runtime.db(), [delivery_id]
    while todo:
        claim = deliveries.claim(db, todo.pop())
        if claim is None:  # not open, not due, blocked, or another try has it
            continue
        answer = outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload)
        todo += deliveries.record(db, claim, status_code=answer.status_code, error=answer.error,
                                  duration_ms=answer.duration_ms)


class Senders:
    """A few daemon threads sending the deliveries this process made ready; `overflow` takes the rest."""

    def __init__(self, overflow: Callable[[int], None], *, threads: int = THREADS, backlog: int = BACKLOG):
        self.overflow, self.threads, self.backlog = overflow, threads, backlog
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._started: list[threading.Thread] = []

    def submit(self, ids: list[int]) -> None:
        for delivery_id in ids:
            with self._lock:
                local = self._waiting < self.backlog
                if local:
                    self._waiting += 1
                    if len(self._started) < self.threads:
                        self._start_one()
            if local:
                self._queue.put(delivery_id)
            else:
                self.overflow(delivery_id)

    def _start_one(self) -> None:
        t = threading.Thread(target=self._run, name=f"gongji-sender-{len(self._started)}", daemon=True)
        self._started.append(t)
        t.start()

    def _run(self) -> None:
        while True:
            delivery_id = self._queue.get()
            with self._lock:
                self._waiting -= 1
            try:
                deliver_now(delivery_id)
            except Exception:  # the row stays due: the scheduler's delivery pass sends it again
                log.exception("delivery %s failed in a local sender; the delivery pass retries it", delivery_id)
