"""Regional sync: which binding version each platform holds, how far behind each platform is, and the
pull feed a platform rebuilds its copy from.

A platform acknowledges a version by answering 2xx to its delivery (`acknowledge`, called by
`deliveries.record` in the same transaction). Lag is computed from data: per platform, the deliveries
it has not acknowledged (count, the oldest one's age in seconds, how many of them are dead).

The feed (`GET /api/v1/sync/bindings?after=<cursor>`) pages through the bindings a platform is concerned
with in the order their last changes committed (`change_seq`, models/changes.py), current state only. A
change is served once it and every write that began before it have committed (milliseconds), and a
cursor never passes over a change that commits later.
"""
from __future__ import annotations

import base64
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import Delivery, PlatformSync, Region
from models.changes import settled_stamp
from models.types import MAX_BIGINT, seconds_since, utcnow

from . import rows
from .errors import DomainError
from .views import binding_view

# The feed before `change_seq` (migration 0011) paged by (updated_at, id) and showed a change this long
# after it was made; a cursor of that feed continues from the changes made since this long before it.
LEGACY_HORIZON_S = 60.0
MAX_PAGE = 1000

S = PlatformSync.__table__
D = Delivery.__table__
_ACK: dict[str, sa.Insert] = {}  # per dialect: INSERT … ON CONFLICT DO UPDATE … WHERE higher (built once)


def raise_acked(insert):
    """`insert` (a PostgreSQL or SQLite INSERT into platform_sync) as an upsert that only ever raises a
    platform's acknowledged version of a binding, never lowers it."""
    return insert.on_conflict_do_update(
        index_elements=[S.c.platform_id, S.c.binding_id],
        set_={"acked_version": insert.excluded.acked_version, "acked_at": insert.excluded.acked_at},
        where=S.c.acked_version < insert.excluded.acked_version)


def _ack_statement(dialect: str) -> sa.Insert:
    if dialect not in _ACK:
        from sqlalchemy.dialects import postgresql, sqlite
        _ACK[dialect] = raise_acked((postgresql.insert if dialect == "postgresql" else sqlite.insert)(S))
    return _ACK[dialect]


def acknowledge(session, platform_id: str, binding_id: str, version: int, now: datetime) -> None:
    """Raise the platform's acknowledged version of a binding (never lower it): one upsert."""
    session.execute(_ack_statement(session.get_bind().dialect.name), dict(
        platform_id=platform_id, binding_id=binding_id, acked_version=version, acked_at=now))


_ACKED_BY_BINDING = sa.select(S.c.platform_id, S.c.acked_version).where(S.c.binding_id == sa.bindparam("b"))


def acked_in(session, binding_id: str) -> dict[str, int]:
    """platform id → acknowledged version, for one binding, in the caller's session."""
    return dict(session.execute(_ACKED_BY_BINDING, {"b": binding_id}).all())


def acked_versions(db, binding_id: str) -> dict[str, int]:
    with db() as s:
        return acked_in(s, binding_id)


NOTHING_BEHIND = {"behind": 0, "dead": 0, "failing": 0, "oldest_age_s": 0.0, "oldest_open_age_s": 0.0}


def lag(db, *, platform_id: str | None = None, now: datetime | None = None) -> dict[str, dict]:
    """Per platform (or just `platform_id`): unacknowledged deliveries (`behind`, dead ones included), the
    oldest one's age (s), dead ones, failing ones, and the oldest open one's age (`oldest_open_age_s`:
    pending or failing, still being tried; 0 with none), which a dead delivery waiting for a replay does
    not hold up."""
    now = now or utcnow()
    query = (sa.select(D.c.platform_id, sa.func.count().label("behind"), sa.func.min(D.c.created_at).label("oldest"),
                       sa.func.count().filter(D.c.status == "dead").label("dead"),
                       sa.func.count().filter(D.c.status == "failing").label("failing"),
                       sa.func.min(D.c.created_at).filter(D.c.status != "dead").label("oldest_open"))
             .where(D.c.status != "delivered").group_by(D.c.platform_id))
    if platform_id is not None:
        query = query.where(D.c.platform_id == platform_id)
    with db() as s:
        rows = s.execute(query).all()
    return {r.platform_id: {"behind": r.behind, "dead": r.dead, "failing": r.failing,
                            "oldest_age_s": round(seconds_since(r.oldest, now), 3),
                            "oldest_open_age_s": round(seconds_since(r.oldest_open, now), 3)}
            for r in rows}


