"""What an operator's alerts watch, read from the database for `/metrics` (web/metrics.py turns a reading
into Prometheus families; docs/alerts.yml has the rules): bindings per state and per stuck reason (DESIGN §2
"Stuck"), per platform what it has not acknowledged (count, dead, failing, the oldest one's age), inbound
webhooks per platform (pending, retrying, failed or refused lately, the oldest pending one's age), and outbox
events not handled yet (count, with an error, the oldest one's age). Counts are rows; ages are seconds.

Why from the rows and not counters kept by the processes: the work is shared by any number of web and
worker processes and outlives them; a gauge read from the rows is the same whichever process answers a
scrape, and right after any restart. Cost: the overview's reads (the per-state counts and sync_behind from
its per-process snapshot, at most `overview.SNAPSHOT_S` old; the stuck counts, the lag and the backlogs over
small partial indexes, ~40 ms at 1M bindings), kept per process for CACHE_S, so that several scrapers
(two Prometheus replicas, say) cost one read per CACHE_S. `read` answers when it was read (`as_of`): ages
are as of then, and the exporter adds what passed since."""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from models import OutboxMessage
from models.types import utcnow

from . import inbound, overview, platforms, sync

CACHE_S = 15.0
OB = OutboxMessage.__table__
# over ix_outbox_pending (processed_at IS NULL): what no worker has handled yet
_OUTBOX = sa.select(sa.func.count(), sa.func.count().filter(OB.c.last_error.is_not(None)),
                    sa.func.min(OB.c.created_at)).where(OB.c.processed_at.is_(None))
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # sessionmaker -> (monotonic s, Reading)
_lock = threading.Lock()


@dataclass(frozen=True)
class Reading:
    as_of: datetime
    counts_as_of: datetime
    states: dict[str, int]
    stuck: dict[str, int]
    platforms: dict[str, dict]  # behind, dead, failing, oldest_age_s; every platform that takes pushes
    inbound: dict[str, dict]  # pending, retrying, oldest_age_s, failed, refused; every platform
    outbox: dict  # unprocessed, with_error, oldest_age_s


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def _read(db, now: datetime | None) -> Reading:
    counted = overview.bindings(db, now)
    now = now or utcnow()
    lag = sync.lag(db, now=now)
    with db() as s:
        pushed = [p.id for p in platforms.all_platforms(s) if p.kind != "verifier" and p.webhook_url]
        unprocessed, with_error, oldest = s.execute(_OUTBOX).one()
    none = {"behind": 0, "dead": 0, "failing": 0, "oldest_age_s": 0.0}
    return Reading(as_of=now, counts_as_of=counted["counts_as_of"], states=counted["states"],
                   stuck=counted["stuck"],
                   platforms={pid: lag.get(pid, none) for pid in sorted(set(pushed) | set(lag))},
                   inbound=inbound.backlog(db, now=now),
                   outbox={"unprocessed": unprocessed, "with_error": with_error, "oldest_age_s": _age(now, oldest)})


def read(db, now: datetime | None = None) -> Reading:
    """The gauges: fresh for an explicit `now` (tests), else at most CACHE_S old for this process."""
    if now is not None:
        return _read(db, now)
    with _lock:
        hit = _cache.get(db)
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    value = _read(db, None)
    with _lock:
        _cache[db] = (time.monotonic(), value)
    return value


def forget() -> None:
    """Drop every process-local reading (tests that change rows and read again at once)."""
    with _lock:
        _cache.clear()
