"""Inbound webhooks: stored first (with an outbox row that gets them processed), processed by a worker.

`receive` runs inside the HTTP request after the signature was verified: one transaction stores the raw
body (encrypted: it may carry ID numbers) and its headers, deduplicated on (platform, webhook-id).
`process` applies it once; a rule refusal is a final outcome, anything else (also `conflict`: a concurrent
change won) is retried by the worker. Person, relationship and unbind events are `person_events`."""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from models import ReceivedWebhook
from models.types import new_id, utcnow

from . import characters, correlation, free_text, outbox, person_events, platforms
from .errors import CODES, DomainError, LockTimeout
from .free_text import REASON_CHARS
from .group_commit import GroupCommit
from .once import run_once
from .statements import PerDialect, Statement, autocommit
from .verification import record_verification_result

MAX_ATTEMPTS = 25  # runs of a stored webhook before an unexpected error (one its data causes every time,
# e.g. a value the database cannot store) is its final outcome `failed:<error>`, instead of a retry forever;
# a run is only counted when the database answers, so an outage does not use them up
# the database away or timing out: never the webhook's fault, retried however often it happens
_PASSING = (sa.exc.OperationalError, sa.exc.InterfaceError)
TYPES = ("verification.completed", "person.updated", "person.deceased", "relationship.ended",
         "binding.unbind_requested")
# which platform kinds may send which type
SENDERS = {"verification.completed": ("verifier",)}


RW = ReceivedWebhook.__table__
log = logging.getLogger(__name__)
TOPIC = "webhook.received"
MAX_WEBHOOK_ID = RW.c.webhook_id.type.length  # characters
_FIND = Statement(sa.select(RW.c.id).where(RW.c.platform_id == sa.bindparam("p"),
                                           RW.c.webhook_id == sa.bindparam("w")))
_ROW = {c: sa.bindparam(c, type_=RW.c[c].type)
        for c in ("platform_id", "webhook_id", "type", "body", "headers", "received_at", "attempts")}


def _store(insert):
    """INSERT … ON CONFLICT (platform, webhook-id) DO NOTHING RETURNING id: nothing for a duplicate."""
    return (insert(RW).values(_ROW).on_conflict_do_nothing(index_elements=["platform_id", "webhook_id"])
            .returning(RW.c.id))


# PostgreSQL: the rows of a group commit (`workflows/group_commit.py`) stored with their outbox rows (the
# envelope of `outbox.message`, built in SQL around each new id) in one statement; a webhook-id already
# stored is left alone (ON CONFLICT DO NOTHING) and looked up with `_FIND_MANY`.
_INGEST_MANY = Statement(sa.text("""
WITH input AS (
    SELECT * FROM unnest(CAST(:platform_ids AS text[]), CAST(:webhook_ids AS text[]), CAST(:types AS text[]),
                         CAST(:bodies AS text[]), CAST(:headers AS text[]), CAST(:event_ids AS text[]))
        AS t(platform_id, webhook_id, type, body, headers, event_id)),
stored AS (
    INSERT INTO received_webhooks (platform_id, webhook_id, type, body, headers, received_at, attempts)
    SELECT platform_id, webhook_id, type, body, CAST(headers AS json), :received_at, 0 FROM input
    ON CONFLICT (platform_id, webhook_id) DO NOTHING
    RETURNING id, platform_id, webhook_id),
queued AS (
    INSERT INTO outbox (topic, created_at, payload, attempts)
    SELECT CAST(:topic AS text), :received_at,
           json_build_object('type', CAST(:topic AS text), 'id', input.event_id,
                             'created_at', CAST(:created_at AS text),
                             'data', json_build_object('received_webhook_id', stored.id)), 0
    FROM stored JOIN input USING (platform_id, webhook_id)
    RETURNING id, CAST(payload -> 'data' ->> 'received_webhook_id' AS bigint) AS received_id)
SELECT stored.platform_id, stored.webhook_id, stored.id, queued.id
FROM stored LEFT JOIN queued ON queued.received_id = stored.id""").columns(
    sa.column("platform_id"), sa.column("webhook_id"), sa.column("id"), sa.column("outbox_id")))
