"""A binding follows its persons when a move leaves it standing (`relocate`, README "The workflow"), on
PostgreSQL: the registry event moves a person to a pooling region the policies allow, and the binding's
regions move with them through the machine (version, history, a `binding.relocated` event), so who sees
it and who is told follows the persons, while its home province (`province_code`, the shard key) stays.

The worker applies registry events at the wall clock, so families are built two hours before it (`base`)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models import OutboxMessage, RegionPolicy
from models.types import utcnow
from workflows import commands, platforms, policy, sync, timers, unit, verification

from .support import (accepted, assert_history_consistent, binding, drain, fan_out_all, history, invite, person,
                      race)
from .test_commands_pg import replay
from .test_person_events import registry, send

pytestmark = pytest.mark.pg

BOTH = ("grantor_region", "beneficiary_region")


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


def test_an_allowed_move_relocates_the_binding(pg_db, family, base):
    """Given an accepted binding between two persons in 南京 (320100),
    when Jiangsu reports the beneficiary insured in 苏州 (320500; Jiangsu shares across its regions),
    then the binding stays accepted and its beneficiary region is 320500, through one `relocate`
    transition (accepted → accepted, the system as `registry:jiangsu`, the move as the reason) that
    replays through the machine, and one `binding.relocated` event carrying where it was; the home
    province and the policy it was made under stay."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    before = binding(pg_db, bid)

    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "beneficiary", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"

    after = binding(pg_db, bid)
    assert (after.state, after.version, after.policy_id) == ("accepted", before.version + 1, before.policy_id)
    assert regions(pg_db, bid) == ("32", "320100", "320500")
    rows = assert_history_consistent(pg_db, bid)
    last = rows[-1]
    assert (last.event, last.from_state, last.to_state, last.actor_kind, last.actor_id, last.reason) == (
        "relocate", "accepted", "accepted", "system", "registry:jiangsu", "beneficiary_region 320100→320500")
    assert replay(rows) == "accepted"
    event = last_event(pg_db, bid)
    assert (event.topic, event.binding_version) == ("binding.relocated", after.version)
    data = event.payload["data"]
    assert data["relocated_from"] == {"grantor_region": "320100", "beneficiary_region": "320100"}
    assert data["binding"]["beneficiary_region"] == data["binding"]["beneficiary"]["region_code"] == "320500"
    # and the binding is then moved on by its persons as before
    commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow())
    assert [t.event for t in history(pg_db, bid)][-2:] == ["relocate", "authorize"]


def test_a_grantor_move_puts_the_binding_under_the_new_regions_policy(pg_db, family, base):
    """Given an accepted binding in 南京 made under 南京's policy,
    when the grantor moves to 苏州, then the binding's grantor region is 苏州 and it is governed by the
    policy in force in 苏州 (a grantor's account is administered where they are insured); the home
    province stays 32."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)

    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", region_code="320500"),
                sent=base + timedelta(hours=1)) == "applied"

    with pg_db() as s:
        suzhou = policy.in_force(s, "320500", utcnow())
    assert regions(pg_db, bid) == ("32", "320500", "320100")
    assert binding(pg_db, bid).policy_id == suzhou.id
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
    then after the first move Xinjiang sees the binding (API, feed) and receives its `binding.relocated`;
    after the second, Jiangsu, which no longer serves either person, receives that `binding.relocated`
    (so its copy says where the binding went) and then neither sees the binding nor is told of it; the
    home province stays 32 throughout."""
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


def deliver_all(db) -> None:
    now = utcnow()
    drain(db, now, fan_out_all(db, now))


def feed_ids(db, platform) -> list[str]:
    page = sync.feed(db, platform, now=utcnow() + timedelta(seconds=sync.HORIZON_S), limit=1000)
    return [b["id"] for b in page["bindings"]]


@pytest.mark.parametrize("command", ["authorize", "unbind"])
def test_a_move_and_a_command_racing_both_apply_in_one_order(pg_db, family, base, command):
    """Given an accepted binding, when the beneficiary's move within Jiangsu and the grantor's `command`
    run at once (the move locks the binding; the command checks its version and runs again if it lost),
    then both apply, the binding holds the new region, and the history has one row per version that
    replays through the machine; whichever came second saw the first."""
    for _ in range(5):
        fam = family(pg_db, now=base)
        bid = accepted(pg_db, fam, now=base)
        act = {"authorize": lambda: commands.authorize(pg_db, bid, person(fam.grantor), 10_000, now=utcnow()),
               "unbind": lambda: commands.unbind(pg_db, bid, person(fam.grantor), now=utcnow())}[command]
        move = lambda: send(pg_db, "jiangsu", "person.updated",  # noqa: E731
                            registry(fam, "beneficiary", region_code="320500"), sent=base + timedelta(hours=1))
        moved, acted = race(move, act)
        assert moved.ok and acted.ok, (moved.error, acted.error)
        rows = assert_history_consistent(pg_db, bid)
        events = [t.event for t in rows]
        final = "authorized" if command == "authorize" else "unbound"
        assert replay(rows) == binding(pg_db, bid).state == final
        region = binding(pg_db, bid).beneficiary_region
        if "relocate" in events:  # either order for an authorization; an unbound binding is never relocated
            orders = (["relocate", command], [command, "relocate"]) if command == "authorize" else (
                ["relocate", command],)
            assert events[-2:] in orders and region == "320500"
        else:  # the unbind came first: the move found no standing binding
            assert command == "unbind" and events[-1] == "unbind" and region == "320100"
