"""Deliveries per platform on the dashboard, on PostgreSQL: counts per platform and status, one platform's
dead deliveries, and their replay, which is the command line's (`gongji deliveries replay --platform`)
and leaves every other platform's dead deliveries as they are."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import AuditEntry, Delivery, OutboxMessage
from models.types import utcnow
from workflows import delivery_repair, delivery_views, operators, platform_repair, routing
from workflows.errors import DomainError

from .support import accepted

pytestmark = pytest.mark.pg


@pytest.fixture
def staff(pg_db):
    return {role: operators.add(pg_db, f"{role}1", "correct horse battery", role) for role in ("viewer", "operator")}


@pytest.fixture
def dead_to_two(pg_db, family):
    """An accepted 南京 binding whose versions 1 and 2 are dead to Jiangsu and version 1 dead to the national
    platform (both were down), version 3 failing to Jiangsu: {(platform, version): delivery id}."""
    at = utcnow() - timedelta(days=3)
    bid = accepted(pg_db, family(pg_db, now=at), now=at)
    made = {}
    with pg_db.begin() as s:
        events = dict(s.execute(sa.select(OutboxMessage.binding_version, OutboxMessage.id)
                                .where(OutboxMessage.binding_id == bid)).all())
        for platform, version, status in (("jiangsu", 1, "dead"), ("jiangsu", 2, "dead"), ("national", 1, "dead"),
                                          ("jiangsu", 3, "failing"), ("national", 2, "pending")):
            d = Delivery(outbox_id=events[version], platform_id=platform, event_id=f"evt_{platform}_{version}",
                         topic="binding.accepted", binding_id=bid, binding_version=version, status=status,
                         attempts=16 if status == "dead" else 3, created_at=at + timedelta(minutes=version),
                         last_status_code=503, last_error="HTTP 503: 320102198001011238 下线维护",
                         dead_at=at + timedelta(days=3) if status == "dead" else None,
                         next_attempt_at=None if status == "dead" else utcnow() + timedelta(hours=1))
            s.add(d)
            s.flush()
            made[(platform, version)] = d.id
    return bid, made


def _deliveries(db) -> dict[int, tuple]:
    with db() as s:
        return {d.id: (d.status, d.attempts, d.dead_at, d.next_attempt_at) for d in s.scalars(sa.select(Delivery))}


def _audit(db) -> list[AuditEntry]:
    with db() as s:
        return list(s.scalars(sa.select(AuditEntry).where(AuditEntry.action.in_(("deliveries_replay",
                                                                                  "delivery_replay")))
                              .order_by(AuditEntry.id)))


def test_counts_per_platform_and_status_and_one_platforms_dead(pg_db, dead_to_two):
    """Given dead, failing and pending deliveries to Jiangsu and the national platform,
    When the counts and Jiangsu's dead deliveries are read (one to a page),
    Then each platform counts its own per status (Xinjiang none, the face provider not listed), and Jiangsu's
    dead ones come newest event first over two pages, with their binding, event, version, tries and the
    receiver's answer masked."""
    bid, made = dead_to_two
    counts = delivery_views.counts(pg_db)
    assert set(counts) == {"jiangsu", "national", "xinjiang"}
    assert {p: {st: counts[p][st]["n"] for st in delivery_views.STATUSES} for p in counts} == {
        "jiangsu": {"pending": 0, "failing": 1, "dead": 2}, "national": {"pending": 1, "failing": 0, "dead": 1},
        "xinjiang": {"pending": 0, "failing": 0, "dead": 0}}
    assert counts["jiangsu"]["dead_since"] is not None and counts["xinjiang"]["dead_since"] is None

    first = delivery_views.dead(pg_db, "jiangsu", limit=1)
    second = delivery_views.dead(pg_db, "jiangsu", limit=1, after=first["next"])
    assert [d["id"] for d in first["items"] + second["items"]] == [made[("jiangsu", 2)], made[("jiangsu", 1)]]
    assert second["next"] is None
    item = first["items"][0]
    assert (item["binding_id"], item["topic"], item["binding_version"], item["attempts"]) == \
        (bid, "binding.accepted", 2, 16)
    assert "320102198001011238" not in item["last_error"] and "320***" in item["last_error"]
    with pytest.raises(DomainError):
        delivery_views.dead(pg_db, "no_such_platform")


def test_replaying_one_platforms_dead_leaves_anothers_alone_through_the_command_lines_function(
        pg_db, dead_to_two, staff, monkeypatch):
    """Given dead deliveries to Jiangsu and to the national platform (still down),
    When an operator replays Jiangsu's dead deliveries with a reason,
    Then `delivery_repair.replay` (the selection `gongji deliveries replay --platform jiangsu` shares) does it for
    Jiangsu only: its versions 1 and 2 are pending with a fresh schedule (2 waits for 1), version 1 is sent
    at once through the worker's retry event, the national platform's dead delivery is exactly as it was,
    and the audit row names the platform and the counts."""
    _bid, made = dead_to_two
    before = _deliveries(pg_db)
    calls = []
    real = delivery_repair.replay
    monkeypatch.setattr(delivery_repair, "replay", lambda db, **kw: calls.append(kw) or real(db, **kw))

    done = platform_repair.replay_dead(pg_db, staff["operator"], "jiangsu", "江苏平台已恢复")

    assert [{k: v for k, v in c.items() if k != "now"} for c in calls] == [{"ids": None, "platform_id": "jiangsu"}]
    after = _deliveries(pg_db)
    assert after[made[("jiangsu", 1)]][:3] == ("pending", 0, None) and after[made[("jiangsu", 1)]][3] is not None
    assert after[made[("jiangsu", 2)]] == ("pending", 0, None, None)  # blocked behind version 1
    assert after[made[("national", 1)]] == before[made[("national", 1)]]
    assert {k: v for k, v in after.items() if k not in (made[("jiangsu", 1)], made[("jiangsu", 2)])} == \
        {k: v for k, v in before.items() if k not in (made[("jiangsu", 1)], made[("jiangsu", 2)])}
    assert done == {"platform_id": "jiangsu", "dead": 2, "sent_now": 1}
    with pg_db() as s:
        [event] = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.topic == routing.RETRY_TOPIC)).all()
    assert event.payload["data"] == {"deliveries": [made[("jiangsu", 1)]]}
    [entry] = _audit(pg_db)
    assert (entry.operator, entry.outcome, entry.reason) == ("operator1", "ok", "江苏平台已恢复")
    assert entry.detail == done


