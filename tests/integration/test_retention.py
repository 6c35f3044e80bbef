"""Retention on real PostgreSQL (and the embedded SQLite file): what `workflows.retention.purge` forgets
after the retention, and what it keeps for ever (the binding's record, and every message not done yet)."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import Binding, Delivery, DeliveryAttempt, OutboxMessage, ReceivedWebhook, Transition
from models.types import utcnow
from workflows import casefile, commands, platforms, retention, routing, sync, webhooks

from .support import T0, accepted, drain, fan_out_all, person

AFTER = T0 + timedelta(seconds=retention.RETENTION_S + 3600)  # past the retention of everything at T0


def counts(db) -> dict[str, int]:
    with db() as s:
        return {m.__tablename__: s.scalar(sa.select(sa.func.count()).select_from(m))
                for m in (Delivery, DeliveryAttempt, OutboxMessage, ReceivedWebhook, Binding, Transition)}


def test_delivered_messages_go_after_the_retention_and_the_bindings_record_stays(pg_db, family, receivers):
    """Given a binding unbound at T0 whose events all reached both platforms, and a second binding whose
    Jiangsu deliveries died (the platform was away), all of it older than the retention
    When the retention's purge runs
    Then the delivered deliveries, their tries and the events with nothing left to deliver are gone; the
    dead deliveries and the events they would send stay (an operator may replay them); both bindings,
    their history and the platforms' acknowledged versions stay, and the binding's page still renders."""
    fam = family(pg_db)
    done = accepted(pg_db, fam)
    commands.unbind(pg_db, done, person(fam.grantor), now=T0 + timedelta(seconds=4))
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    stuck = accepted(pg_db, family(pg_db), now=T0 + timedelta(seconds=10))
    ready = fan_out_all(pg_db, T0 + timedelta(seconds=12))
    with pg_db.begin() as s:  # Jiangsu's copies of the second binding's events died
        s.execute(sa.update(Delivery).where(Delivery.binding_id == stuck, Delivery.platform_id == "jiangsu")
                  .values(status="dead", next_attempt_at=None))
    drain(pg_db, T0 + timedelta(seconds=15), ready)
    before = counts(pg_db)
    assert before["deliveries"] == 10 + 8 and before["delivery_attempts"] == 14  # 10 + national's 4

    gone = retention.purge(pg_db, now=AFTER, budget_s=600)

    after = counts(pg_db)
    assert gone == {"deliveries": 14, "outbox": 5, "received_webhooks": 0}
    assert after["deliveries"] == 4 and after["delivery_attempts"] == 0
    with pg_db() as s:
        assert set(s.scalars(sa.select(Delivery.status))) == {"dead"}
        kept = s.scalars(sa.select(OutboxMessage.binding_id).distinct()).all()
    assert kept == [stuck]  # the dead deliveries' events: 4 of them
    assert (after["bindings"], after["binding_transitions"]) == (before["bindings"], before["binding_transitions"])
    assert sync.acked_versions(pg_db, done) == {"national": 5, "jiangsu": 5}
    page = casefile.casefile(pg_db, done, now=AFTER)
    assert page["binding"]["state"] == "unbound" and len(page["history"]) == 5 and page["deliveries"] == []
    # And a replay of a dead delivery still sends its event
    from workflows import delivery_repair
    replayed = delivery_repair.replay(pg_db, platform_id="jiangsu", now=AFTER)
    assert replayed and drain(pg_db, AFTER, replayed) == 4
    assert receivers["jiangsu"].versions(stuck) == [1, 2, 3, 4]


def test_what_is_younger_than_the_retention_or_not_done_stays(pg_db, family, receivers):
    """Given a binding's events a day old, fanned out but not yet delivered, and one not yet fanned out
    When the purge runs
    Then nothing is deleted: pending deliveries and unprocessed events are not done, and a day is young."""
    accepted(pg_db, family(pg_db))
    fan_out_all(pg_db, T0)
    before = counts(pg_db)
    assert retention.purge(pg_db, now=T0 + timedelta(days=1), budget_s=600) == {"deliveries": 0, "outbox": 0, "received_webhooks": 0}
    assert retention.purge(pg_db, now=AFTER, budget_s=600)["deliveries"] == 0  # pending: not done, however old
    assert counts(pg_db)["delivery_attempts"] == before["delivery_attempts"]


def test_processed_webhooks_go_after_the_retention_and_a_webhook_id_from_before_is_stored_anew(pg_db):
    """Given three verification webhooks received from the face provider: one processed, one still
    pending, one whose processing gave up (`failed:<error>`: an operator may still retry it)
    When the purge runs after the retention
    Then the processed one (its encrypted body, its headers) and its processed outbox row are gone, the
    pending one and the one that gave up stay; and the processed one's webhook-id sent again is stored as
    a new webhook."""
    face = platforms.get(pg_db, "facecheck")
    ids = {}
    for w in ("w-done", "w-pending", "w-gave-up"):
        ids[w], dup = webhooks.receive(pg_db, platform=face, webhook_id=w, body=b'{"type": "verification.completed",'
                                       b' "data": {}}', headers={"webhook-id": w}, event_type="verification.completed")
        assert not dup
    processed = webhooks.process(pg_db, ids["w-done"])
    assert processed == "not_found" or processed  # the verification does not exist: a final refusal
    with pg_db.begin() as s:
        s.execute(sa.update(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC,
                                                 OutboxMessage.payload["data"]["received_webhook_id"].as_integer()
                                                 == ids["w-done"]).values(processed_at=utcnow()))
        s.execute(sa.update(ReceivedWebhook).where(ReceivedWebhook.id == ids["w-gave-up"])
                  .values(processed_at=utcnow(), outcome="failed:DataError", attempts=25))

    gone = retention.purge(pg_db, now=utcnow() + timedelta(seconds=retention.RETENTION_S + 60), budget_s=600)

    assert gone["received_webhooks"] == 1 and gone["outbox"] == 1
    with pg_db() as s:
        assert sorted(s.scalars(sa.select(ReceivedWebhook.webhook_id))) == ["w-gave-up", "w-pending"]
    again, dup = webhooks.receive(pg_db, platform=face, webhook_id="w-done", body=b'{"type": "x", "data": {}}',
                                  headers={"webhook-id": "w-done"}, event_type="verification.completed")
    assert not dup and again != ids["w-done"]


def test_a_purge_out_of_time_goes_on_next_time_from_where_it_stopped(pg_db, family, receivers, monkeypatch):
    """Given 14 delivered deliveries older than the retention, among 4 dead ones (kept: an operator may
    replay them)
    When the purge runs with batches of 3 and no time to spare (one batch a table a call), six times
    Then the calls take 3, 3, 3, 3, 2 and 0; each call's batch starts after the last id the one before
    took, and once the whole old range was passed the next call starts past it: the kept rows are passed
    once, not at every call. After the day's rescan it starts again from the lowest id."""
    stuck, fam = accepted(pg_db, family(pg_db)), family(pg_db)
    ready = fan_out_all(pg_db, T0)
    with pg_db.begin() as s:  # the first binding's deliveries to Jiangsu died; national's are delivered
        s.execute(sa.update(Delivery).where(Delivery.binding_id == stuck, Delivery.platform_id == "jiangsu")
                  .values(status="dead", next_attempt_at=None))
    drain(pg_db, T0 + timedelta(seconds=5), ready)
    bid = accepted(pg_db, fam, now=T0 + timedelta(seconds=10))
    commands.unbind(pg_db, bid, person(fam.grantor), now=T0 + timedelta(seconds=14))
    drain(pg_db, T0 + timedelta(seconds=15), fan_out_all(pg_db, T0 + timedelta(seconds=12)))
    with pg_db() as s:
        last_id = s.scalar(sa.select(sa.func.max(Delivery.id)))
    seen = []
    plain = retention._batch
    monkeypatch.setattr(retention, "_batch", lambda db, name, *a: seen.append((name, a[1])) or plain(db, name, *a))

    taken = [retention.purge(pg_db, now=AFTER, batch=3, budget_s=0)["deliveries"] for _ in range(6)]

    assert taken == [3, 3, 3, 3, 2, 0]
    with pg_db() as s:
        assert list(s.scalars(sa.select(Delivery.status).distinct())) == ["dead"]
    afters = [after for name, after in seen if name == "deliveries"]
    assert afters[0] == 0 and afters[:5] == sorted(set(afters[:5])) and afters[5] >= last_id
    retention._CURSORS.update({k: (v[0], v[1] - retention.RESCAN_S - 1) for k, v in retention._CURSORS.items()})
    retention.purge(pg_db, now=AFTER, budget_s=0)
    assert [after for name, after in seen if name == "deliveries"][-1] == 0


