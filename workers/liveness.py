"""A worker process's liveness for its container's health check: a file touched every INTERVAL_S seconds
while the process's consumer threads (they fetch messages from Redis) and its worker threads (they run the
actors) are all alive.

Why: compose's check only pinged Redis, so a worker whose threads had died, or that never started
consuming, looked healthy as long as Redis was up. The check reads the file's age (`docker-compose.yml`);
the processes of one container share the file, so it stays fresh while any of them is whole."""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import dramatiq

ALIVE_FILE = Path(tempfile.gettempdir()) / "gongji-worker.alive"
INTERVAL_S = 10.0


def whole(worker) -> bool:
    """Every consumer and worker thread of the dramatiq Worker alive (and some of each)."""
    consumers, threads = list(worker.consumers.values()), list(worker.workers)
    return bool(consumers) and bool(threads) and all(t.is_alive() for t in consumers + threads)


class Liveness(dramatiq.Middleware):
    """Starts, once the worker is up, the thread that keeps ALIVE_FILE fresh while the worker is whole."""

    def after_worker_boot(self, broker, worker) -> None:
        threading.Thread(target=self._keep, args=(worker,), name="gongji-liveness", daemon=True).start()

    @staticmethod
    def _keep(worker) -> None:
        while True:
            if whole(worker):
                try:
                    ALIVE_FILE.touch()
                except OSError:  # a read-only /tmp: no health file, nothing else changes
                    pass
            time.sleep(INTERVAL_S)
