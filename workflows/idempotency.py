"""`Idempotency-Key` records: the first request with a key claims it (a unique row), later requests with
the same key and the same body get the stored answer, a different body is refused, and a request arriving
while the first is still in flight gets 409. 5xx answers and transient refusals (`TRANSIENT`) are not
stored, so a retry runs again.

A claim whose request never finished (its process was killed between the claim and `finish`) would have
answered 409 "in progress" to every retry for ever: after `ABANDONED_S` seconds a retry with the same
body takes it over and runs the command again. The command's own guards decide a repeat: a transition
the binding already made is 409 `illegal_transition`, a second invitation of the pair meets the open one.
A claim is its row and the time it was claimed (`Claim`): `finish` writes only while the claim is still
the request's own, so a request that was taken over cannot overwrite or drop its successor's answer.

A request is recognised by a keyed digest of its method, path and body (`fingerprint`; a JSON body in its
`canonical` form, so key order and spacing do not matter): a body may carry an ID number, and an unkeyed
hash of it could be reversed by trying numbers. Records claimed before the
digest was keyed hold the unkeyed one, and records claimed while a look-up key is being retired may hold
its digest (`other_fingerprints`), which `claim` still accepts; they, like
every record, go after `RETENTION_S` (`purge`, from the scheduler): a key is remembered for 24 hours by
default (`GONGJI_IDEMPOTENCY_RETENTION_H`), as Stripe keeps its keys. A repeat after that runs again, and
the command's own guards answer it (a transition already made is 409, an invitation of a pair already
invited meets the open one, a settlement is idempotent on its `reference` for ever)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson
import sqlalchemy as sa

from models import IdempotencyRecord
from models.crypto import keyed_digest, retired_keyed_digests
from models.settings import number
from models.types import utcnow

from . import correlation
from .errors import DomainError
from .kept_writes import KeptWrites
from .statements import PerDialect, Statement, autocommit


def _request(method: str, path: str, body: bytes) -> bytes:
    return method.encode() + b" " + path.encode() + b"\n" + body


def canonical(body: bytes) -> bytes:
    """A JSON body in one form (keys sorted, no insignificant spaces), so that a retry whose library writes
    the same request differently (key order, spacing, escapes) is the same request, as Stripe compares
    parameters rather than bytes; a body that is not JSON, as sent."""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, TypeError):  # not JSON (an empty body, a form), or beyond orjson's numbers
        return body


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What identifies a request under its key: a keyed digest (the body may carry an ID number) of its
    method, path and canonical body."""
    return keyed_digest("idempotency", _request(method, path, canonical(body)))


def other_fingerprints(method: str, path: str, body: bytes) -> tuple[str, ...]:
    """The digests an older record of the same request may hold, never written any more: of the body as
    sent (records claimed before the digest took the canonical body), under the look-up key being retired
    (GONGJI_LOOKUP_KEY_RETIRED), and the unkeyed one of records claimed before the digest was keyed. They
    hold until `purge` takes them (a day after their claim) or a retry takes one over (it writes the
    active digest)."""
    sent, request = _request(method, path, body), _request(method, path, canonical(body))
    as_sent = (keyed_digest("idempotency", sent),) if sent != request else ()
    retired = dict.fromkeys((*retired_keyed_digests("idempotency", request),
                             *retired_keyed_digests("idempotency", sent)))
    return (*as_sent, *retired, hashlib.sha256(sent).hexdigest())


# seconds a key is remembered (from its claim); GONGJI_IDEMPOTENCY_RETENTION_H sets it in hours
RETENTION_S = max(1.0, number("GONGJI_IDEMPOTENCY_RETENTION_H", 24, minimum=0, maximum=24 * 3650)) * 3600.0  # ≥ 1 h


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
    .values(created_at=sa.bindparam("now", type_=IR.c.created_at.type), request_hash=sa.bindparam("keyed"))
    .returning(IR.c.id))  # a record from before the digest was keyed takes the keyed one with its new claim
_CLAIM = PerDialect(lambda insert: insert(IR).values({c: sa.bindparam(c, type_=IR.c[c].type) for c in _COLUMNS})
                    .on_conflict_do_nothing(index_elements=["platform_id", "key"]).returning(IR.c.id))


