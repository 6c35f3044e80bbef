"""The dashboard's overview: bindings per state and per pooling region, stuck bindings per reason, transitions
and failures per hour over the last 24 hours, and per platform what is not delivered yet (failing, dead,
sync lag). Queue depth is the broker's (workers/), not here.

Per region the full state breakdown is given (with `active`, the non-terminal ones): both tables come from
one GROUP BY (grantor_region, state) and the per-state counts are its sums. Hours are clock hours (UTC)
starting 23 hours before the current one, which is partial; failures are workflow failures (the events
verification_failed — an attempt or the last one —, reject, expire) plus failed delivery tries.

Two aggregates cost what the data holds, not what is stuck: the region × state counts read every binding
(an index-only scan: ~80–130 ms at 1M bindings on 2 cores) and sync_behind reads the bindings changed in
7 days (~0.1–0.15 s at 30k). A live overview (`now` None) takes them from a per-process snapshot at most
SNAPSHOT_S old (`counts_as_of` says when it was taken; sync_behind only counts changes older than 5 minutes
anyway); everything else is read fresh (~40 ms at 1M). With an explicit `now` (tests, benchmarks) all is
fresh. Not a counter bumped by each transition (that would serialize the hot path); at national scale the
snapshot belongs in a table the scheduler refreshes from the append-only history. Times are aware UTC
datetimes; ages are seconds."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import DeliveryAttempt, Region, Transition
from models.types import utcnow

from . import machine, platforms, rows, stuck, sync
from .ttl_cache import TTLCache

HOURS = 24
SNAPSHOT_S = 60.0
FAILED_EVENTS = ("verification_failed", "reject", "expire")
STATES = tuple(s for s in machine.STATES if s != machine.NEW)
B, T, DA, R = rows.B, Transition.__table__, DeliveryAttempt.__table__, Region.__table__
# (region, state, count, side): every binding under its grantor's region ("g"), and again under its
# beneficiary's where that is another region ("b", the partial index ix_bindings_beneficiary_region_state_updated)
_CELLS = sa.union_all(
    sa.select(B.c.grantor_region, B.c.state, sa.func.count().label("n"), sa.literal("g").label("side"))
    .group_by(B.c.grantor_region, B.c.state),
    sa.select(B.c.beneficiary_region, B.c.state, sa.func.count().label("n"), sa.literal("b").label("side"))
    .where(B.c.beneficiary_region != B.c.grantor_region).group_by(B.c.beneficiary_region, B.c.state))
_REGIONS = sa.select(R.c.code, R.c.name, R.c.province_code).order_by(R.c.code)
_cells_cache = TTLCache(weak_keys=True)  # sessionmaker -> (taken at, cells)
_behind_cache = TTLCache(weak_keys=True)  # sessionmaker -> (taken at, sync_behind)


def _hours(now: datetime) -> list[datetime]:
    """The HOURS + 1 edges of the chart's buckets: clock hours, the last bucket being the current hour."""
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    return [first + timedelta(hours=i) for i in range(HOURS + 1)]


def _bucket(column, edges: list[datetime]):
    return sa.case(*((column < edges[i + 1], i) for i in range(HOURS)), else_=HOURS - 1)


def _hourly(s, now: datetime) -> list[dict]:
    edges = _hours(now)
    hour = _bucket(T.c.at, edges).label("h")
    moves = s.execute(sa.select(hour, sa.func.count(), sa.func.count().filter(T.c.event.in_(FAILED_EVENTS)))
                      .where(T.c.at >= edges[0], T.c.at <= now).group_by(hour)).all()
    tried = _bucket(DA.c.at, edges).label("h")
    tries = dict(s.execute(sa.select(tried, sa.func.count()).where(
        DA.c.error.is_not(None), DA.c.at >= edges[0], DA.c.at <= now).group_by(tried)).all())
    by_hour = {h: (n, failed) for h, n, failed in moves}
    out = []
    for i in range(HOURS):
        n, failed = by_hour.get(i, (0, 0))
        out.append({"hour": edges[i], "transitions": n, "failed_events": failed,
                    "failed_deliveries": tries.get(i, 0), "failures": failed + tries.get(i, 0)})
    return out


def _regions(cells: list, names: list) -> list[dict]:
    regions = {code: {"code": code, "name": name, "province_code": province, "total": 0, "active": 0,
                      "states": dict.fromkeys(STATES, 0)} for code, name, province in names}
    for code, state, n, _side in cells:  # a binding across two regions counts in both
        r = regions.setdefault(code, {"code": code, "name": None, "province_code": None, "total": 0, "active": 0,
                                      "states": dict.fromkeys(STATES, 0)})
        r["states"][state] = r["states"].get(state, 0) + n
        r["total"] += n
        r["active"] += n if state in machine.ACTIVE else 0
    return [regions[code] for code in sorted(regions)]


def _cells(db, now: datetime | None) -> tuple[datetime, list]:
    """(taken at, region × state cells): fresh for an explicit `now`, else at most SNAPSHOT_S old."""
    def load(at: datetime | None = None):
        with db() as s:
            stuck.tune(s)
            return at or utcnow(), [tuple(r) for r in s.execute(_CELLS)]
    return load(now) if now is not None else _cells_cache.get(db, load, SNAPSHOT_S)


def _behind(db, now: datetime | None) -> tuple[datetime, int]:
    """(taken at, sync_behind count): fresh for an explicit `now`, else at most SNAPSHOT_S old."""
    def load(at: datetime | None = None):
        at = at or utcnow()
        return at, stuck.counts(db, at, reasons=("sync_behind",))["sync_behind"]
    return load(now) if now is not None else _behind_cache.get(db, load, SNAPSHOT_S)


def forget() -> None:
    """Drop this process's snapshots."""
    _cells_cache.clear()
    _behind_cache.clear()


def _states(cells: list) -> dict[str, int]:
    states = dict.fromkeys(STATES, 0)
    for _, state, n, side in cells:
        if side == "g":  # each binding once
            states[state] = states.get(state, 0) + n
    return states


def stuck_counts(db, now: datetime | None = None) -> tuple[datetime, dict[str, int]]:
    """(when sync_behind was counted, bindings per stuck reason): sync_behind from this process's snapshot
    (at most SNAPSHOT_S old), the other reasons read fresh over their small indexed subsets."""
    behind_as_of, behind = _behind(db, now)
    fresh = stuck.counts(db, now or utcnow(), reasons=tuple(r for r in stuck.REASONS if r != "sync_behind"))
    return behind_as_of, {r: behind if r == "sync_behind" else fresh[r] for r in stuck.REASONS}


def overview(db, now: datetime | None = None) -> dict:
    """Everything the overview page shows (see the module docstring and `_regions`, `_hourly` for the keys)."""
    cells_as_of, cells = _cells(db, now)
    behind_as_of, stuck_now = stuck_counts(db, now)
    now = now or utcnow()
    with db() as s:
        stuck.tune(s)
        names = s.execute(_REGIONS).all()
        hourly = _hourly(s, now)
        shown = [p.id for p in platforms.all_platforms(s) if p.kind != "verifier"]
    states = _states(cells)
    lag = sync.lag(db, now=now)
    return {
        "as_of": now,
        "counts_as_of": min(cells_as_of, behind_as_of),
        "total": sum(states.values()),
        "active": sum(n for st, n in states.items() if st in machine.ACTIVE),
        "states": states,
        "regions": _regions(cells, names),
        "stuck": stuck_now,
        "hourly": hourly,
        "platforms": {pid: lag.get(pid, sync.NOTHING_BEHIND) for pid in sorted(set(shown) | set(lag))},
    }