def test_the_first_id_of_the_window_is_found_by_probes_over_gaps(sqlite_db):
    """Given outbox rows with ids 1..40 stamped a day apart, some deleted (gaps in the ids)
    When the boundary of a cutoff is searched
    Then every row below it is older than the cutoff and every row from it on is not (inside a gap any id
    of the gap will do); it is one past the last id when every row is older, and 0 when none is or the
    table is empty."""
    with sqlite_db.begin() as s:
        for i in range(1, 41):
            s.add(OutboxMessage(id=i, topic="t", payload={}, created_at=T0 + timedelta(days=i)))
        s.execute(sa.delete(OutboxMessage).where(OutboxMessage.id.in_([5, 6, 7, 20, 21, 39])))
    with sqlite_db.kw["bind"].connect() as conn:
        def edge(days: float) -> int:
            return retention._boundary(conn, OutboxMessage.__table__, OutboxMessage.__table__.c.created_at,
                                       T0 + timedelta(days=days))
        kept = [i for i in range(1, 41) if i not in (5, 6, 7, 20, 21, 39)]
        for days in (3, 5.5, 7, 19.5, 30, 38.5, 40, 0.5, 12.25):
            b = edge(days)
            assert all((i < b) == (i < days) for i in kept), (days, b)  # row i is stamped i days after T0
        assert (edge(41), edge(0)) == (41, 0)
        conn.execute(sa.delete(OutboxMessage.__table__))
        assert edge(10) == 0


