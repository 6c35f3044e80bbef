"""Coalescing hand-off of outbox ids to the broker, for the web processes under gunicorn.

A request that committed outbox rows appends their ids here and answers at once; one background thread per
process sends what has gathered as one broker message (at most `MAX_BATCH` ids; the worker splits it, see
`workers.actors.process_outbox_many`). Under load many requests share a send: one Redis round trip and one
message instead of one each. At rest a batch is one id and leaves as soon as the thread wakes (no timer).

Nothing here can lose an event: ids not yet sent when the process dies, or whose send fails, are rows the
periodic relay pass (`workers.relay.relay_pass`) re-sends after `GRACE_S`. The thread is started on first
use, so it belongs to the process that uses it (gunicorn forks after importing the app)."""
from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)
MAX_BATCH = 100  # ids per broker message
EXIT_WAIT_S = 2.0  # how long an exiting process waits for its queue to be sent


class Publisher:
    def __init__(self, send: Callable[[list[int]], None], *, max_batch: int = MAX_BATCH):
        self._send, self._max = send, max_batch
        self._pending: deque[int] = deque()
        self._cond = threading.Condition()
        self._busy = False  # a batch taken off `_pending` is being sent
        self._owner: int | None = None  # the pid whose thread drains `_pending`

    def __call__(self, ids: list[int]) -> None:
        """The outbox listener: queue the ids for the sender thread (microseconds, never blocks on I/O)."""
        with self._cond:
            self._pending.extend(ids)
            if self._owner != os.getpid():
                self._owner = os.getpid()
                threading.Thread(target=self._run, name="gongji-outbox-publisher", daemon=True).start()
                atexit.register(self.flush, EXIT_WAIT_S)  # an orderly exit sends what is queued
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = [self._pending.popleft() for _ in range(min(self._max, len(self._pending)))]
                self._busy = True
            try:
                self._send(batch)
            except Exception:  # the relay pass re-sends them
                log.exception("sending %d outbox ids failed; the periodic relay pass will", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is queued or being sent (tests; a process exiting, see `__call__`). True when
        that happened in time: every id was then handed to the broker or, if its send failed, left to the
        relay pass."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout_s)
