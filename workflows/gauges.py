"""What an operator's alerts watch, read from the database for `/metrics` (web/metrics.py turns a reading
into Prometheus families; docs/alerts.yml has the rules): bindings stuck per reason (DESIGN §2 "Stuck"), per
platform what it has not acknowledged (count, dead, failing, the oldest open one's age), inbound webhooks per
platform (pending, retrying, failed or refused lately, the oldest one no worker tried yet), outbox events
not handled yet (count, with an error, the oldest one without), and the worker and scheduler processes
running (`processes`: seen in the last minute, and how long ago the last one of each kind was seen). Counts
are rows; ages are seconds. An age is taken over what is still moving: a dead delivery waiting for a
replay, or an event a worker keeps failing on, has a count of its own and does not make an age grow for ever.

Why from the rows and not counters kept by the processes: the work is shared by any number of web and
worker processes and outlives them; a gauge read from the rows is the same whichever process answers a
scrape, and right after any restart. Cost: only small partial indexes (the stuck subsets, undelivered
deliveries, pending webhooks and outbox rows: what is stuck or on its way, not what is done) and
sync_behind from the overview's per-process snapshot (at most `overview.SNAPSHOT_S` old, ~0.1 s a minute at 1M bindings); never
a read of every binding, which is why bindings per state stay on the dashboard. A reading is kept per
process for CACHE_S, so several scrapers cost one read per CACHE_S; `as_of` is when it was read and
`stuck_as_of` when sync_behind was counted (the exporter adds what passed since to the ages)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from models import OutboxMessage
from models.types import seconds_since, utcnow

from . import inbound, overview, platforms, processes, sync
from .ttl_cache import TTLCache

CACHE_S = 15.0
OB = OutboxMessage.__table__
# over ix_outbox_pending (processed_at IS NULL): what no worker has handled yet
_OUTBOX = sa.select(sa.func.count(), sa.func.count().filter(OB.c.last_error.is_not(None)),
                    sa.func.min(OB.c.created_at).filter(OB.c.last_error.is_(None))).where(OB.c.processed_at.is_(None))
_cache = TTLCache(weak_keys=True)  # sessionmaker -> Reading


@dataclass(frozen=True)
class Reading:
    as_of: datetime
    stuck_as_of: datetime  # sync_behind's count (the others are as of `as_of`)
    stuck: dict[str, int]
    platforms: dict[str, dict]  # sync.lag's fields; every platform that takes pushes
    inbound: dict[str, dict]  # inbound.backlog's fields; every platform
    outbox: dict  # unprocessed, with_error, oldest_age_s (of those without an error)
    processes: dict  # running: {worker, scheduler, scheduler_standby: count}; last_seen_age_s: {worker,
    # scheduler: seconds since one was seen running (-1: none in the last day)}


def _read(db, now: datetime | None = None) -> Reading:
    stuck_as_of, stuck_counts = overview.stuck_counts(db, now)
    now = now or utcnow()
    lag = sync.lag(db, now=now)
    with db() as s:
        pushed = [p.id for p in platforms.all_platforms(s) if p.kind != "verifier" and p.webhook_url]
        unprocessed, with_error, oldest = s.execute(_OUTBOX).one()
    return Reading(as_of=now, stuck_as_of=stuck_as_of, stuck=stuck_counts,
                   platforms={pid: lag.get(pid, sync.NOTHING_BEHIND) for pid in sorted(set(pushed) | set(lag))},
                   inbound=inbound.backlog(db, now=now),
                   outbox={"unprocessed": unprocessed, "with_error": with_error,
                           "oldest_age_s": seconds_since(oldest, now)},
                   processes=_processes(processes.health(db, now), now))


def _processes(health: dict, now: datetime) -> dict:
    def age(k: processes.Kind) -> float:
        seen = k.running[0]["seen_at"] if k.running else k.last_seen
        return seconds_since(seen, now) if seen is not None else -1.0
    w, sch = health[processes.WORKER], health[processes.SCHEDULER]
    return {"running": {"worker": len(w.running), "scheduler": len(sch.running), "scheduler_standby": sch.standby},
            "last_seen_age_s": {"worker": age(w), "scheduler": age(sch)}}


def read(db, now: datetime | None = None) -> Reading:
    """The gauges: fresh for an explicit `now` (tests), else at most CACHE_S old for this process."""
    return _read(db, now) if now is not None else _cache.get(db, lambda: _read(db), CACHE_S)


def forget() -> None:
    """Drop every process-local reading, the overview's snapshots too (tests that change rows and read
    again at once)."""
    _cache.clear()
    overview.forget()
