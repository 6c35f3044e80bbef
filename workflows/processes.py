"""Which worker and scheduler processes are running (`models/processes.py`): each beats while it runs, and
the dashboard's overview and `/metrics` read who was seen lately.

Why: with every worker down nothing leaves (outbound events, face sessions, inbound webhooks wait) and with
the scheduler down no timer fires and nothing is retried, yet at a quiet hour no row is late yet, and the
scheduler keeps moving an unclaimed delivery's next try on, so the stuck reasons do not show it.

A process is *running* when its row was refreshed within STALE_S (it beats every BEAT_S: several beats
missed), *stopped* when it said so as it stopped cleanly, *gone* when it stopped beating without saying so
(killed, its host lost, the database out of its reach). A scheduler's row says `active` (it holds the lock
and ticks) or `standby` (it waits for the lock); a standby that stops is `stopped_standby`, never taken
for the last scheduler that did the work. Every beat also deletes the rows not seen for FORGET_S,
so the table holds the processes of the last day. Times are aware UTC; ages are seconds."""
from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from models import ProcessBeat
from models.types import seconds_since, utcnow

BEAT_S = 10.0
LISTED = 50  # rows listed per kind on the overview
STALE_S = 60.0
FORGET_S = 86400.0
WORKER, SCHEDULER = "worker", "scheduler"
RUNNING, ACTIVE, STANDBY, STOPPED = "running", "active", "standby", "stopped"
STOPPED_STANDBY = "stopped_standby"  # a standby that stopped: it was never doing the work
PB = ProcessBeat.__table__
_NUMBERS = {WORKER: itertools.count(1), SCHEDULER: itertools.count(1)}


class Beat:
    """This process's beat of one kind: `beat(db, role)` writes its row at most every BEAT_S (at once when
    the role changed); `stop(db)` marks it stopped. Each instance has a row of its own (a process normally
    has one per kind); callers serialize their calls."""

    def __init__(self, kind: str):
        self.kind, self.number = kind, next(_NUMBERS[kind])  # a second one in the process has a row of its own
        self._me: dict | None = None  # id, host, pid, started_at: taken at the first beat (after any fork)
        self._last: tuple[str, datetime] | None = None  # (role, when) of the last beat written

    def beat(self, db, role: str, *, now: datetime | None = None) -> bool:
        """Write the row if due (BEAT_S since the last one, a little early allowed, or a new role);
        whether it was written."""
        now = now or utcnow()
        if self._last is not None and self._last[0] == role and seconds_since(self._last[1], now) < 0.9 * BEAT_S:
            return False
        if self._me is None or self._me["pid"] != os.getpid():
            host, pid = socket.gethostname()[:128], os.getpid()
            suffix = f"#{self.number}" if self.number > 1 else ""
            self._me = {"id": f"{self.kind}:{host}:{pid}{suffix}"[-200:], "host": host, "pid": pid, "started_at": now}
        with db.begin() as s:
            _upsert(s, {**self._me, "kind": self.kind, "role": role, "seen_at": now})
            s.execute(sa.delete(PB).where(PB.c.seen_at < now - timedelta(seconds=FORGET_S)))
        self._last = (role, now)
        return True

    def stop(self, db, *, was: str | None = None, now: datetime | None = None) -> None:
        """Mark the row stopped: `stopped_standby` if it was a standby (`was`, else the role last written)."""
        was = was or (self._last[0] if self._last is not None else None)
        self._last = None
        self.beat(db, STOPPED_STANDBY if was == STANDBY else STOPPED, now=now)


def _upsert(s, row: dict) -> None:
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(PB).values(row)
    s.execute(stmt.on_conflict_do_update(index_elements=[PB.c.id], set_={
        "role": stmt.excluded.role, "seen_at": stmt.excluded.seen_at, "started_at": stmt.excluded.started_at}))


@dataclass(frozen=True)
class Kind:
    """What is known of one kind of process: those running, and when one was last seen at all."""
    running: list[dict]  # {host, pid, role, started_at, seen_at, age_s}, the freshest first
    standby: int  # schedulers waiting for the lock (always 0 for workers)
    last_seen: datetime | None  # the freshest row but a standby's, running or stopped (None: none in a day)
    last_role: str | None  # that row's role: `stopped` if it stopped cleanly, else it is gone
    listed: list[dict]  # the rows of the last day with their `state` (STATES), running ones first, at most LISTED
    more: int = 0  # rows of the last day beyond LISTED (a crash loop under a supervisor makes one a restart)

    @property
    def down(self) -> bool:
        return not self.running


STATES = ("running", "standby", "gone", "stopped")  # as a row reads: doing the work, waiting, silent, said so


def state_of(row, now: datetime) -> str:
    if row["role"] in (STOPPED, STOPPED_STANDBY):
        return "stopped"
    if seconds_since(row["seen_at"], now) > STALE_S:
        return "gone"
    return "standby" if row["role"] == STANDBY else "running"


def summarize(rows, now: datetime) -> dict[str, Kind]:
    """Rows of `process_beats` (mappings) → {kind: Kind} for both kinds, from the rows of the last day (a
    beat deletes older ones, but with every process down nothing does). Pure."""
    rows = [r for r in rows if seconds_since(r["seen_at"], now) <= FORGET_S]
    out = {}
    for kind in (WORKER, SCHEDULER):
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seen_at"], reverse=True)
        fresh = [r for r in mine if r["role"] not in (STOPPED, STOPPED_STANDBY)
                 and seconds_since(r["seen_at"], now) <= STALE_S]
        working = [r for r in fresh if r["role"] != STANDBY]
        listed = sorted(({**{k: r[k] for k in ("host", "pid", "role", "started_at", "seen_at")},
                          "state": state_of(r, now)} for r in mine),
                        key=lambda r: (STATES.index(r["state"]), -r["seen_at"].timestamp()))
        mine = [r for r in mine if r["role"] not in (STANDBY, STOPPED_STANDBY)]  # last seen: one doing the work
        out[kind] = Kind(
            running=[{"host": r["host"], "pid": r["pid"], "role": r["role"], "started_at": r["started_at"],
                      "seen_at": r["seen_at"], "age_s": seconds_since(r["seen_at"], now)} for r in working],
            standby=len(fresh) - len(working),
            last_seen=mine[0]["seen_at"] if mine else None, last_role=mine[0]["role"] if mine else None,
            listed=listed[:LISTED], more=max(0, len(listed) - LISTED))
    return out


def health(db, now: datetime | None = None) -> dict[str, Kind]:
    """Every process row (a few dozen at most), summarized as of `now`."""
    with db() as s:
        rows = s.execute(sa.select(PB)).mappings().all()
    return summarize(rows, now or utcnow())
