"""The dashboard's list of bindings: the filters an operator combines (state, pooling region, platform, stuck
reason, age, one person by ID number), newest change first, in keyset pages; and how many a filter matches
(what a batch action confirms).

Order is (updated_at DESC, id DESC); `next` is an opaque cursor (base64 of the last row's pair, as the sync
feed's) and a page never repeats or skips a row that did not change meanwhile. Each filter walks an index in
that order and stops after `limit` + 1 rows, then joins the two persons for that page only:
- state: ix_bindings_state_updated
- a region (the grantor's or the beneficiary's: a binding across two regions is in both): one walk of
  ix_bindings_region_state_updated (grantor) and one of the partial ix_bindings_beneficiary_region_state_updated
  (beneficiaries insured elsewhere than their grantor) per state, merged (a skip scan by hand: at most
  2 × 10 × (limit + 1) rows; with a state, 2 walks)
- nothing, an age (`older_than_s`: changed more than that many seconds ago), a platform: ix_bindings_updated
- stuck: the reason's small indexed subset (`stuck.reason_filter`), sorted
- a person: persons.id_number_hash, then bindings by grantor_id or beneficiary_id
`platform` means the bindings that platform is concerned with (`sync.concerns`: what it should hold — all of
them for the national platform, its provinces' for a provincial one); the platform that took the invitation
is shown per row (`platform_id`). Persons appear masked only; the ID number looked up is validated and hashed
(`persons.id_by_number`), never kept, logged or returned."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Person
from models.types import utcnow

from . import idnumbers, machine, platforms, rows, sync
from . import stuck as stuck_mod
from .errors import DomainError
from .persons import id_by_number

MAX_LIMIT = 200
STATES = tuple(s for s in machine.STATES if s != machine.NEW)
B, G, E, P = rows.B, rows.G, rows.E, Person.__table__
_REGION = re.compile(r"[0-9]{6}", re.ASCII)
_ORDER = (B.c.updated_at.desc(), B.c.id.desc())


def _number(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise DomainError("validation_failed", f"{name} is a whole number, 0 or more")
    return number


def _conditions(s, now: datetime, *, state=None, region=None, platform=None, stuck=None, older_than_s=None,
                id_number=None) -> list | None:
    """The WHERE clauses of a filter (validated); None if it names a person nobody is."""
    conds = []
    if state:
        conds.append(B.c.state == _state(state))
    if region:
        conds.append(sa.or_(*_sides(_region(region))))
    if platform:
        p = platforms.get_in(s, platform)
        if p.kind == "verifier":
            raise DomainError("validation_failed", "platform is a national or provincial platform")
        if p.kind != "national":
            conds.append(sync.concerns(p))
    if stuck:
        conds.append(stuck_mod.reason_filter(stuck, now, stuck_mod.push_targets(s)))
    if older_than_s not in (None, ""):
        seconds = _number(older_than_s, "older_than_s")
        conds.append(B.c.updated_at < now - timedelta(seconds=seconds))
    if id_number is not None:
        number = idnumbers.validate(id_number, today=idnumbers.today_in_china(now))
        person_id = id_by_number(s, number)
        if person_id is None:
            return None
        conds.append(sa.or_(B.c.grantor_id == person_id, B.c.beneficiary_id == person_id))
    return conds


def _state(state: str) -> str:
    if state not in STATES:
        raise DomainError("validation_failed", f"state is one of {', '.join(STATES)}")
    return state


def _region(region) -> str:
    if not _REGION.fullmatch(str(region)):
        raise DomainError("validation_failed", "region is a 6-digit pooling region code")
    return str(region)


def _sides(region: str) -> tuple:
    """A region's bindings: its grantor insured there, or (else) its beneficiary: disjoint, each indexed."""
    return (B.c.grantor_region == region,
            sa.and_(B.c.beneficiary_region == region, B.c.beneficiary_region != B.c.grantor_region))


def _walk(conds: list, n: int) -> sa.Select:
    return sa.select(B.c.id, B.c.updated_at).where(*conds).order_by(*_ORDER).limit(n)


def _subset(conds: list, n: int) -> sa.Select:
    """The matching rows first, then sorted: for a stuck reason whose subset is small and indexed, where a
    walk of the (updated_at, id) index could pass over most bindings before finding n (the planner can
    misjudge how its rows spread over time; MATERIALIZED holds it to this order on PostgreSQL)."""
    found = sa.select(B.c.id, B.c.updated_at).where(*conds).cte("found").prefix_with("MATERIALIZED",
                                                                                  dialect="postgresql")
    return sa.select(found.c.id, found.c.updated_at).order_by(found.c.updated_at.desc(), found.c.id.desc()).limit(n)


