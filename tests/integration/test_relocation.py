"""A binding follows its persons when a move leaves it standing (`relocate`, README "The workflow"), on
PostgreSQL: the registry event moves a person to a pooling region the policies allow, and the binding's
regions move with them through the machine (version, history, a `binding.relocated` event), so who sees
it and who is told follows the persons, while its home province (`province_code`, the shard key) stays.

The worker applies registry events at the wall clock, so families are built two hours before it (`base`)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models import OutboxMessage, RegionPolicy
from models.types import utcnow
from workflows.errors import DomainError
from workflows import commands, platforms, policy, reconcile, sync, timers, unit, verification
from workflows.casefile import casefile

from .support import (accepted, assert_history_consistent, binding, drain, fan_out_all, history, invite, person,
                      wait_for_a_lock_wait)
from .test_commands_pg import replay
from .test_person_events import registry, send

pytestmark = pytest.mark.pg

@pytest.fixture
def base() -> datetime:
    return utcnow().replace(microsecond=0) - timedelta(hours=2)


def last_event(db, binding_id: str) -> OutboxMessage:
    with db() as s:
        return s.scalars(sa.select(OutboxMessage).where(OutboxMessage.binding_id == binding_id)
                         .order_by(OutboxMessage.id.desc()).limit(1)).one()


def regions(db, binding_id: str) -> tuple[str, str, str]:
    row = binding(db, binding_id)
    return row.province_code, row.grantor_region, row.beneficiary_region


def xinjiang_shares_across_provinces(db, at: datetime) -> None:
    """A new Xinjiang policy version (a copy of the one in force) that allows sharing across provinces."""
    with db.begin() as s:
        held = s.scalars(sa.select(RegionPolicy).where(RegionPolicy.region_code == "650100")
                         .order_by(RegionPolicy.version.desc())).first()
        copy = {c.name: getattr(held, c.name) for c in RegionPolicy.__table__.columns if c.name != "id"}
        s.add(RegionPolicy(**{**copy, "version": held.version + 1, "effective_from": at, "cross_province": True}))
    policy.clear_cache()


@pytest.mark.parametrize("db_name", ["pg_db", "sqlite_db"])
def test_an_allowed_move_relocates_the_binding(db_name, request, family, base):
    """Given an accepted binding between two persons in 南京 (320100),
    when Jiangsu reports the beneficiary insured in 苏州 (320500; Jiangsu shares across its regions),
    then the binding stays accepted and its beneficiary region is 320500, through one `relocate`
    transition (accepted → accepted, the system as `registry:jiangsu`, the move as the reason) that
    replays through the machine, and one `binding.relocated` event carrying where it was; the home
    province and the policy it was made under stay. On PostgreSQL (one data-modifying statement) and on
    SQLite, the embedded default (the same writes one after the other)."""
    db = request.getfixturevalue(db_name)
    fam = family(db, now=base)
    bid = accepted(db, fam, now=base)
    before = binding(db, bid)

    assert send(db, "jiangsu", "person.updated", registry(fam, "beneficiary", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"

    after = binding(db, bid)
    assert (after.state, after.version, after.policy_id) == ("accepted", before.version + 1, before.policy_id)
    assert regions(db, bid) == ("32", "320100", "320500")
    rows = assert_history_consistent(db, bid)
    last = rows[-1]
    assert (last.event, last.from_state, last.to_state, last.actor_kind, last.actor_id, last.reason) == (
        "relocate", "accepted", "accepted", "system", "registry:jiangsu", "beneficiary_region 320100→320500")
    assert replay(rows) == "accepted"
    event = last_event(db, bid)
    assert (event.topic, event.binding_version) == ("binding.relocated", after.version)
    data = event.payload["data"]
    assert data["relocated_from"] == {"grantor_region": "320100", "beneficiary_region": "320100"}
    assert data["binding"]["beneficiary_region"] == data["binding"]["beneficiary"]["region_code"] == "320500"
    # and the binding is then moved on by its persons as before
    commands.authorize(db, bid, person(fam.grantor), 10_000, now=utcnow())
    assert [t.event for t in history(db, bid)][-2:] == ["relocate", "authorize"]


def test_a_grantor_move_keeps_the_policy_the_binding_was_made_under(pg_db, family, base):
    """Given an accepted binding in 南京 made under 南京's policy,
    when the grantor moves to 苏州, then the binding's grantor region is 苏州, its home province stays 32,
    and it is still governed by the 南京 policy it was made under (found although it is not 苏州's)."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    made_under = binding(pg_db, bid).policy_id

    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"

    row = binding(pg_db, bid)
    assert regions(pg_db, bid) == ("32", "320500", "320100") and row.policy_id == made_under
    with pg_db() as s:
        governing = policy.by_id(s, row.policy_id, row.grantor_region, utcnow())
        assert (governing.id, governing.region_code) == (made_under, "320100")
        assert policy.in_force(s, "320500", utcnow()).id != made_under
    assert history(pg_db, bid)[-1].reason == "grantor_region 320100→320500"


def test_an_open_face_verification_keeps_its_deadline_and_its_callback(pg_db, family, base):
    """Given an invitation whose beneficiary opened a face verification (its timeout is the next deadline),
    when the beneficiary moves to 苏州, then the binding stays invited with the same deadline and timer
    event, and the provider's later callback still passes the verification."""
    fam = family(pg_db, now=base)
    bid = invite(pg_db, fam, now=base)["id"]
    started = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=utcnow())
    waiting = binding(pg_db, bid)
    assert waiting.deadline_event == "verification_timeout"

    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "beneficiary", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"

    moved = binding(pg_db, bid)
    assert (moved.state, moved.deadline_at, moved.deadline_event) == ("invited", waiting.deadline_at,
                                                                     "verification_timeout")
    assert moved.beneficiary_region == "320500"
    assert verification.record_verification_result(
        pg_db, verification_id=started["verification_id"], binding_id=bid, result="passed",
        verifier_id="facecheck", now=utcnow()) == "passed"
    assert [t.event for t in assert_history_consistent(pg_db, bid)] == [
        "invite", "start_verification", "relocate", "verification_passed"]