def test_a_purge_meeting_an_uncommitted_delivery_of_an_old_event_leaves_the_event(pg_db, family, receivers):
    """Given an old event whose deliveries were delivered and purged (the event itself would go next)
    When an operator's repair has written a new delivery of that event but not yet committed, and the
    purge runs meanwhile
    Then the purge finishes without waiting (the event's row is locked by the insert: skipped) and without
    deleting the event; once the repair commits, its delivery has its event."""
    import threading
    bid = accepted(pg_db, family(pg_db))
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    with pg_db.begin() as s:
        s.execute(sa.delete(DeliveryAttempt))
        s.execute(sa.delete(Delivery))
        msg_id = s.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.binding_id == bid)
                           .order_by(OutboxMessage.binding_version.desc())).first()
    inserted, release = threading.Event(), threading.Event()

    def repair():
        with pg_db.begin() as s:
            ready = routing.add(s, s.get(OutboxMessage, msg_id), "national", AFTER)
            inserted.set()
            assert release.wait(60)
        return ready

    result = {}
    worker = threading.Thread(target=repair)
    worker.start()
    try:
        assert inserted.wait(60)
        purging = threading.Thread(target=lambda: result.update(retention.purge(pg_db, now=AFTER, budget_s=600)))
        purging.start()
        purging.join(30)  # a hang guard, not a timing: a purge waiting for the insert would never return
        assert not purging.is_alive(), "the purge waited for the uncommitted delivery's lock"
    finally:
        release.set()
        worker.join(60)
    assert result["outbox"] == 3  # the binding's other three events
    with pg_db() as s:
        assert s.get(OutboxMessage, msg_id) is not None
        assert s.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.outbox_id == msg_id)) == 1


def test_the_purge_runs_on_the_embedded_sqlite_file(sqlite_db, family):
    """Given the embedded default's SQLite database with an old binding whose events were never delivered
    (no platform has a webhook URL there) and were processed
    When the purge runs after the retention
    Then the processed events with no delivery go, and the binding stays."""
    accepted(sqlite_db, family(sqlite_db))
    with sqlite_db.begin() as s:
        s.execute(sa.update(OutboxMessage).values(processed_at=T0))
    assert retention.purge(sqlite_db, now=AFTER, budget_s=600)["outbox"] == 4
    assert counts(sqlite_db)["bindings"] == 1


def test_the_schedulers_minute_tick_runs_the_purge(pg_db, family, receivers):
    """Given a binding's events delivered at T0 (years before the wall clock's now)
    When the scheduler's minute tick runs
    Then its deliveries and events are gone."""
    from workers import scheduler
    accepted(pg_db, family(pg_db))
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    assert counts(pg_db)["deliveries"] == 8
    scheduler.tick(pg_db, n=0)
    assert (counts(pg_db)["deliveries"], counts(pg_db)["outbox"]) == (0, 0)
