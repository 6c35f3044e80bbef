"""The lean command path: optimistic commands (read, then one version-checked write), hot statements on
the driver's cursor (`workflows/statements.py`), and the pool's ping of idle connections.

Concurrent changes are injected at the exact moment between a command's read and its write (the read is
wrapped), so these tests decide nothing by timing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import db as mdb
from workflows import commands, platforms, rows, unit, verification
from workflows.errors import DomainError, VersionConflict
from workflows.statements import Statement

from .support import T0, accepted, assert_history_consistent, binding, invite, person


def _between_read_and_write(monkeypatch, competitor, times: int = 1):
    """Run `competitor()` right after the next `times` optimistic reads (`rows.get`, or `rows.get_joined` for
    the verification steps; each competitor in its own transaction, its own reads left alone)."""
    left, busy = [times], [False]

    def compete():
        if left[0] > 0 and not busy[0]:
            left[0] -= 1
            busy[0] = True
            try:
                competitor()
            finally:
                busy[0] = False

    def wrap(original):
        def read_then_compete(*args):
            found = original(*args)
            compete()
            return found
        return read_then_compete
    monkeypatch.setattr(rows, "get", wrap(rows.get))
    monkeypatch.setattr(rows, "get_joined", wrap(rows.get_joined))


@pytest.mark.pg
def test_optimistic_command_runs_again_on_the_state_the_winner_left(pg_db, family, monkeypatch):
    """Given an accepted binding,
    when the beneficiary's unbind commits between the grantor's authorize reading the binding and writing it,
    then authorize's write changes nothing, it runs again on the unbound binding and is refused with
    illegal_transition (what waiting for a row lock would have answered), and history holds one row per
    version with the unbind last."""
    fam = family(pg_db, now=T0)
    bid = accepted(pg_db, fam)
    later = T0 + timedelta(hours=1)
    _between_read_and_write(monkeypatch, lambda: commands.unbind(pg_db, bid, person(fam.beneficiary), now=later))

    with pytest.raises(DomainError) as refused:
        commands.authorize(pg_db, bid, person(fam.grantor), 5000, now=later)

    assert refused.value.code == "illegal_transition"
    assert binding(pg_db, bid).state == "unbound"
    assert [t.event for t in assert_history_consistent(pg_db, bid)][-2:] == ["accept", "unbind"]


@pytest.mark.pg
def test_optimistic_command_answers_conflict_when_it_loses_every_run(pg_db, family, monkeypatch):
    """Given an accepted binding,
    when another authorization commits between authorize's read and write on each of its runs,
    then authorize gives up after unit.RETRIES runs with 409 conflict, having written nothing itself."""
    fam = family(pg_db, now=T0)
    bid = accepted(pg_db, fam)
    later = T0 + timedelta(hours=1)
    amounts = iter(range(1000, 1000 + unit.RETRIES))
    _between_read_and_write(monkeypatch, lambda: commands.authorize(pg_db, bid, person(fam.grantor), next(amounts),
                                                                    now=later), times=unit.RETRIES)

    with pytest.raises(VersionConflict) as lost:
        commands.authorize(pg_db, bid, person(fam.grantor), 1, now=later)

    assert lost.value.code == "conflict" and lost.value.status == 409
    row = binding(pg_db, bid)
    assert row.authorized_amount_fen == 1000 + unit.RETRIES - 1  # the last competitor's, never ours
    events = [t.event for t in assert_history_consistent(pg_db, bid)]
    assert events.count("authorize") == unit.RETRIES


@pytest.mark.pg
def test_an_optimistic_command_is_two_statements_outside_a_transaction(pg_db, pg_engine, family):
    """Given an accepted binding,
    when it is unbound,
    then the command sends exactly two statements, the read and one data-modifying CTE, both on a
    connection in autocommit (no BEGIN/COMMIT round trips), and its history and outbox rows exist."""
    fam = family(pg_db, now=T0)
    bid = accepted(pg_db, fam)
    seen = []

    def hear(conn, cursor, statement, params, context, executemany):
        seen.append((statement.split(None, 1)[0].upper(), conn.connection.dbapi_connection.autocommit))
    sa.event.listen(pg_engine, "before_cursor_execute", hear)
    try:
        out = commands.unbind(pg_db, bid, person(fam.grantor), now=T0 + timedelta(hours=1))
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", hear)

    assert out["state"] == "unbound"
    assert seen == [("SELECT", True), ("WITH", True)]
    with pg_engine.connect() as c:
        topics = c.exec_driver_sql("SELECT topic FROM outbox WHERE binding_id = %(b)s ORDER BY id", {"b": bid})
        assert [t for (t,) in topics][-1] == "binding.unbound"


def test_the_verification_steps_are_two_statements_each(pg_db, pg_engine, family):
    """Given an invitation (policies and platforms already read once by the process),
    when the beneficiary starts a face verification and the provider's result is recorded,
    then each step sends exactly two statements (its joined read, its write): the policy the binding was
    made under and the provider whose result counts come from the process's caches, no query."""
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    with pg_db() as s:
        platforms.all_platforms(s)
    seen = []

    def hear(conn, cursor, statement, params, context, executemany):
        seen.append(statement.split(None, 1)[0].upper())
    sa.event.listen(pg_engine, "before_cursor_execute", hear)
    try:
        started = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
        after_start = list(seen)
        assert verification.record_verification_result(
            pg_db, verification_id=started["verification_id"], binding_id=bid, result="failed",
            verifier_id="facecheck", now=T0 + timedelta(seconds=2)) == "failed"
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", hear)

    assert after_start == ["SELECT", "WITH"] and seen[2:] == ["SELECT", "WITH"]


