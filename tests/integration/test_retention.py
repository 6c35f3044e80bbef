"""Retention on real PostgreSQL (and the embedded SQLite file): what `workflows.retention.purge` forgets
after the retention, and what it keeps for ever (the binding's record, and every message not done yet)."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import Binding, Delivery, DeliveryAttempt, OutboxMessage, ReceivedWebhook, Transition
from models.types import utcnow
from workflows import casefile, commands, deliveries, platforms, retention, sync, webhooks

from .support import T0, accepted, drain, fan_out_all, person, race

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

    gone = retention.purge(pg_db, now=AFTER)

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
    assert retention.purge(pg_db, now=T0 + timedelta(days=1)) == {"deliveries": 0, "outbox": 0, "received_webhooks": 0}
    assert retention.purge(pg_db, now=AFTER)["deliveries"] == 0  # pending: not done, however old
    assert counts(pg_db)["delivery_attempts"] == before["delivery_attempts"]


def test_processed_webhooks_go_after_the_retention_and_a_webhook_id_from_before_is_stored_anew(pg_db):
    """Given two verification webhooks received from the face provider, one processed, one still pending
    When the purge runs after the retention
    Then the processed one (its encrypted body, its headers) and its processed outbox row are gone, the
    pending one stays; and the processed one's webhook-id sent again is stored as a new webhook."""
    face = platforms.get(pg_db, "facecheck")
    ids = {}
    for w in ("w-done", "w-pending"):
        ids[w], dup = webhooks.receive(pg_db, platform=face, webhook_id=w, body=b'{"type": "verification.completed",'
                                       b' "data": {}}', headers={"webhook-id": w}, event_type="verification.completed")
        assert not dup
    processed = webhooks.process(pg_db, ids["w-done"])
    assert processed == "not_found" or processed  # the verification does not exist: a final refusal
    with pg_db.begin() as s:
        s.execute(sa.update(OutboxMessage).where(OutboxMessage.topic == webhooks.TOPIC,
                                                 OutboxMessage.payload["data"]["received_webhook_id"].as_integer()
                                                 == ids["w-done"]).values(processed_at=utcnow()))

    gone = retention.purge(pg_db, now=utcnow() + timedelta(seconds=retention.RETENTION_S + 60))

    assert gone["received_webhooks"] == 1 and gone["outbox"] == 1
    with pg_db() as s:
        assert s.scalars(sa.select(ReceivedWebhook.webhook_id)).all() == ["w-pending"]
    again, dup = webhooks.receive(pg_db, platform=face, webhook_id="w-done", body=b'{"type": "x", "data": {}}',
                                  headers={"webhook-id": "w-done"}, event_type="verification.completed")
    assert not dup and again != ids["w-done"]


def test_a_purge_stops_at_its_limit_and_the_next_one_goes_on(pg_db, family, receivers):
    """Given 10 delivered deliveries older than the retention
    When the purge runs with batches of 3 and a limit of 4 rows a table, then again without a limit
    Then the first takes 4, the second the other 6."""
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    commands.unbind(pg_db, bid, person(fam.grantor), now=T0 + timedelta(seconds=4))
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    assert retention.purge(pg_db, now=AFTER, batch=3, most=4)["deliveries"] == 4
    assert retention.purge(pg_db, now=AFTER, batch=3)["deliveries"] == 6


def test_a_purge_racing_a_new_delivery_of_an_old_event_never_loses_either(pg_db, family, receivers):
    """Given an old event whose deliveries were delivered and purged (the event itself would go next)
    When an operator's repair adds a delivery of that event to a platform while the purge runs
    Then either the delivery was written and the event stays with it, or the event went first and the
    repair is refused (the database's foreign key decides); never a delivery without its event, and the
    purge itself does not fail."""
    bid = accepted(pg_db, family(pg_db))
    drain(pg_db, T0 + timedelta(seconds=5), fan_out_all(pg_db, T0))
    with pg_db.begin() as s:
        s.execute(sa.delete(DeliveryAttempt))
        s.execute(sa.delete(Delivery))
        msg = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.binding_id == bid)
                        .order_by(OutboxMessage.binding_version.desc())).first()
        msg_id = msg.id

    def repair():
        with pg_db.begin() as s:
            event = s.get(OutboxMessage, msg_id)
            if event is None:
                return "event gone"
            return deliveries.add(s, event, "national", AFTER)

    outcomes = race(repair, lambda: retention.purge(pg_db, now=AFTER))
    assert outcomes[1].ok, outcomes[1].error
    with pg_db() as s:
        delivered_event = s.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.outbox_id == msg_id))
        event_left = s.get(OutboxMessage, msg_id) is not None
    if delivered_event:
        assert event_left and outcomes[0].ok
    else:
        assert not event_left and (not outcomes[0].ok or outcomes[0].value == "event gone")


def test_the_purge_runs_on_the_embedded_sqlite_file(sqlite_db, family):
    """Given the embedded default's SQLite database with an old binding whose events were never delivered
    (no platform has a webhook URL there) and were processed
    When the purge runs after the retention
    Then the processed events with no delivery go, and the binding stays."""
    accepted(sqlite_db, family(sqlite_db))
    with sqlite_db.begin() as s:
        s.execute(sa.update(OutboxMessage).values(processed_at=T0))
    assert retention.purge(sqlite_db, now=AFTER)["outbox"] == 4
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