def test_a_move_that_ends_the_binding_does_not_relocate_it(pg_db, family, base):
    """Given an accepted binding in 南京, when the beneficiary moves to 乌鲁木齐 (Xinjiang does not share
    across provinces), then it is unbound for region_not_allowed and its regions are the ones it ended with."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)

    send(pg_db, "national", "person.updated", registry(fam, "beneficiary", region_code="650100"),
         sent=base + timedelta(hours=1))

    assert [t.event for t in history(pg_db, bid)][-1:] == ["unbind"]
    assert regions(pg_db, bid) == ("32", "320100", "320100")


def test_an_expired_invitation_is_left_to_its_timer(pg_db, family, base):
    """Given an invitation past its TTL that no sweep has expired yet, when the beneficiary moves within
    Jiangsu, then nothing is relocated (a late command is refused there) and the sweep expires it."""
    long_ago = base - timedelta(days=8)
    fam = family(pg_db, now=long_ago)
    bid = invite(pg_db, fam, now=long_ago)["id"]

    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "beneficiary", region_code="320500"),
                sent=base) == "applied"

    assert regions(pg_db, bid) == ("32", "320100", "320100")
    assert timers.sweep(pg_db, now=utcnow()) == 1
    assert [t.event for t in history(pg_db, bid)] == ["invite", "expire"]


def test_a_move_across_provinces_moves_who_sees_the_binding_and_who_is_told(pg_db, family, base, receivers):
    """Given an accepted binding in 南京 whose events Jiangsu and the national platform received, and a
    Xinjiang policy version that shares across provinces,
    when the national platform reports the beneficiary in 乌鲁木齐, then the grantor too,
    then after the first move Xinjiang may see the binding (the API's rule, `unit.visible_to`; its pull
    feed) and receives its `binding.relocated`; after the second, Jiangsu, which no longer serves either
    person, receives that `binding.relocated` (so its copy says where the binding went), then neither may
    see the binding nor is told of it, and the binding's page shows Jiangsu as no longer concerned (owed
    nothing); the home province stays 32 throughout."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    xinjiang_shares_across_provinces(pg_db, base)
    js, xj = platforms.get(pg_db, "jiangsu"), platforms.get(pg_db, "xinjiang")
    assert not unit.visible_to(xj, binding(pg_db, bid))

    assert send(pg_db, "national", "person.updated", registry(fam, "beneficiary", region_code="650100"),
                sent=base + timedelta(hours=1)) == "applied"
    assert regions(pg_db, bid) == ("32", "320100", "650100")
    assert unit.visible_to(xj, binding(pg_db, bid)) and unit.visible_to(js, binding(pg_db, bid))
    assert bid in feed_ids(pg_db, xj)

    assert send(pg_db, "national", "person.updated", registry(fam, "grantor", region_code="650100"),
                sent=base + timedelta(hours=1, minutes=1)) == "applied"
    assert regions(pg_db, bid) == ("32", "650100", "650100")
    deliver_all(pg_db)

    assert receivers["national"].versions(bid) == [1, 2, 3, 4, 5, 6]
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4, 5, 6]
    assert receivers["xinjiang"].versions(bid) == [5, 6]
    assert not unit.visible_to(js, binding(pg_db, bid)) and bid not in feed_ids(pg_db, js)
    commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow())
    deliver_all(pg_db)
    assert receivers["xinjiang"].versions(bid) == [5, 6, 7] and receivers["jiangsu"].versions(bid)[-1] == 6
    assert regions(pg_db, bid)[0] == "32"
    sync_rows = {p["platform_id"]: p for p in casefile(pg_db, bid)["sync"]}
    assert [sync_rows["jiangsu"][k] for k in ("concerned", "acked_version", "owed_version", "behind")] \
        == [False, 6, 6, 0]
    assert (sync_rows["xinjiang"]["concerned"], sync_rows["xinjiang"]["behind"]) == (True, 0)