def _cursor(updated_at: datetime, binding_id: str) -> str:
    return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{binding_id}".encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, bid = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        return datetime.fromisoformat(at), bid
    except (ValueError, UnicodeDecodeError):
        raise DomainError("validation_failed", "after is a cursor this feed returned") from None


def rows_before(after: str, at_col, id_col) -> sa.ColumnElement[bool]:
    """(at, id) before a cursor of `_cursor(at, id)`, for the dashboard's lists of rows with integer ids,
    paged newest first (received webhooks, dead deliveries)."""
    at, last_id = _parse_cursor(after)
    if not (last_id.isascii() and last_id.isdigit()) or len(last_id) > 19 or int(last_id) > MAX_BIGINT:
        raise DomainError("validation_failed", "after is a cursor this list returned")  # ids are BIGINTs
    return sa.tuple_(at_col, id_col) < sa.tuple_(sa.literal(at, at_col.type), sa.literal(int(last_id)))


def concerns(platform) -> sa.ColumnElement[bool]:
    """The bindings a platform is concerned with: all for the national platform, else those whose grantor's
    or beneficiary's pooling region lies in a province it serves (the regions they hold now: a `relocate`
    moves them, never the home province `province_code`)."""
    if platform.kind == "national":
        return sa.true()
    if platform.kind != "province":  # a face-verification provider holds no copy of the bindings
        return sa.false()
    regions = sa.select(Region.code).where(Region.province_code.in_(platform.provinces))
    return sa.or_(rows.B.c.grantor_region.in_(regions), rows.B.c.beneficiary_region.in_(regions))


def _feed_cursor(change_seq: int, binding_id: str) -> str:
    return base64.urlsafe_b64encode(f"c{change_seq}|{binding_id}".encode()).decode().rstrip("=")


def _parse_feed_cursor(cursor: str) -> tuple[int | None, datetime | None, str]:
    """(change_seq, None, id) of this feed's cursor, or (None, updated_at, id) of the former feed's."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    head, _, bid = text.partition("|")
    refused = DomainError("validation_failed", "after is a cursor this feed returned")
    if head[:1] == "c" and head[1:].isascii() and head[1:].isdigit() and bid:
        if len(head) > 20 or int(head[1:]) > MAX_BIGINT:  # no stamp is that large: a cursor never issued
            raise refused
        return int(head[1:]), None, bid
    at, bid = _parse_cursor(cursor)
    if at.tzinfo is None or at.year < 2000:  # the former feed's: an aware time since Gongji began
        raise refused
    return None, at, bid


def feed(db, platform, *, after: str | None = None, limit: int = 500) -> dict:
    """One page of the feed: bindings (masked, current state) and the cursor to ask for the next page."""
    limit = max(1, min(int(limit), MAX_PAGE))
    b = rows.B
    query = rows.select_bindings().add_columns(b.c.change_seq).where(concerns(platform),
                                                                      b.c.change_seq < settled_stamp())
    with db() as s:
        if after:
            seq, at, bid = _parse_feed_cursor(after)
            if seq is not None:
                query = query.where(sa.tuple_(b.c.change_seq, b.c.id) > sa.tuple_(sa.literal(seq, sa.BigInteger),
                                                                                  sa.literal(bid)))
            else:  # the former feed's cursor: from the earliest change it may not have shown (some again)
                since = at - timedelta(seconds=LEGACY_HORIZON_S)
                seq = s.scalar(sa.select(sa.func.min(b.c.change_seq)).where(b.c.updated_at > since))
                if seq is None:  # nothing changed since: the cursor stays as it is
                    return {"bindings": [], "next": after, "has_more": False}
                query = query.where(b.c.change_seq >= seq)
        found = s.execute(query.order_by(b.c.change_seq, b.c.id).limit(limit + 1)).all()
    page = [rows.from_row(tuple(r)) for r in found[:limit]]
    nxt = _feed_cursor(found[len(page) - 1][-1], page[-1].id) if page else after
    return {"bindings": [binding_view(r, r.grantor, r.beneficiary) for r in page], "next": nxt,
            "has_more": len(found) > limit}
