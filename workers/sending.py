"""Sending deliveries from the worker process that made them ready, without a round trip through Redis.

Why: a delivery used to be one `deliver` message per try. Over HTTP that message (enqueue, fetch, ack:
three Lua scripts on Redis and dramatiq's middleware on both ends) cost about as much of the worker's CPU
as the signed POST itself (bench/webhooks.py). The rows are the truth, not the messages, so a delivery
made ready here is handed to a few local threads instead:
- `deliver_now` makes one try and then, in the same thread, the try of the successor its acknowledgement
  released (the next version to the same platform, which just answered), within `BUDGET_S` seconds: what
  is left then goes on as a `deliver` message (the actor has a time limit);
- `Senders.submit` gives an id to an idle one of `THREADS` daemon threads of this process; when none is
  idle (a platform slow to answer holds them) the id goes to any process as a `deliver` message, so a slow
  platform never queues the others' deliveries here.
At a worker's orderly stop (`StopSenders`, dramatiq's `before_worker_shutdown`) new ids go on as messages
while the threads get `STOP_S` seconds to finish their tries. An id lost with its process (a crash) is a row
that is due `deliveries.GRACE_S` (30 s) after it was made ready, or `LEASE_S` after its claim: the
scheduler's delivery pass sends it then."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import dramatiq

from workflows import deliveries

from . import outbound, runtime

log = logging.getLogger(__name__)
THREADS, BUDGET_S, STOP_S = 8, 30.0, 10.0


def deliver_now(delivery_id: int, *, rest: Callable[[int], None] | None = None,
                budget_s: float = BUDGET_S) -> None:
    """Try one delivery, then each successor its acknowledgement releases (HTTP outside any transaction);
    successors still to try after `budget_s` seconds go to `rest` (one try takes up to ~26 s)."""
    db, todo, started = runtime.db(), [delivery_id], time.monotonic()
    while todo:
        if rest is not None and todo[-1] != delivery_id and time.monotonic() - started > budget_s:
            for later in todo:
                rest(later)
            return
        claim = deliveries.claim(db, todo.pop())
        if claim is None:  # not open, not due, blocked, or another try has it
            continue
        answer = outbound.post_signed(claim.url, claim.secrets, claim.event_id, claim.payload)
        todo += deliveries.record(db, claim, status_code=answer.status_code, error=answer.error,
                                  duration_ms=answer.duration_ms)


class Senders:
    """Daemon threads sending the deliveries this process made ready; `overflow` takes what they cannot."""

    def __init__(self, overflow: Callable[[int], None], *, threads: int = THREADS):
        self.overflow, self.threads = overflow, threads
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._taken = 0  # ids handed to the threads and not finished: waiting in the queue or being tried
        self._started: list[threading.Thread] = []
        self._stopping = False
        _ALL.append(self)

    def submit(self, ids: list[int]) -> None:
        for delivery_id in ids:
            with self._lock:
                local = not self._stopping and self._taken < self.threads
                if local:
                    self._taken += 1
                    if len(self._started) < self._taken:
                        self._start_one()
            if local:
                self._queue.put(delivery_id)
            else:
                self.overflow(delivery_id)

    def stop(self, timeout_s: float = STOP_S) -> None:
        """Meanwhile new ids go to `overflow`; the threads finish what they have (at most `timeout_s`) and
        end. A later `submit` starts threads again (an embedded worker may be started anew)."""
        with self._lock:
            self._stopping = True
            threads, self._started = self._started, []
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._stopping = False

    def _start_one(self) -> None:
        t = threading.Thread(target=self._run, name=f"gongji-sender-{len(self._started)}", daemon=True)
        self._started.append(t)
        t.start()

    def _run(self) -> None:
        while (delivery_id := self._queue.get()) is not None:
            try:
                deliver_now(delivery_id, rest=self.overflow)
            except Exception:  # the row stays due: the scheduler's delivery pass sends it again
                log.exception("delivery %s failed in a local sender; the delivery pass retries it", delivery_id)
            finally:
                with self._lock:
                    self._taken -= 1


_ALL: list[Senders] = []


class StopSenders(dramatiq.Middleware):
    """At a worker's orderly stop, let this process's senders finish (`Senders.stop`)."""

    def before_worker_shutdown(self, broker, worker) -> None:
        for senders in list(_ALL):
            senders.stop()