@pytest.mark.parametrize("repair", ["reconcile", "operator"])
def test_a_province_the_binding_left_unheard_is_sent_the_move_and_nothing_after_it(pg_db, family, base, receivers,
                                                                                  repair):
    """Given an accepted binding in 南京 that Jiangsu received up to version 4, and Xinjiang's policy sharing
    across provinces, when both persons move to 乌鲁木齐 while Jiangsu has no webhook URL (versions 5 and 6;
    6 leaves Jiangsu) and its URL comes back, then the binding's page shows Jiangsu no longer concerned and
    2 behind the move; when the periodic reconciliation runs once the move settled (or an operator's
    repair of the binding), then Jiangsu receives version 6 only, the `binding.relocated` that says where
    the binding went; and a second pass, and the binding's later changes, send it nothing."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    xinjiang_shares_across_provinces(pg_db, base)
    deliver_all(pg_db)
    platforms.set_webhook_url(pg_db, "jiangsu", None)
    for side, minutes in (("beneficiary", 0), ("grantor", 1)):
        assert send(pg_db, "national", "person.updated", registry(fam, side, region_code="650100"),
                    sent=base + timedelta(hours=1, minutes=minutes)) == "applied"
    deliver_all(pg_db)
    platforms.set_webhook_url(pg_db, "jiangsu", receivers["jiangsu"].url)
    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4] and receivers["xinjiang"].versions(bid) == [5, 6]
    jiangsu = {p["platform_id"]: p for p in casefile(pg_db, bid)["sync"]}["jiangsu"]
    assert [jiangsu[k] for k in ("concerned", "acked_version", "owed_version", "behind")] == [False, 4, 6, 2]

    later = utcnow() + timedelta(hours=1)
    if repair == "reconcile":
        assert reconcile.reconcile(pg_db, now=utcnow()) == []  # the move has not settled yet
        ready = reconcile.reconcile(pg_db, now=later)
    else:
        with pg_db.begin() as s:
            ready = reconcile.resend_latest(s, bid, later)
    drain(pg_db, later, ready)

    assert receivers["jiangsu"].versions(bid) == [1, 2, 3, 4, 6]
    assert receivers["jiangsu"].events[-1].type == "binding.relocated"
    assert reconcile.reconcile(pg_db, now=later) == []
    with pg_db.begin() as s:
        assert reconcile.resend_latest(s, bid, later) == []
    commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow())
    deliver_all(pg_db)
    assert reconcile.reconcile(pg_db, now=utcnow() + timedelta(hours=1)) == []
    assert receivers["jiangsu"].versions(bid)[-1] == 6 and receivers["xinjiang"].versions(bid) == [5, 6, 7]
    jiangsu = {p["platform_id"]: p for p in casefile(pg_db, bid)["sync"]}["jiangsu"]
    assert [jiangsu[k] for k in ("acked_version", "owed_version", "behind")] == [6, 6, 0]


def test_each_side_of_a_binding_across_provinces_acts_through_its_own_platform(pg_db, family, base):
    """Given an accepted binding whose beneficiary moved to 乌鲁木齐 (Xinjiang shares across provinces), so
    that Jiangsu and Xinjiang both see it, when Xinjiang authorizes as the Jiangsu grantor, or sends his
    unbind request, then each is refused 403 `region_not_served` and nothing is written (a platform acts
    for the persons it has real-name verified, API.md); when Jiangsu authorizes for him, then it is done;
    and when Xinjiang unbinds for its own beneficiary, then that is done too."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    xinjiang_shares_across_provinces(pg_db, base)
    assert send(pg_db, "national", "person.updated", registry(fam, "beneficiary", region_code="650100"),
                sent=base + timedelta(hours=1)) == "applied"
    js, xj = platforms.get(pg_db, "jiangsu"), platforms.get(pg_db, "xinjiang")
    before = binding(pg_db, bid).version

    with pytest.raises(DomainError) as refused:
        commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow(), platform=xj)
    assert refused.value.code == "region_not_served"
    assert send(pg_db, "xinjiang", "binding.unbind_requested",
                {"binding_id": bid, "actor": person(fam.grantor), "reason": "x"}, sent=utcnow()) == "region_not_served"
    assert binding(pg_db, bid).version == before

    assert commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow(), platform=js)["state"] \
        == "authorized"
    assert commands.unbind(pg_db, bid, person(fam.beneficiary), now=utcnow(), platform=xj)["state"] == "unbound"


