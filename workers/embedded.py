"""The embedded default's background half: an in-process dramatiq worker on the StubBroker and the
scheduler in a thread. Used by `gongji serve` and the e2e tests."""
from __future__ import annotations

import threading

import dramatiq
from dramatiq import Worker

from models.settings import Settings

from . import broker as broker_mod
from . import relay, runtime, scheduler
from .liveness import Liveness


class Embedded:
    def __init__(self, settings: Settings, db, engine, *, worker_threads: int = 4):
        self.settings, self.db, self.engine = settings, db, engine
        self.broker = broker_mod.setup(settings)
        self.broker.add_middleware(Liveness(alive_file=None, db=db))  # its row in process_beats, no file
        runtime.configure(settings, db)
        from . import actors  # noqa: F401  (registers actors on the broker just set)
        relay.install()
        self.worker = Worker(self.broker, worker_threads=worker_threads, worker_timeout=100)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=scheduler.run, name="gongji-scheduler", daemon=True,
                                       args=(db, engine),
                                       kwargs={"interval_s": settings.sweep_interval_s,
                                               "batch": settings.sweep_batch, "stop": self.stop_event})

    def start(self) -> "Embedded":
        self.worker.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop what was started (also after a start cut short: `gongji serve` stopped during its start)."""
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=10)
        self.worker.stop()


__all__ = ["Embedded", "dramatiq"]