@pytest.mark.parametrize("db_name", ["pg_db", "sqlite_db"])
def test_an_optimistic_command_writes_only_through_its_transition(db_name, request, family):
    """Given an optimistic command (in autocommit on PostgreSQL, where a stray write would commit alone),
    when it asks for an ORM session, emits an event of its own, or runs any other write statement,
    then it is stopped with RuntimeError before that write, nothing is written, and the binding stays."""
    from workflows import outbox
    db = request.getfixturevalue(db_name)
    fam = family(db, now=T0)
    bid = accepted(db, fam)
    with db.kw["bind"].connect() as c:
        events_before = c.execute(sa.select(sa.func.count()).select_from(outbox.OUTBOX)).scalar()
    with pytest.raises(RuntimeError, match="no ORM session"):
        with unit.command(db, optimistic=True) as cmd:
            cmd.session
    with pytest.raises(RuntimeError, match="writes once"):
        with unit.command(db, optimistic=True) as cmd:
            cmd.emit("binding.note", {"binding_id": bid})
    with pytest.raises(RuntimeError, match="writes once"):
        with unit.command(db, optimistic=True) as cmd:
            outbox.write(cmd.conn, "binding.note", T0, {"binding_id": bid})
    with db.kw["bind"].connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(outbox.OUTBOX)).scalar() == events_before
    assert binding(db, bid).state == "accepted"


@pytest.mark.pg
def test_a_second_start_of_verification_gets_the_attempt_the_first_opened(pg_db, family, monkeypatch):
    """Given an invitation,
    when the beneficiary's second start of verification commits between the first one's read and write,
    then the first one's write changes nothing, it runs again, finds the open attempt and answers it:
    one attempt, one start_verification in history."""
    from workflows import verification
    from .support import invite
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    other = {}
    _between_read_and_write(monkeypatch, lambda: other.update(
        verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)))

    answer = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)

    assert answer["verification_id"] == other["verification_id"]
    events = [t.event for t in assert_history_consistent(pg_db, bid)]
    assert events == ["invite", "start_verification"]
    with pg_db.kw["bind"].connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM verification_attempts").scalar() == 1


@pytest.mark.pg
def test_a_result_that_loses_to_the_timeout_closes_nothing(pg_db, family, monkeypatch):
    """Given an open verification attempt past its timeout,
    when the sweeper's timeout commits between the verifier's result being read and written,
    then the result's write changes nothing, it runs again and is answered ignored_timed_out: the attempt
    was closed once (timed_out), and history holds one verification_failed."""
    from models import VerificationAttempt
    from workflows import timers, verification
    from .support import VERIFY_TIMEOUT, invite
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    vid = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    late = T0 + VERIFY_TIMEOUT + timedelta(seconds=1)
    _between_read_and_write(monkeypatch, lambda: timers.sweep(pg_db, now=late))

    outcome = verification.record_verification_result(pg_db, verification_id=vid, binding_id=bid,
                                                      result="passed", verifier_id="facecheck", now=late)

    assert outcome == "ignored_timed_out"
    with pg_db() as s:
        assert s.get(VerificationAttempt, vid).status == "timed_out"
    events = [t.event for t in assert_history_consistent(pg_db, bid)]
    assert events == ["invite", "start_verification", "verification_failed"]


# --- statements on the driver's cursor ----------------------------------------------------------------