_FIND_MANY = Statement(sa.text("""
SELECT r.platform_id, r.webhook_id, r.id FROM received_webhooks r
JOIN unnest(CAST(:platform_ids AS text[]), CAST(:webhook_ids AS text[])) AS t(platform_id, webhook_id)
  ON r.platform_id = t.platform_id AND r.webhook_id = t.webhook_id""").columns(
    sa.column("platform_id"), sa.column("webhook_id"), sa.column("id")))
_STORE_OTHER = PerDialect(_store)  # SQLite: built on first use with that dialect's insert
_BODY = RW.c.body.type
_GROUP_LOCK = threading.Lock()


def _write_many(db, rows: list[dict]) -> list[tuple[int, bool]]:
    """Store a group commit's rows (PostgreSQL, one statement in autocommit); (row id, duplicate) for each,
    in order. A webhook-id twice in one batch is stored once, the second answered as its duplicate."""
    now = utcnow()
    first: dict[tuple[str, str], dict] = {}
    for row in rows:
        first.setdefault((row["platform_id"], row["webhook_id"]), row)
    new = sorted(first.values(), key=lambda r: (r["platform_id"], r["webhook_id"]))  # two groups with the same
    # ids lock them in the same order (ON CONFLICT waits for an uncommitted copy): no deadlock between them
    params = {"platform_ids": [r["platform_id"] for r in new], "webhook_ids": [r["webhook_id"] for r in new],
              "types": [r["type"] for r in new], "bodies": [_BODY.process_bind_param(r["body"], None) for r in new],
              "headers": [json.dumps(r["headers"]) for r in new], "event_ids": [new_id("evt") for _ in new],
              "received_at": now, "created_at": now.isoformat(), "topic": TOPIC}
    with autocommit(db) as conn:
        stored = {(p, w): (rid, oid) for p, w, rid, oid in _INGEST_MANY.rows(conn, params)}
        for key, (rid, oid) in stored.items():
            if oid is None:  # cannot happen (the join is on the values just inserted); if it did, the row would
                # wait for no worker: queue it on its own
                stored[key] = (rid, outbox.write(conn, TOPIC, now, {"received_webhook_id": rid}))
        missing = [k for k in first if k not in stored]
        found = {(p, w): rid for p, w, rid in _FIND_MANY.rows(
            conn, {"platform_ids": [k[0] for k in missing], "webhook_ids": [k[1] for k in missing]})} \
            if missing else {}
    outbox.published([oid for _, oid in stored.values()])
    out, answered = [], set()
    for row in rows:
        key = (row["platform_id"], row["webhook_id"])
        if key in stored and key not in answered:
            answered.add(key)
            out.append((stored[key][0], False))
        else:
            out.append((stored[key][0] if key in stored else found[key], True))
    return out


def _group(db) -> GroupCommit:
    """This process's group commit for `db`, kept on it (it lives as long as the session factory)."""
    group = getattr(db, "_gongji_ingest_group", None)
    if group is None:
        with _GROUP_LOCK:
            group = getattr(db, "_gongji_ingest_group", None)
            if group is None:  # a constraint or a value one row breaks fails that row only
                group = GroupCommit(lambda rows: _write_many(db, rows),
                                    row_errors=(sa.exc.IntegrityError, sa.exc.DataError))
                db._gongji_ingest_group = group
    return group


