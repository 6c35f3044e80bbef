"""`gongji scheduler`: the one periodic driver — fires due timers, runs the outbox relay pass and sends
deliveries that are due (retries, and any whose message was lost); each minute it also reconciles what
platforms lack, resumes stalled batch jobs, releases deliveries a dead worker left blocked, asks the
face provider again for attempts nobody asked, and forgets `Idempotency-Key`s and delivered messages
past their retention (`workflows/retention.py`).

Exactly one scheduler should tick at a time. On PostgreSQL a session-level advisory lock enforces it:
a second scheduler waits as a hot standby and takes over when the first one's connection goes away.
The active one checks every LOCK_CHECK_S that its lock's session is still there: when that connection
died (a database restart, a killed idle session) the lock went with it and a standby may hold it now, so
it stops ticking (`LockLost`) rather than tick beside the new one, and waits as a standby itself until it can
take the lock again; so does a standby whose database went away. A database restart or failover needs
no scheduler restart. (Two sweepers would still be safe — SKIP LOCKED — but would only compete.)
Each tick, and each standby wait, touches ALIVE_FILE: the container's health check reads its age; and
a thread of its own (`beating.py`: a tick catching up may outlast a minute) writes every
`processes.BEAT_S` the scheduler's row in `process_beats`, active or standby (the dashboard's overview
and `/metrics` read it; `workflows/processes.py`), as long as no tick has run for MAX_TICK_S, and marks it
stopped when it stops (`gongji scheduler` turns SIGTERM into a stop).
Intervals are seconds."""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from workflows import batches, deliveries, delivery_repair, face_sessions, idempotency, processes, reconcile
from workflows import retention, timers
from workflows.errors import database_error_reason, database_unreachable

from . import relay
from .beating import Beating

log = logging.getLogger(__name__)
LOCK_KEY = 0x60_6A_11  # advisory lock id of the scheduler
LOCK_CHECK_S = 10.0
# a tick running this long reads as no scheduler (its row is no longer written): wedged (a network black
# hole under a statement) or so far behind that an operator should look; a long catch-up stays below it
MAX_TICK_S = 900.0
STANDBY_WAIT_S = 5.0  # a standby's pause between two tries of the lock
ALIVE_FILE = Path(tempfile.gettempdir()) / "gongji-scheduler.alive"
_HOLDS = sa.text("select exists (select 1 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
                 " and granted and classid = 0 and objid = :k and objsubid = 1)")


class LockLost(RuntimeError):
    """The active scheduler's advisory lock went away with its connection."""


def _alive() -> None:
    try:
        ALIVE_FILE.touch()
    except OSError:  # a read-only /tmp: no health file, nothing else changes
        pass


def _still_holds(holder: sa.Connection) -> bool:
    try:
        held = bool(holder.execute(_HOLDS, {"k": LOCK_KEY}).scalar())
        holder.rollback()
        return held
    except sa.exc.DBAPIError:
        return False


def tick(db, *, batch: int = 500, relay_every: int = 2, reconcile_every: int = 60, n: int = 0) -> int:
    fired = timers.sweep_all(db, batch=batch)
    if n % relay_every == 0:
        relay.relay_pass(db)
    if n % reconcile_every == 0:
        from .actors import open_face_session, send_deliveries
        send_deliveries(reconcile.reconcile(db, batch=batch))
        batches.resume_stalled(db)  # batch jobs whose worker died
        delivery_repair.release_orphans(db, batch=batch)  # successors a dead worker acknowledged, not released
        for verification_id in face_sessions.unasked(db):  # face sessions whose worker message was lost
            open_face_session.send(verification_id, True)
        idempotency.purge(db)  # keys past their retention (workflows/idempotency.py)
        retention.purge(db)  # delivered messages and processed webhooks past theirs
    delivery_pass(db, batch=batch)
    return fired


