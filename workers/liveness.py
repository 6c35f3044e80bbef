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

import logging
import tempfile
import threading
from pathlib import Path

import dramatiq

from workflows import processes

from . import runtime

log = logging.getLogger(__name__)

ALIVE_FILE = Path(tempfile.gettempdir()) / "gongji-worker.alive"
INTERVAL_S = 10.0


def whole(worker) -> bool:
    """Every consumer and worker thread of the dramatiq Worker alive (and some of each)."""
    consumers, threads = list(worker.consumers.values()), list(worker.workers)
    return bool(consumers) and bool(threads) and all(t.is_alive() for t in consumers + threads)


class Liveness(dramatiq.Middleware):
    """Starts, once the worker is up, the thread that keeps `alive_file` (None: no file) and the process's
    row fresh while the worker is whole; marks the row stopped before the worker shuts down."""

    def __init__(self, alive_file: Path | None = ALIVE_FILE, db=None):
        self.alive_file, self._db = alive_file, db  # db: a sessionmaker (default: the actors' own)
        self.beat = processes.Beat(processes.WORKER)
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a beat and the stop's row never cross

    def after_worker_boot(self, broker, worker) -> None:
        threading.Thread(target=self._keep, args=(worker,), name="gongji-liveness", daemon=True).start()

    def before_worker_shutdown(self, broker, worker) -> None:
        with self._lock:
            self._stopping.set()
            try:
                self.beat.stop(self._db or runtime.db())
            except Exception:  # noqa: BLE001 - the row then reads as gone a minute later
                log.warning("could not mark this worker stopped in process_beats", exc_info=True)

    def _keep(self, worker) -> None:
        while not self._stopping.is_set():
            if whole(worker):
                if self.alive_file is not None:
                    try:
                        self.alive_file.touch()
                    except OSError:  # a read-only /tmp: no health file, nothing else changes
                        pass
                with self._lock:
                    try:
                        if not self._stopping.is_set():
                            self.beat.beat(self._db or runtime.db(), processes.RUNNING)
                        self.beat.failing = False
                    except Exception:  # noqa: BLE001 - the database away: the dashboard will say so
                        if not self.beat.failing:
                            log.warning("could not record this worker in process_beats", exc_info=True)
                        self.beat.failing = True
            self._stopping.wait(INTERVAL_S)