def receive(db, *, platform, webhook_id: str, body: bytes, headers: dict, event_type: str) -> tuple[int, bool]:
    """Store a verified webhook with the outbox row that gets it processed; returns (row id, duplicate).

    The ingest hot path. The unique (platform, webhook-id) turns a duplicate's INSERT into nothing (also
    for two copies arriving at once). PostgreSQL: the concurrent requests of a process are stored together,
    one statement in autocommit for each group (`_write_many`, `workflows/group_commit.py`); elsewhere the
    INSERT and the outbox INSERT in one transaction."""
    allowed = SENDERS.get(event_type, ("national", "province"))
    if platform.kind not in allowed:
        raise DomainError("platform_not_allowed", f"a {platform.kind} platform may not send {event_type}")
    if not 0 < len(webhook_id) <= MAX_WEBHOOK_ID:  # also: one overlong id must not fail a whole group
        raise DomainError("validation_failed", f"webhook-id is 1 to {MAX_WEBHOOK_ID} characters")
    row = dict(platform_id=platform.id, webhook_id=webhook_id, type=event_type, body=body.decode("utf-8"),
               headers=headers, attempts=0)
    if db.kw["bind"].dialect.name == "postgresql":
        return _group(db).submit(row)
    now = utcnow()
    with autocommit(db) as conn:  # one transaction around both inserts
        stored = _STORE_OTHER(conn.dialect.name).scalar(conn, {**row, "received_at": now})
        msg = None if stored is None else outbox.write(conn, TOPIC, now, {"received_webhook_id": stored})
        if stored is None:
            return _FIND.scalar(conn, {"p": platform.id, "w": webhook_id}), True
    outbox.published([msg])
    return stored, False