def test_one_dead_delivery_is_replayed_alone_and_only_under_its_platform(pg_db, dead_to_two, staff):
    """Given dead deliveries to Jiangsu and the national platform,
    When an operator replays Jiangsu's version 1 alone, then names the national platform's dead delivery under
    Jiangsu, and a viewer tries a replay,
    Then only that delivery is pending again, audited as one delivery's replay; the second is refused
    nothing_to_replay and the third forbidden, both audited with the platform (and the delivery) they were
    about, and nothing else changed."""
    bid, made = dead_to_two
    platform_repair.replay_dead(pg_db, staff["operator"], "jiangsu", "先补发第一版",
                                delivery_id=made[("jiangsu", 1)])
    after_one = _deliveries(pg_db)
    assert after_one[made[("jiangsu", 1)]][0] == "pending"
    assert after_one[made[("jiangsu", 2)]][0] == after_one[made[("national", 1)]][0] == "dead"

    codes = []
    for who, kw in ((staff["operator"], {"delivery_id": made[("national", 1)]}), (staff["viewer"], {})):
        with pytest.raises(DomainError) as caught:
            platform_repair.replay_dead(pg_db, who, "jiangsu", "试试", **kw)
        codes.append(caught.value.code)
    assert codes == ["nothing_to_replay", "forbidden"]
    assert _deliveries(pg_db) == after_one
    audit = _audit(pg_db)
    assert [(a.action, a.outcome, a.binding_id) for a in audit] == [
        ("delivery_replay", "ok", bid), ("delivery_replay", "nothing_to_replay", None),
        ("deliveries_replay", "forbidden", None)]
    assert audit[1].detail["delivery_id"] == made[("national", 1)] and audit[1].detail["platform_id"] == "jiangsu"
    assert audit[2].detail["platform_id"] == "jiangsu"


def test_the_consoles_replay_replays_the_same_rows_and_is_audited_under_the_console_user(pg_db, dead_to_two):
    """Given dead deliveries to Jiangsu (versions 1 and 2) and to the national platform
    When `gongji deliveries replay --platform jiangsu` runs (`replay_from_console`, as `console:ops`)
    Then Jiangsu's two are pending (version 2 behind version 1, which may leave now), the national one is
    untouched, and one audit row names the console user, the platform and the counts."""
    _bid, made = dead_to_two
    before = _deliveries(pg_db)

    done = delivery_repair.replay_from_console(pg_db, "console:ops", platform_id="jiangsu")

    assert done == {"replayed": 2, "ready": [made[("jiangsu", 1)]]}
    after = _deliveries(pg_db)
    assert after[made[("jiangsu", 2)]] == ("pending", 0, None, None)
    assert after[made[("national", 1)]] == before[made[("national", 1)]]
    [entry] = _audit(pg_db)
    assert (entry.operator, entry.action, entry.outcome, entry.detail) == (
        "console:ops", "deliveries_replay", "ok", {"platform_id": "jiangsu", "ids": [], "dead": 2, "sent_now": 1,
                                                   "replayed": [made[("jiangsu", 1)], made[("jiangsu", 2)]]})


def test_the_consoles_replay_of_one_delivery_by_id_is_audited_as_that_deliverys_replay(pg_db, dead_to_two):
    """Given the same dead deliveries, When `gongji deliveries replay --ids <national's>` runs
    Then only that one is replayed, and the audit row reads as the dashboard's replay of one delivery
    (`delivery_replay`, naming it and its platform), not as a platform's replay."""
    _bid, made = dead_to_two
    done = delivery_repair.replay_from_console(pg_db, "console:ops", ids=[made[("national", 1)]])
    assert done == {"replayed": 1, "ready": [made[("national", 1)]]}
    [entry] = _audit(pg_db)
    assert (entry.action, entry.outcome, entry.binding_id, entry.detail) == (
        "delivery_replay", "ok", _bid, {"delivery_id": made[("national", 1)], "platform_id": "national", "sent_now": 1})


def test_a_console_replay_refused_for_an_id_number_typed_as_a_binding_audits_it_masked(pg_db):
    """Given no binding, When `gongji deliveries replay --binding <an ID number>` runs (a mistake)
    Then it is refused not_found, and the audit row names what was asked for with the number masked, in its
    fields and in the refusal's text."""
    number = "32010219520505114X"
    with pytest.raises(DomainError):
        delivery_repair.replay_from_console(pg_db, "console:ops", binding_id=number)
    [entry] = _audit(pg_db)
    assert entry.outcome == "not_found" and number not in str(entry.detail)
    assert entry.detail["binding_id"] == "320***********114X" and entry.detail["detail"] == "no binding 320***********114X"
