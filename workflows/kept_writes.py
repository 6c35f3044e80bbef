"""Writes a request could not make because the database could not be reached (a restart, a failover),
kept in the process and made as soon as it answers: by a thread that tries every RETRY_UNREACHABLE_S
seconds while any wait, or by the process's next write of the same kind (`settle`), whichever comes first.

Why: an `Idempotency-Key`'s outcome (`workflows/idempotency.py`) that `finish` could not write leaves the
key "in flight", and every retry 409 until the claim is abandoned ten minutes later. The request itself
answers what it has; what it could not record is recorded within seconds of the database's return.

Kept writes are the process's own: they are lost if it ends first (the claim is then taken over after its
abandon period, as a killed request's is). At most MAX kept (a long outage's failed requests); beyond that
they wait for that period too."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from . import errors
from .statements import autocommit

log = logging.getLogger(__name__)
MAX = 10_000


class KeptWrites:
    def __init__(self, write: Callable[[Any, Any], None], *, what: str):
        self._write = write  # (conn, item): one statement, in autocommit
        self.what = what  # for the log: "Idempotency-Key outcomes"
        self.pending: list = []  # oldest first
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.retry_s = errors.RETRY_UNREACHABLE_S

    def write_or_keep(self, db, item) -> None:
        """Write `item` now (the kept ones first); if the database cannot be reached, keep it for later.
        Any other error is raised."""
        try:
            with autocommit(db) as conn:
                self.settle(db, conn)
                self._write(conn, item)
        except Exception as exc:  # noqa: BLE001 - only an unreachable database is kept for later
            if not errors.database_unreachable(exc):
                raise
            with self._lock:
                if len(self.pending) < MAX:
                    self.pending.append(item)
            self._start(db)
            log.warning("%s could not be written (the database cannot be reached); they are written when "
                        "the database answers this process again", self.what)

    def settle(self, db, conn) -> None:
        """Write the kept items on `conn` (one statement each; rarely any). Those it could not write go back,
        and the thread is (re)started for them: it may have ended while they were out of the list."""
        if not self.pending:
            return
        with self._lock:
            waiting = self.pending[:]
            del self.pending[:]
        for i, item in enumerate(waiting):
            try:
                self._write(conn, item)
            except Exception:
                with self._lock:
                    self.pending[:0] = waiting[i:]
                self._start(db)
                raise

    def _start(self, db) -> None:
        """The thread that writes the kept items once the database answers (one a process; it ends when none
        is left)."""
        with self._lock:
            if self.thread is not None:
                return
            thread = threading.Thread(target=self._run, args=(db,), name="gongji-kept-writes", daemon=True)
            try:
                thread.start()  # it waits for this lock before it reads the list: `thread` is set by then
            except RuntimeError:  # no thread to be had: the next write of this process makes them
                log.warning("no thread to write the kept %s; the next request will", self.what)
                return
            self.thread = thread

    def _run(self, db) -> None:
        while True:
            with self._lock:  # decided under the lock `write_or_keep` keeps an item with: none is left behind
                if not self.pending:
                    self.thread = None
                    return
            time.sleep(self.retry_s)
            try:
                with autocommit(db) as conn:
                    self.settle(db, conn)
            except Exception as exc:  # noqa: BLE001 - the database still away: the next turn tries again
                if not errors.database_unreachable(exc):
                    log.exception("kept %s could not be written; trying again", self.what)