def deliver_all(db) -> None:
    now = utcnow()
    drain(db, now, fan_out_all(db, now))


def feed_ids(db, platform) -> list[str]:
    page = sync.feed(db, platform, limit=1000)
    return [b["id"] for b in page["bindings"]]


@pytest.mark.parametrize("command", ["authorize", "unbind"])
@pytest.mark.parametrize("first", ["move", "command"])
def test_a_move_and_a_command_meeting_on_the_binding_both_apply_in_one_order(pg_db, family, base, command, first):
    """Given an accepted binding whose row another transaction holds locked, and, queued behind that lock
    in the order `first` says, the beneficiary's move within Jiangsu (waiting to lock the binding) and
    the grantor's `command` (read the binding, waiting to write it),
    when the lock is released,
    then both end well and the history replays through the machine with one row per version:
    - the move first: it relocates; the command's write finds the version moved, writes nothing, and runs
      again on the relocated binding (`unit.retried`) — an authorization or an unbind after `relocate`;
    - the command first: it writes; the move then relocates the authorized binding, or finds the unbound
      one no longer standing and leaves it in its old region."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    act = {"authorize": lambda: commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow()),
           "unbind": lambda: commands.unbind(pg_db, bid, person(fam.grantor), now=utcnow())}[command]

    def move():
        return send(pg_db, "jiangsu", "person.updated", registry(fam, "beneficiary", region_code="320500"),
                    sent=base + timedelta(hours=1))

    holder = pg_db.kw["bind"].connect()
    holder.begin()
    holder.execute(sa.text("SELECT id FROM bindings WHERE id = :b FOR UPDATE"), {"b": bid})
    threads = [move, act] if first == "move" else [act, move]
    results = [None, None]

    def run(i, fn):
        try:
            results[i] = ("ok", fn())
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = ("error", exc)

    started = []
    for i, fn in enumerate(threads):
        t = threading.Thread(target=run, args=(i, fn), daemon=True)
        t.start()
        started.append(t)
        wait_for_a_lock_wait(pg_db, at_least=i + 1, on="bindings")
    holder.rollback()
    holder.close()
    for t in started:
        t.join(60)
    assert not any(t.is_alive() for t in started), "a command did not finish (deadlock?)"
    assert [r[0] for r in results] == ["ok", "ok"], results

    rows = assert_history_consistent(pg_db, bid)
    events = [t.event for t in rows][4:]
    final = binding(pg_db, bid)
    assert replay(rows) == final.state == ("authorized" if command == "authorize" else "unbound")
    if first == "move":
        assert events == ["relocate", command] and final.beneficiary_region == "320500"
    elif command == "authorize":
        assert events == ["authorize", "relocate"] and final.beneficiary_region == "320500"
    else:
        assert events == ["unbind"] and final.beneficiary_region == "320100"


def test_a_relocated_grantors_verification_steps_stay_two_statements(pg_db, pg_engine, family, base):
    """Given an invitation whose grantor moved to 苏州 (its policy is 南京's, the region it left), and one
    verification step already taken since (which learned where that policy lives),
    when the beneficiary starts another verification,
    then that step is two statements (its read, its write), like any other binding's."""
    fam = family(pg_db, now=base)
    bid = invite(pg_db, fam, now=base)["id"]
    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"
    first = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=utcnow())
    verification.record_verification_result(pg_db, verification_id=first["verification_id"], binding_id=bid,
                                            result="failed", verifier_id="facecheck", now=utcnow())
    seen = []

    def hear(conn, cursor, statement, params, context, executemany):
        seen.append(statement.split(None, 1)[0].upper())
    sa.event.listen(pg_engine, "before_cursor_execute", hear)
    try:
        verification.start_verification(pg_db, bid, person(fam.beneficiary), now=utcnow())
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", hear)

    assert seen == ["SELECT", "WITH"]