def _merged(conds: list, region: str, states: tuple, n: int) -> sa.Select:
    """One walk per side and state of the (region, state, updated_at, id) indexes (the grantor's, and the
    partial one of the beneficiaries insured elsewhere than their grantor), merged: the region's newest n."""
    parts = [_walk([*conds, side, B.c.state == st], n).subquery(f"s{i}")
             for i, (side, st) in enumerate((side, st) for side in _sides(region) for st in states)]
    u = sa.union_all(*(sa.select(p.c.id, p.c.updated_at) for p in parts)).subquery("u")
    return sa.select(u.c.id, u.c.updated_at).order_by(u.c.updated_at.desc(), u.c.id.desc()).limit(n)


def _page(keys: sa.Select, now: datetime, targets: list) -> sa.Select:
    page = keys.subquery("page")
    masked = [c.label(f"{side.name}_{c.name}") for side in (G, E) for c in (side.c.id, side.c.id_number_masked,
                                                                            side.c.name_masked)]
    return (sa.select(B.c.id, B.c.state, B.c.relationship, B.c.created_at, B.c.updated_at, B.c.province_code,
                      B.c.grantor_region, B.c.beneficiary_region, B.c.platform_id, B.c.version, *masked,
                      *stuck_mod.flag_columns(now, targets))
            .select_from(page.join(B, B.c.id == page.c.id).join(G, G.c.id == B.c.grantor_id)
                         .join(E, E.c.id == B.c.beneficiary_id))
            .order_by(page.c.updated_at.desc(), page.c.id.desc()))


def _item(r, targets: list) -> dict:
    def person(side: str) -> dict:
        return {"id": r[f"{side}_id"], "id_number_masked": r[f"{side}_id_number_masked"],
                "name_masked": r[f"{side}_name_masked"]}
    return {"id": r["id"], "state": r["state"], "relationship": r["relationship"], "grantor": person("g"),
            "beneficiary": person("e"), "created_at": r["created_at"], "updated_at": r["updated_at"],
            "province_code": r["province_code"], "grantor_region": r["grantor_region"],
            "beneficiary_region": r["beneficiary_region"], "platform_id": r["platform_id"], "version": r["version"],
            "stuck": stuck_mod.reasons_of(r, targets)}


def find(db, *, state=None, region=None, platform=None, stuck=None, older_than_s=None, id_number=None,
         after: str | None = None, limit: int = 50, now: datetime | None = None) -> dict:
    """One page: {"items": [...], "next": a cursor for `after`, or None on the last page}. An item: {id, state,
    relationship, grantor and beneficiary: {id, id_number_masked, name_masked}, created_at, updated_at (aware
    datetimes), province_code, grantor_region, beneficiary_region, platform_id, version, stuck: [reason codes]}."""
    now = now or utcnow()
    limit = max(1, min(_number(limit, "limit"), MAX_LIMIT))
    with db() as s:
        stuck_mod.tune(s)
        walks = bool(region and not stuck and id_number is None)  # per side and state: those name them
        conds = _conditions(s, now, state=None if walks else state, region=None if walks else region,
                            platform=platform, stuck=stuck, older_than_s=older_than_s, id_number=id_number)
        if conds is None:
            return {"items": [], "next": None}
        if after:
            at, bid = sync._parse_cursor(after)
            conds.append(sa.tuple_(B.c.updated_at, B.c.id) < sa.tuple_(sa.literal(at, B.c.updated_at.type),
                                                                         sa.literal(bid)))
        if stuck and stuck != "sync_behind":  # sync_behind's subset is the window: walking it stops early
            keys = _subset(conds, limit + 1)
        elif walks:
            keys = _merged(conds, _region(region), (_state(state),) if state else STATES, limit + 1)
        else:
            keys = _walk(conds, limit + 1)
        targets = stuck_mod.push_targets(s)
        found = s.execute(_page(keys, now, targets)).mappings().all()
    last = found[limit - 1] if len(found) > limit else None
    return {"items": [_item(r, targets) for r in found[:limit]],
            "next": sync._cursor(last["updated_at"], last["id"]) if last is not None else None}


def count(db, *, state=None, region=None, platform=None, stuck=None, older_than_s=None, id_number=None,
          now: datetime | None = None) -> int:
    """How many bindings the filter matches now (as `find` would page through)."""
    return sum(count_by_state(db, state=state, region=region, platform=platform, stuck=stuck,
                              older_than_s=older_than_s, id_number=id_number, now=now).values())


def count_by_state(db, *, state=None, region=None, platform=None, stuck=None, older_than_s=None, id_number=None,
                   now: datetime | None = None) -> dict[str, int]:
    """{state: how many bindings in it the filter matches now} (states with none left out)."""
    now = now or utcnow()
    with db() as s:
        stuck_mod.tune(s)
        conds = _conditions(s, now, state=state, region=region, platform=platform, stuck=stuck,
                            older_than_s=older_than_s, id_number=id_number)
        if conds is None:
            return {}
        return {st: int(n) for st, n in s.execute(sa.select(B.c.state, sa.func.count()).where(*conds)
                                                  .group_by(B.c.state))}
