"""A worker process's liveness: a file touched every INTERVAL_S seconds while the process's consumer threads
(they fetch messages from Redis) and its worker threads (they run the actors) are all alive, for its
container's health check; and, at the same pace, its row in `process_beats` (`workflows/processes.py`),
which the dashboard's overview and `/metrics` count, marked stopped when the worker shuts down.

Why: compose's check only pinged Redis, so a worker whose threads had died, or that never started
consuming, looked healthy as long as Redis was up. The check reads the file's age (`docker-compose.yml`);
the processes of one container share the file, so it stays fresh while any of them is whole. The row is
per process and tells an operator, who sees no container, how many workers run (`gongji serve`'s
in-process worker has a row and no file)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import dramatiq

from workflows import processes

from . import runtime
from .beating import Beating

ALIVE_FILE = Path(tempfile.gettempdir()) / "gongji-worker.alive"
INTERVAL_S = 10.0


def whole(worker) -> bool:
    """Every consumer and worker thread of the dramatiq Worker alive (and some of each)."""
    consumers, threads = list(worker.consumers.values()), list(worker.workers)
    return bool(consumers) and bool(threads) and all(t.is_alive() for t in consumers + threads)


class Liveness(dramatiq.Middleware):
    """Starts, once the worker is up, the thread that keeps `alive_file` (None: no file) and the process's
    row fresh while the worker is whole (`beating.Beating`); marks the row stopped before the worker shuts
    down. `db`: a sessionmaker (default: the actors' own, `runtime.db()`)."""

    def __init__(self, alive_file: Path | None = ALIVE_FILE, db=None):
        self.alive_file, self._db = alive_file, db
        self.beating: Beating | None = None

    def after_worker_boot(self, broker, worker) -> None:
        self.beating = Beating(processes.WORKER, lambda: self._db or runtime.db(),
                               lambda: processes.RUNNING if whole(worker) else None, interval_s=INTERVAL_S,
                               also=self._touch, name="gongji-liveness").start()

    def before_worker_shutdown(self, broker, worker) -> None:
        if self.beating is not None:
            self.beating.stop()

    def _touch(self, role: str | None) -> None:
        if role is None or self.alive_file is None:
            return
        try:
            self.alive_file.touch()
        except OSError:  # a read-only /tmp: no health file, nothing else changes
            pass
