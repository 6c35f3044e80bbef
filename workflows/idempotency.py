"""`Idempotency-Key` records: the first request with a key claims it (a unique row), later requests with
the same key and the same body get the stored answer, a different body is refused, and a request arriving
while the first is still in flight gets 409. 5xx answers and transient refusals (`TRANSIENT`) are not
stored, so a retry runs again.

A claim whose request never finished (its process was killed between the claim and `finish`) would have
answered 409 "in progress" to every retry for ever: after `ABANDONED_S` seconds a retry with the same
body takes it over and runs the command again. The command's own guards decide a repeat: a transition
the binding already made is 409 `illegal_transition`, a second invitation of the pair meets the open one.
A claim is its row and the time it was claimed (`Claim`): `finish` writes only while the claim is still
the request's own, so a request that was taken over cannot overwrite or drop its successor's answer."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa

from models import IdempotencyRecord
from models.types import utcnow

from .errors import DomainError
from .statements import PerDialect, Statement, autocommit


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


IR = IdempotencyRecord.__table__
_COLUMNS = ("platform_id", "key", "request_hash", "created_at")
_FIND = Statement(sa.select(IR.c.request_hash, IR.c.status_code, IR.c.response_body)
                  .where(IR.c.platform_id == sa.bindparam("p"), IR.c.key == sa.bindparam("k")))
_OURS = (IR.c.id == sa.bindparam("_id"), IR.c.created_at == sa.bindparam("_at", type_=IR.c.created_at.type))
_FINISH = Statement(sa.update(IR).where(*_OURS).values(
    status_code=sa.bindparam("status", type_=IR.c.status_code.type),
    response_body=sa.bindparam("body", type_=IR.c.response_body.type)))
_DROP = Statement(sa.delete(IR).where(*_OURS))
# ten minutes: no live request runs that long (a client gives up within seconds; SQLite's busy timeout and
# the pool's wait are 30 s), so a claim this old was left by a process that died
ABANDONED_S = 600.0
_TAKE_OVER = Statement(sa.update(IR).where(
    IR.c.platform_id == sa.bindparam("p"), IR.c.key == sa.bindparam("k"), IR.c.request_hash == sa.bindparam("h"),
    IR.c.status_code.is_(None), IR.c.created_at < sa.bindparam("before", type_=IR.c.created_at.type))
    .values(created_at=sa.bindparam("now", type_=IR.c.created_at.type)).returning(IR.c.id))
_CLAIM = PerDialect(lambda insert: insert(IR).values({c: sa.bindparam(c, type_=IR.c[c].type) for c in _COLUMNS})
                    .on_conflict_do_nothing(index_elements=["platform_id", "key"]).returning(IR.c.id))


class Claim(NamedTuple):
    id: int
    at: datetime  # when this request claimed the key: the token `finish` checks


def claim(db, platform_id: str, key: str, digest: str, *,
          now: datetime | None = None) -> tuple[Claim | None, tuple[int, str] | None]:
    """(claim, None) when this request owns the key; (None, (status, body)) to replay.

    One statement decides (the unique key; in autocommit on PostgreSQL): a write with a key costs two
    statements more than one without, the claim and `finish`."""
    if not key or len(key) > 255:
        raise DomainError("validation_failed", "Idempotency-Key is 1 to 255 characters")
    now = now or utcnow()
    with autocommit(db) as conn:
        for _ in range(2):  # again if the owner's request failed (5xx: its record went) in between
            record_id = _CLAIM(conn.dialect.name).scalar(
                conn, {"platform_id": platform_id, "key": key, "request_hash": digest, "created_at": now})
            if record_id is not None:
                return Claim(record_id, now), None
            found = _FIND.first(conn, {"p": platform_id, "k": key})
            if found is not None:
                break
        else:
            raise DomainError("conflict", "a request with this Idempotency-Key is still in progress")
        request_hash, status_code, response_body = found
        if status_code is None and request_hash == digest:  # in flight, or abandoned long enough ago
            record_id = _TAKE_OVER.scalar(conn, {"p": platform_id, "k": key, "h": digest, "now": now,
                                                 "before": now - timedelta(seconds=ABANDONED_S)})
            if record_id is not None:
                return Claim(record_id, now), None
    if request_hash != digest:
        raise DomainError("idempotency_key_reused")
    if status_code is None:
        raise DomainError("conflict", "a request with this Idempotency-Key is still in progress")
    return None, (status_code, response_body)


# refusals a retry may well not meet again: a concurrent change won (`conflict`), the frequency window has
# not passed yet (`too_frequent`, with its Retry-After); like a 5xx they are not kept (as Stripe does not
# keep a request that conflicted with another), so the same key runs the request again
TRANSIENT = ("conflict", "too_frequent")


def finish(db, claimed: Claim, status: int, body: str, *, code: str | None = None) -> None:
    """Keep the answer for replays; a 5xx or a `TRANSIENT` refusal (`code`) is not kept (the record goes,
    so a retry runs again). Nothing happens if another request took the claim over meanwhile."""
    ours = {"_id": claimed.id, "_at": claimed.at}
    with autocommit(db) as conn:
        if status >= 500 or code in TRANSIENT:
            _DROP.run(conn, ours)
        else:
            _FINISH.run(conn, {**ours, "status": status, "body": body})