def delivery_pass(db, *, batch: int = 500) -> int:
    """Enqueue every due, unblocked delivery (each is marked so the next pass skips it a while)."""
    from .actors import send_deliveries
    total = 0
    while ids := deliveries.due(db, batch=batch):
        send_deliveries(ids)
        total += len(ids)
        if len(ids) < batch:
            break
    return total


def run(db, engine: sa.Engine, *, interval_s: float = 1.0, batch: int = 500,
        stop: threading.Event | None = None) -> None:
    """Tick until `stop`. On PostgreSQL, first wait as a standby for the lock; when the lock or the database
    goes away (LockLost, the database unreachable: a restart, a failover), wait as a standby again, so
    a database restart needs no scheduler restart. Any other error ends it."""
    stop = stop or threading.Event()
    role = [processes.STANDBY if engine.dialect.name == "postgresql" else processes.ACTIVE]
    progress = [time.monotonic()]  # when the loop last began a tick or a standby wait

    def current_role() -> str | None:
        return role[0] if time.monotonic() - progress[0] < MAX_TICK_S else None
    beating = Beating(processes.SCHEDULER, lambda: db, current_role, name="gongji-scheduler-beat").start()
    reached = [True]  # the database answered since the last failure (an outage is logged once, not each try)
    try:
        while not stop.is_set():
            try:
                _term(db, engine, role, progress, beating, reached, interval_s=interval_s, batch=batch, stop=stop)
            except (LockLost, sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                if not isinstance(exc, LockLost) and not database_unreachable(exc):
                    raise
                if reached[0]:
                    log.warning("the database or the scheduler lock went away (%s); waiting as a standby until "
                                "the lock can be taken again", database_error_reason(exc))
                reached[0] = False
                role[0] = processes.STANDBY
                progress[0] = time.monotonic()
                _alive()  # waiting out an outage is not hanging
                beating.now()
                stop.wait(STANDBY_WAIT_S)
    finally:
        beating.stop()


def _term(db, engine: sa.Engine, role: list, progress: list, beating: Beating, reached: list, *,
          interval_s: float, batch: int, stop: threading.Event) -> None:
    """One term as the active scheduler: on PostgreSQL take the lock (waiting as a standby) and tick while it
    is held; returns when stopped, raises LockLost when the lock went away."""
    holder = None
    try:
        if engine.dialect.name == "postgresql":
            holder = engine.connect()
            while not stop.is_set():
                _alive()
                progress[0] = time.monotonic()
                taken = holder.execute(sa.text("select pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
                reached[0] = True
                if taken:
                    holder.commit()
                    log.info("scheduler lock taken; this scheduler is active")
                    break
                holder.rollback()
                stop.wait(STANDBY_WAIT_S)
            if stop.is_set():  # stopped as a standby
                return
        role[0] = processes.ACTIVE
        beating.now()
        _ticks(db, holder, progress, interval_s=interval_s, batch=batch, stop=stop)
    finally:
        if holder is not None:  # closed, not pooled: the session's advisory lock goes with it
            holder.invalidate()
            holder.close()


def _ticks(db, holder, progress: list, *, interval_s: float, batch: int, stop: threading.Event) -> None:
    """The active scheduler's loop: a tick every `interval_s` until `stop`, or LockLost."""
    n, checked = 0, time.monotonic()
    while not stop.is_set():
        started = progress[0] = time.monotonic()
        _alive()
        if holder is not None and started - checked >= LOCK_CHECK_S:
            if not _still_holds(holder):
                log.error("the scheduler lock went away with its connection; no more ticks until it is "
                          "taken again (a standby may hold it now)")
                raise LockLost()  # (its connection is invalidated by `_term`: not back into the pool)
            checked = started
        try:
            fired = tick(db, batch=batch, n=n)
            if fired:
                log.info("fired %d timers", fired)
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            if database_unreachable(exc):  # an outage: one line a tick, not a traceback (LockLost follows)
                log.warning("scheduler tick failed: the database cannot be reached (%s); retrying next tick",
                            database_error_reason(exc))
            else:
                log.exception("scheduler tick failed; retrying next tick")
        n += 1
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