@pytest.mark.pg
def test_timestamps_come_back_aware_utc_whatever_the_session_time_zone(pg_db, pg_engine, family):
    """Given a binding and a connection whose session time zone is Asia/Shanghai,
    when a hot statement reads it on the psycopg cursor,
    then every timestamp is timezone-aware UTC (the column type's result processing ran)."""
    fam = family(pg_db, now=T0)
    bid = accepted(pg_db, fam)
    with pg_engine.connect() as c:
        c.exec_driver_sql("SET TIME ZONE 'Asia/Shanghai'")
        row = rows.get(c, bid)
        c.rollback()
    assert row.created_at == T0 and row.created_at.utcoffset() == timedelta(0)
    assert row.expires_at.tzinfo is not None and row.expires_at.utcoffset() == timedelta(0)


@pytest.mark.pg
def test_a_naive_timestamp_is_refused_and_a_duplicate_is_an_integrity_error(pg_engine):
    """Given a hot INSERT statement,
    when it gets a naive datetime, and when it inserts a primary key twice,
    then the first is refused by the column type (ValueError) and the second raises SQLAlchemy's
    IntegrityError, which commands answer as 409/422 (not a bare driver error), whose text does not carry
    the values bound (they end up in logs: hide_parameters)."""
    t = sa.table("lean_probe", sa.column("id", sa.String), sa.column("at", sa.DateTime))
    from models.types import UTCDateTime
    insert = Statement(sa.insert(t).values(id=sa.bindparam("id"), at=sa.bindparam("at", type_=UTCDateTime())))
    with pg_engine.connect() as c:
        c.exec_driver_sql("CREATE TEMPORARY TABLE lean_probe (id text primary key, at timestamptz)")
        with pytest.raises(ValueError, match="naive"):
            insert.run(c, {"id": "a", "at": datetime(2026, 1, 1)})
        assert insert.run(c, {"id": "a", "at": datetime(2026, 1, 1, tzinfo=timezone.utc)}) == 1
        with pytest.raises(sa.exc.IntegrityError) as refused:
            insert.run(c, {"id": "a", "at": datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)})
        assert "2026-03-04" not in str(refused.value) and "parameters hidden" in str(refused.value)
        c.rollback()


def test_statements_the_cursor_path_cannot_run_are_refused_up_front():
    """Given statements with an expanding IN list or a parameter computed at execution time,
    when they are compiled for PostgreSQL,
    then they are refused (NotImplementedError) instead of running without SQLAlchemy's per-call work."""
    from sqlalchemy.dialects import postgresql

    from workflows.statements import _Compiled
    t = sa.table("x", sa.column("id", sa.String))
    with pytest.raises(NotImplementedError, match="expanding"):
        _Compiled(sa.select(t.c.id).where(t.c.id.in_(["a", "b"])), postgresql.psycopg.dialect())
    with pytest.raises(NotImplementedError, match="callable"):
        _Compiled(sa.select(t.c.id).where(t.c.id == sa.bindparam("i", callable_=lambda: "a")),
                  postgresql.psycopg.dialect())


# --- the pool's ping --------------------------------------------------------------------------------------


