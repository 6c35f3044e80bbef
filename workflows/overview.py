"""The dashboard's overview: bindings per state and per pooling region, stuck bindings per reason, transitions
and failures per hour over the last 24 hours, and per platform what is not delivered yet (failing, dead,
sync lag). Queue depth is the broker's (workers/), not here.

Per region the full state breakdown is given (with `active`, the non-terminal ones): both tables come from
one GROUP BY (grantor_region, state), an index-only scan of ix_bindings_region_state_updated, and the
per-state counts are its sums. Hours are clock hours (UTC) starting 23 hours before the current one, which
is partial; failures are workflow failures (the events verification_failed — an attempt or the last one —,
reject, expire) plus failed delivery tries. Times are aware UTC datetimes; ages are seconds."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from models import DeliveryAttempt, Region, Transition
from models.types import utcnow

from . import machine, platforms, rows, stuck, sync

HOURS = 24
FAILED_EVENTS = ("verification_failed", "reject", "expire")
STATES = tuple(s for s in machine.STATES if s != machine.NEW)
B, T, DA, R = rows.B, Transition.__table__, DeliveryAttempt.__table__, Region.__table__
_CELLS = sa.select(B.c.grantor_region, B.c.state, sa.func.count().label("n")).group_by(B.c.grantor_region, B.c.state)
_REGIONS = sa.select(R.c.code, R.c.name, R.c.province_code).order_by(R.c.code)


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
    for code, state, n in cells:
        r = regions.setdefault(code, {"code": code, "name": None, "province_code": None, "total": 0, "active": 0,
                                      "states": dict.fromkeys(STATES, 0)})
        r["states"][state] = r["states"].get(state, 0) + n
        r["total"] += n
        r["active"] += n if state in machine.ACTIVE else 0
    return [regions[code] for code in sorted(regions)]


def overview(db, now: datetime | None = None) -> dict:
    """Everything the overview page shows; the keys are documented in the module and in `_regions`/`_hourly`."""
    now = now or utcnow()
    with db() as s:
        stuck.tune(s)
        cells = s.execute(_CELLS).all()
        names = s.execute(_REGIONS).all()
        hourly = _hourly(s, now)
        shown = [p.id for p in platforms.all_platforms(s) if p.kind != "verifier"]
    states = dict.fromkeys(STATES, 0)
    for _, state, n in cells:
        states[state] = states.get(state, 0) + n
    lag = sync.lag(db, now=now)
    none = {"behind": 0, "dead": 0, "failing": 0, "oldest_age_s": 0.0}
    return {
        "as_of": now,
        "total": sum(states.values()),
        "active": sum(n for st, n in states.items() if st in machine.ACTIVE),
        "states": states,
        "regions": _regions(cells, names),
        "stuck": stuck.counts(db, now),
        "hourly": hourly,
        "platforms": {pid: lag.get(pid, none) for pid in sorted(set(shown) | set(lag))},
    }