def sent_at(row: ReceivedWebhook) -> datetime:
    """The as-of time of an event without `data.updated_at`: its `webhook-timestamp`, as of the end of that
    second, but never later than the moment Gongji received it. The header has whole seconds and the event
    left at some instant within it, so a fact held from earlier in the same second (a `POST /persons` a
    moment before, stamped to the microsecond) is older and the event applies; a re-send with the same
    timestamp is as of the same instant, so it is `stale`. The cap on arrival: a sender whose clock runs
    ahead (the signature check tolerates 5 minutes) would otherwise make its fact look newer than another
    platform's that arrives after it, which would then be dropped as `stale` for good; and of two events
    within one second, the one that arrived later is the newer."""
    try:
        second = datetime.fromtimestamp(int((row.headers or {}).get("webhook-timestamp")), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return row.received_at
    return min(second + timedelta(microseconds=999_999), row.received_at)


def _apply(db, row: ReceivedWebhook) -> str:
    data = json.loads(row.body).get("data") or {}
    if not isinstance(data, dict):
        raise DomainError("validation_failed", "data is an object")
    if row.type == "verification.completed":
        if not isinstance(data.get("reason"), (str, type(None))):
            raise DomainError("validation_failed", "reason is a string")
        # a longer reason is cut, not refused: a refusal is final, and a passed face check would be lost to it;
        # so are the characters no text may hold (workflows/characters.py)
        reason = characters.without(data.get("reason"))[:REASON_CHARS] if data.get("reason") else None
        data = {**data, "reason": reason}
    where = characters.first_refused(data)
    if where is not None:  # as the API refuses them in a body: the same on SQLite and PostgreSQL
        raise DomainError("validation_failed", f"data.{where} {characters.WHAT}")
    if row.type == "verification.completed":
        return record_verification_result(db, verification_id=str(data.get("verification_id")),
                                          binding_id=str(data.get("binding_id")), result=data.get("result"),
                                          verifier_id=row.platform_id, reason=reason)
    handler = person_events.HANDLERS.get(row.type)
    if handler is None:
        return "unsupported_type"
    return handler(db, data, platform=platforms.get(db, row.platform_id), as_of=sent_at(row), received=row.received_at)


BINDING_ID_CHARS = RW.c.binding_id.type.length
ERROR_CHARS = 2000  # of the error a give-up is kept with (as `once.run_once` keeps a failed run's)


def named_binding(row) -> str | None:
    """The binding a stored webhook's data names (`verification.completed`, `binding.unbind_requested`:
    `data.binding_id`), if it could be one; recorded with the outcome only when that binding exists
    (`ReceivedWebhook.ONCE_DONE`), so the dashboard lists the webhook on the binding's page."""
    try:
        found = json.loads(row.body).get("data", {}).get("binding_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    # a NUL would fail the statement recording the outcome (PostgreSQL's text cannot hold it)
    return found if isinstance(found, str) and 0 < len(found) <= BINDING_ID_CHARS and "\x00" not in found else None


_WORDS = ": "  # a refusal's last error is its code, this, and its detail


def refusal_words(outcome: str | None, last_error: str | None) -> str | None:
    """A refusal's detail without the code it starts with (the dashboard translates the code beside it);
    None for anything else (a failure's text, a refusal kept before its words were)."""
    head = f"{outcome}{_WORDS}"
    return last_error[len(head):] if outcome and last_error and last_error.startswith(head) else None


def _apply_final(db):
    def work(row: ReceivedWebhook) -> tuple[str, dict]:
        """The outcome and, set by the statement that records it (`ReceivedWebhook.ONCE_DONE`), the binding
        named (if it exists) and, for a give-up, the error it gave up on (for the dashboard: masked there)."""
        outcome, error = _outcome(row)
        return outcome, {"_binding_id": named_binding(row), "_last_error": error}

    def _outcome(row: ReceivedWebhook) -> tuple[str, str | None]:
        try:
            with correlation.bound(correlation.of_webhook(row.webhook_id)):  # its transitions name it
                return _apply(db, row), None
        except DomainError as exc:  # a refusal is the final outcome; other errors are retried
            # a concurrent change won: retry; a lock held too long is never the webhook's fault: retry always
            if exc.code == "conflict" and (row.attempts < MAX_ATTEMPTS or isinstance(exc, LockTimeout)):
                raise
            # kept with it: why (Gongji's own words; numbers masked), for the sender (`status`) and the dashboard
            return exc.code, free_text.clean(f"{exc.code}{_WORDS}{exc.detail}", limit=ERROR_CHARS)
        except Exception as exc:  # noqa: BLE001 - retried, until it is plainly the webhook's own fault
            if row.attempts < MAX_ATTEMPTS or isinstance(exc, _PASSING):
                raise
            log.error("received webhook %s failed %d times; its final outcome is failed:%s", row.id,
                      row.attempts, type(exc).__name__)
            # kept (it may quote the data): with ID and mobile numbers masked, as the dashboard shows it
            return f"failed:{type(exc).__name__}"[:64], free_text.clean(f"{type(exc).__name__}: {exc}",
                                                                         limit=ERROR_CHARS)
    return work


_STATUS = Statement(sa.select(RW.c.webhook_id, RW.c.type, RW.c.received_at, RW.c.processed_at, RW.c.outcome,
                             RW.c.attempts, RW.c.last_error).where(RW.c.platform_id == sa.bindparam("p"),
                                                  RW.c.webhook_id == sa.bindparam("w")))


def status(db, platform_id: str, webhook_id: str) -> dict:
    """What became of a webhook the platform sent (its own only: another platform's id is not found).
    `outcome` is what `process` recorded: a verification's result, a person event's effect, a refusal code,
    or `failed:<error type>` after MAX_ATTEMPTS runs. A refusal comes with its `detail` (Gongji's words,
    numbers masked); a failure's error text never leaves (it may quote the body, or the database)."""
    with autocommit(db) as conn:
        found = _STATUS.first(conn, {"p": platform_id, "w": webhook_id})
    if found is None:
        raise DomainError("not_found", "no webhook with this webhook-id from this platform")
    wid, kind, received_at, processed_at, outcome, attempts, error = found
    refused = processed_at is not None and outcome in CODES
    return {"webhook_id": wid, "type": kind, "status": "pending" if processed_at is None else "processed",
            "outcome": outcome, "detail": error if refused else None, "attempts": attempts,
            "received_at": received_at.isoformat(),
            "processed_at": processed_at.isoformat() if processed_at is not None else None}


def process(db, received_id: int) -> str:
    """Apply a stored webhook once. Returns its outcome."""
    return run_once(db, ReceivedWebhook, received_id, _apply_final(db))