@pytest.mark.pg
def test_a_connection_that_died_while_idle_is_replaced_at_checkout(pg_engine, monkeypatch):
    """Given a pooled connection whose server process was terminated while it sat idle,
    when it is checked out again after the idle threshold,
    then the ping finds it dead and the pool hands out a fresh connection: the statement succeeds."""
    engine = mdb.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with engine.connect() as c:
            dead = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with pg_engine.connect() as admin:
            assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({dead})").scalar()
        monkeypatch.setattr(mdb, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as c:
            alive = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert alive != dead
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_name", ["pg_db", "sqlite_db"])
def test_the_invitation_keeps_the_signed_letter_on_the_grantor(db_name, request, family):
    """Given a grantor with no commitment letter on record (PostgreSQL: written in the invitation's one
    statement; SQLite: as a statement of its own),
    when they invite, and later invite a second relative with the same letter,
    then their person row holds the letter's version from the first invitation on, and the second leaves
    the row's updated_at alone."""
    from models import Person
    from .support import invite

    db = request.getfixturevalue(db_name)
    fam = family(db, now=T0)
    with db() as s:
        assert s.query(Person).filter_by(id_number_hash=_hash(fam.grantor)).one().commitment_version is None
    invite(db, fam)
    with db() as s:
        grantor = s.query(Person).filter_by(id_number_hash=_hash(fam.grantor)).one()
        assert grantor.commitment_version == "JS-2024-01"
        first_update = grantor.updated_at
    invite(db, family(db, grantor=(fam.grantor, fam.grantor_name), now=T0), now=T0 + timedelta(minutes=1))
    with db() as s:
        assert s.query(Person).filter_by(id_number_hash=_hash(fam.grantor)).one().updated_at == first_update


def _hash(number: str) -> str:
    from models.crypto import lookup_hash
    return lookup_hash(number)


@pytest.mark.pg
def test_a_connection_in_steady_use_is_not_pinged(pg_engine, monkeypatch):
    """Given a pool whose connection was opened, then checked in moments ago,
    when it is checked out again and again within the idle threshold (an hour here, so that a stalled
    test machine cannot make the connection idle),
    then no ping is sent (the round trip a checkout used to cost), but after the threshold one is."""
    engine = mdb.make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    pings = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda dbapi_conn: pings.append(1) or real(dbapi_conn))
    monkeypatch.setattr(mdb, "PING_AFTER_IDLE_S", 3600.0)  # a stall of the test machine is not idleness
    try:
        for _ in range(5):
            with engine.connect() as c:
                c.exec_driver_sql("SELECT 1")
        assert pings == []
        monkeypatch.setattr(mdb, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as c:
            c.exec_driver_sql("SELECT 1")
        assert pings == [1]
    finally:
        engine.dispose()


@pytest.mark.pg
def test_an_ingested_webhook_is_queued_in_the_outbox_envelope(pg_db, pg_engine):
    """Given a verifier platform,
    when a signed webhook is stored (PostgreSQL builds the outbox envelope in SQL around the new id),
    then the outbox row has the envelope every outbox row has (type, id, created_at, data) naming the stored
    row, and the same webhook-id again is answered as a duplicate of that row with nothing queued."""
    from workflows import platforms, webhooks
    verifier = platforms.get(pg_db, "facecheck")
    stored, duplicate = webhooks.receive(pg_db, platform=verifier, webhook_id="msg_envelope", body=b'{"type": "x"}',
                                         headers={"webhook-id": "msg_envelope"}, event_type="verification.completed")
    again = webhooks.receive(pg_db, platform=verifier, webhook_id="msg_envelope", body=b'{"type": "x"}',
                             headers={"webhook-id": "msg_envelope"}, event_type="verification.completed")
    with pg_engine.connect() as c:
        queued = c.exec_driver_sql("SELECT topic, payload FROM outbox WHERE topic = 'webhook.received'").all()
    assert duplicate is False and again == (stored, True)
    assert len(queued) == 1
    topic, payload = queued[0]
    assert topic == "webhook.received" and set(payload) == {"type", "id", "created_at", "data"}
    assert payload["type"] == topic and payload["id"].startswith("evt_")
    assert payload["data"] == {"received_webhook_id": stored}
    assert datetime.fromisoformat(payload["created_at"]).utcoffset() == timedelta(0)


@pytest.mark.pg
def test_a_group_of_webhooks_is_stored_in_one_statement_with_its_duplicates_answered(pg_db, pg_engine):
    """Given a webhook already stored
    When one group commit holds a new webhook, the same new webhook again, another new one, and the stored
    one again (from two platforms)
    Then each new webhook is stored once with one outbox row; its copy in the group and the earlier one are
    answered as duplicates naming the stored rows; the answers come back in the order of the rows."""
    from workflows import platforms, webhooks
    verifier, js = platforms.get(pg_db, "facecheck"), platforms.get(pg_db, "jiangsu")
    earlier, _ = webhooks.receive(pg_db, platform=verifier, webhook_id="msg_g0", body=b'{"n": 0}',
                                  headers={"webhook-id": "msg_g0"}, event_type="verification.completed")

    def row(platform, webhook_id):
        return dict(platform_id=platform.id, webhook_id=webhook_id, type="person.updated", body='{"n": 1}',
                    headers={"webhook-id": webhook_id}, attempts=0)
    answers = webhooks._write_many(pg_db, [row(verifier, "msg_g1"), row(verifier, "msg_g1"), row(js, "msg_g1"),
                                           row(verifier, "msg_g0")])

    with pg_engine.connect() as c:
        stored = dict(c.exec_driver_sql("SELECT platform_id || '/' || webhook_id, id FROM received_webhooks").all())
        queued = sorted(c.exec_driver_sql("SELECT (payload -> 'data' ->> 'received_webhook_id')::bigint FROM outbox "
                                          "WHERE topic = 'webhook.received'").scalars())
    assert stored == {"facecheck/msg_g0": earlier, "facecheck/msg_g1": stored["facecheck/msg_g1"],
                      "jiangsu/msg_g1": stored["jiangsu/msg_g1"]}
    assert answers == [(stored["facecheck/msg_g1"], False), (stored["facecheck/msg_g1"], True),
                       (stored["jiangsu/msg_g1"], False), (earlier, True)]
    assert queued == sorted(stored.values())
    assert webhooks.process(pg_db, stored["jiangsu/msg_g1"]) is not None  # the body decrypts: it was encrypted


@pytest.mark.pg
def test_webhooks_arriving_while_a_group_is_written_are_stored_together_next(pg_db, pg_engine):
    """Given a webhook whose group is held inside its INSERT (another transaction holds an uncommitted copy
    of its webhook-id, so ON CONFLICT waits for it)
    When four other webhooks arrive meanwhile (one of them twice)
    Then they wait, and once the copy commits the first is answered as its duplicate and the four are
    stored by one more statement, each answered with its own row, the repeated one as a duplicate of it."""
    import threading

    from workflows import platforms, webhooks

    from .support import wait_for_a_lock_wait, wait_until
    verifier = platforms.get(pg_db, "facecheck")
    group = webhooks._group(pg_db)
    answers: dict = {}

    def receive(key, webhook_id):
        answers[key] = webhooks.receive(pg_db, platform=verifier, webhook_id=webhook_id, body=b'{"n": 1}',
                                        headers={"webhook-id": webhook_id}, event_type="verification.completed")
    with pg_engine.connect() as holder:
        holder.exec_driver_sql("INSERT INTO received_webhooks (platform_id, webhook_id, type, body, headers, "
                               "received_at, attempts) VALUES ('facecheck', 'msg_held', 'x', 'x', '{}', now(), 0)")
        batches = group.batches
        threads = [threading.Thread(target=receive, args=("held", "msg_held"), daemon=True)]
        threads[0].start()
        wait_for_a_lock_wait(pg_db, on="received_webhooks")
        for i, webhook_id in enumerate(["msg_n1", "msg_n2", "msg_n3", "msg_n2", "msg_n4"]):
            threads.append(threading.Thread(target=receive, args=(i, webhook_id), daemon=True))
            threads[-1].start()
            wait_until(lambda: len(group._queue) == i + 1)
        holder.commit()
    for t in threads:
        t.join(30)
    with pg_engine.connect() as c:
        stored = dict(c.exec_driver_sql("SELECT webhook_id, id FROM received_webhooks").all())
        queued = c.exec_driver_sql("SELECT count(*) FROM outbox WHERE topic = 'webhook.received'").scalar()
    assert group.batches - batches == 2
    assert answers["held"] == (stored["msg_held"], True)
    assert [answers[i] for i in range(5)] == [(stored["msg_n1"], False), (stored["msg_n2"], False),
                                              (stored["msg_n3"], False), (stored["msg_n2"], True),
                                              (stored["msg_n4"], False)]
    assert queued == 4  # the four new ones; the held copy was written by hand, without one


@pytest.mark.parametrize("db_name", ["pg_db", "sqlite_db"])
def test_a_binding_is_read_as_one_snapshot(db_name, request, family):
    """Given an invitation with a failed and an open verification attempt, acknowledged by two platforms,
    when a platform reads it (`GET /bindings/{id}`),
    then one statement answers: both attempts once each, in order, and both platforms' versions."""
    from models import seed
    from workflows import queries, sync, verification
    from .support import invite
    db = request.getfixturevalue(db_name)
    fam = family(db, now=T0)
    bid = invite(db, fam)["id"]
    first = verification.start_verification(db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    verification.record_verification_result(db, verification_id=first, binding_id=bid, result="failed",
                                            verifier_id="facecheck", now=T0)
    second = verification.start_verification(db, bid, person(fam.beneficiary), now=T0)["verification_id"]
    with db.begin() as s:
        seed.seed_dev_platforms(s)
        sync.acknowledge(s, "national", bid, 3, T0)
        sync.acknowledge(s, "jiangsu", bid, 4, T0)
    engine, seen = db.kw["bind"], []

    def hear(conn, cursor, statement, params, context, executemany):
        seen.append(statement.split(None, 1)[0].upper())
    sa.event.listen(engine, "before_cursor_execute", hear)
    try:
        view = queries.binding(db, bid)
    finally:
        sa.event.remove(engine, "before_cursor_execute", hear)

    assert [s for s in seen if s != "BEGIN"] == ["SELECT"]  # SQLite opens every transaction with BEGIN
    assert [(v["verification_id"], v["status"]) for v in view["verifications"]] == [(first, "failed"),
                                                                                     (second, "pending")]
    assert view["sync"] == {"jiangsu": 4, "national": 3} and view["version"] == 4
    with pytest.raises(DomainError) as refused:
        queries.binding(db, "bnd_missing")
    assert refused.value.code == "not_found"