class Claim(NamedTuple):
    id: int
    at: datetime  # when this request claimed the key: the token `finish` checks


def stored_key(key: str) -> str:
    """The key as it is stored: as sent when it is plain (`correlation.acceptable`: ASCII letters, digits and
    `._:-`, no number a person owns in it, as events carry it), else `#` and a keyed digest of it, so that a
    key a platform built from an ID number ("invite-3201…") is not kept in plaintext for a day. `#` is never
    in a plain key: no key sent as is can equal a digest. Such a key claimed before 2026-11-26 was stored as
    sent: a retry of it runs again (the command's guards answer it) until it goes with its day."""
    return key if correlation.acceptable(key, limit=correlation.KEY_CHARS) else \
        "#" + keyed_digest("idempotency-key", key.encode())


def claim(db, platform_id: str, key: str, digest: str, *, also: tuple[str, ...] = (),
          now: datetime | None = None) -> tuple[Claim | None, tuple[int, str] | None]:
    """(claim, None) when this request owns the key; (None, (status, body)) to replay. `also`: the
    request's other digests (`other_fingerprints`), which an older record of it may hold.

    One statement decides (the unique key; in autocommit on PostgreSQL): a write with a key costs two
    statements more than one without, the claim and `finish`."""
    if not key or len(key) > 255:
        raise DomainError("validation_failed", "Idempotency-Key is 1 to 255 characters")
    key = stored_key(key)
    now = now or utcnow()
    with autocommit(db) as conn:
        KEPT.settle(db, conn)
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
        same = request_hash == digest or request_hash in also
        if status_code is None and same:  # in flight, or abandoned long enough ago
            record_id = _TAKE_OVER.scalar(conn, {"p": platform_id, "k": key, "h": request_hash, "keyed": digest,
                                                 "now": now, "before": now - timedelta(seconds=ABANDONED_S)})
            if record_id is not None:
                return Claim(record_id, now), None
    if not same:
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
    so a retry runs again). Nothing happens if another request took the claim over meanwhile.

    When the database cannot be reached (a restart, a failover: often why the request failed, or it went
    away after the command committed), the outcome is kept in this process and written as soon as the
    database answers (`KEPT`, workflows/kept_writes.py); the request answers what it has. Without that the
    claim would stay "in flight", and every retry be 409 until ABANDONED_S passed."""
    KEPT.write_or_keep(db, (claimed, status, body, code))


def _settle(conn, outcome: tuple[Claim, int, str, str | None]) -> None:
    claimed, status, body, code = outcome
    ours = {"_id": claimed.id, "_at": claimed.at}
    if status >= 500 or code in TRANSIENT:
        _DROP.run(conn, ours)
    else:
        _FINISH.run(conn, {**ours, "status": status, "body": body})


# outcomes `finish` could not write, written by a thread of their own or the next `claim` or `finish` of this
# process (lost if the process ends first: the claim is then taken over after ABANDONED_S, as a killed request's)
KEPT = KeptWrites(_settle, what="Idempotency-Key outcomes")


_OLD = IR.c.created_at < sa.bindparam("before", type_=IR.c.created_at.type)
# the age again on the DELETE itself: a take-over that committed while this waited for its row lock made the
# row young again, and PostgreSQL re-checks the changed row against the DELETE's own conditions only
_EXPIRED = Statement(sa.delete(IR).where(IR.c.id.in_(
    sa.select(IR.c.id).where(_OLD).order_by(IR.c.created_at).limit(sa.bindparam("n", type_=sa.Integer))
    .scalar_subquery()), _OLD))


def purge(db, *, now: datetime | None = None, batch: int = 5000, most: int = 100_000) -> int:
    """Forget the keys claimed more than `RETENTION_S` ago (the oldest first, `batch` a transaction,
    `ix_idempotency_records_created_at`), at most `most` a call (the scheduler calls it each minute, so a
    backlog after an upgrade drains over a few calls without holding the tick). Returns how many went."""
    before = (now or utcnow()) - timedelta(seconds=RETENTION_S)
    gone = 0
    while gone < most:
        with autocommit(db) as conn:
            n = _EXPIRED.run(conn, {"before": before, "n": min(batch, most - gone)})
        gone += n
        if n < batch:
            break
    return gone
