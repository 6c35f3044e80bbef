"""This process's row in `process_beats` (`workflows/processes.py`), kept fresh by a daemon thread: every
`interval_s` while `role()` names one (None: not now, and the row goes stale), marked stopped by `stop()`,
after which no beat is written.

Why a thread of its own: the process's own work may take longer than `processes.STALE_S` (a scheduler's
tick catching up after an outage, a long actor), and the row would go stale while the process is there
and working. So the row says the process is alive and holds its role; whether its work keeps up is for
what it leaves behind to say (overdue timers, the queue, the stuck reasons). Used by the worker's
`Liveness` middleware and by the scheduler; intervals are seconds."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from workflows import processes

log = logging.getLogger(__name__)


class Beating:
    """`db`: a callable giving the sessionmaker (the worker's is configured after its middleware is made);
    `also(role)`: called at each turn before the beat (the worker touches its health file)."""

    def __init__(self, kind: str, db: Callable, role: Callable[[], str | None], *,
                 interval_s: float | None = None, also: Callable[[str | None], None] | None = None,
                 name: str = "gongji-beat"):
        self.beat = processes.Beat(kind)
        self._db, self._role, self._also, self.interval_s = db, role, also, interval_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a beat and the stop's row never cross
        self._failing = False  # the last write failed: a failure is logged once, not at every turn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Beating":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._also is not None:
                    self._also(self._role())
                self.now()
            except Exception:  # noqa: BLE001 - a failing role() or also() must not end the beats silently
                log.exception("the %s's beat failed; trying again at the next turn", self.beat.kind)
            self._stopping.wait(self.interval_s or processes.BEAT_S)

    def now(self) -> None:
        """Write the row at once if due or if the role changed. The role is read under the lock, so a beat
        never writes an older role over a newer one."""
        with self._lock:
            role = self._role()
            if self._stopping.is_set() or role is None:
                return
            try:
                self.beat.beat(self._db(), role)
                self._failing = False
            except Exception:  # noqa: BLE001 - the database away: the dashboard says the process is gone
                if not self._failing:
                    log.warning("could not record this %s in process_beats", self.beat.kind, exc_info=True)
                self._failing = True

    def stop(self) -> None:
        """Mark the row stopped; no beat follows. The thread ends at its next turn."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            try:
                self.beat.stop(self._db(), was=self._role())
            except Exception:  # noqa: BLE001 - then it reads as gone a minute later
                log.warning("could not mark this %s stopped in process_beats", self.beat.kind, exc_info=True)
