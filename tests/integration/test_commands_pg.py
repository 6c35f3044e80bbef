"""The commands on PostgreSQL: the main line with a history replay, the guardian path, and refusals that
write nothing at all (every table compared, row counts and content, before and after)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from unittest.mock import ANY

import pytest
import sqlalchemy as sa

from models import OutboxMessage
from workflows import commands, machine, persons, verification
from workflows.actors import Actor
from workflows.errors import DomainError
from workflows.idnumbers import with_check_digit

from .support import (T0, accepted, assert_history_consistent, binding, face_verified, invite, person,
                      table_snapshot)

pytestmark = pytest.mark.pg


class _Replay:
    """A bare object the shared machine can drive, to replay a history."""

    def __init__(self):
        self.state = machine.NEW


def replay(rows) -> str:
    """Fire the recorded events in seq order through the shared machine; each must be legal from the
    recorded from_state and land on the recorded to_state. Returns the final state."""
    obj = _Replay()
    for t in rows:
        assert (t.from_state or machine.NEW) == obj.state, f"seq {t.seq} starts from the wrong state"
        facts = {"guardian": t.event == "invite" and t.to_state == "accepted",
                 "attempts_exhausted": t.event == "verification_failed" and t.to_state == "verification_failed"}
        machine.fire(obj, t.event, **facts)
        assert obj.state == t.to_state, f"seq {t.seq}: {t.event} leads to {obj.state}, history says {t.to_state}"
    return obj.state


def test_main_line_invite_to_unbound_with_history_replay(pg_db, family):
    """Given an eligible grantor and an adult beneficiary in Nanjing,
    when the grantor invites, the beneficiary verifies (passed) and accepts, the grantor authorizes 50 yuan,
    then the whole balance, and finally unbinds,
    then every step answers the expected state, and the history (seq 1..7) replays through the machine from
    invited to unbound, with the right actor per row and one outbox event per version in order."""
    fam = family(pg_db, now=T0)
    g, b = person(fam.grantor), person(fam.beneficiary)
    step = iter(T0 + timedelta(minutes=i) for i in range(100))

    made = invite(pg_db, fam, now=next(step))
    bid = made["id"]
    assert (made["state"], made["version"], made["verification_method"]) == ("invited", 1, "face")
    started = verification.start_verification(pg_db, bid, b, now=next(step))
    assert started["state"] == "invited" and started["attempt"]["attempt_no"] == 1
    assert verification.record_verification_result(pg_db, verification_id=started["verification_id"], binding_id=bid,
                                                   result="passed", verifier_id="facecheck", now=next(step)) == "passed"
    assert commands.accept(pg_db, bid, b, now=next(step))["state"] == "accepted"
    auth = commands.authorize(pg_db, bid, g, 5_000, now=next(step))
    assert (auth["state"], auth["authorized_amount_fen"], auth["authorization"]) == ("authorized", 5_000, "amount")
    auth = commands.authorize(pg_db, bid, g, None, now=next(step))
    assert (auth["authorized_amount_fen"], auth["authorization"]) == (None, "whole_balance")
    end = next(step)
    done = commands.unbind(pg_db, bid, g, now=end)
    assert (done["state"], done["version"], done["end_event"]) == ("unbound", 7, "unbind")

    row = binding(pg_db, bid)
    assert (row.ended_at, row.deadline_at, row.deadline_event) == (end, None, None)
    rows = assert_history_consistent(pg_db, bid)
    assert replay(rows) == "unbound"
    assert [(t.from_state, t.to_state) for t in rows] == [
        (None, "invited"), ("invited", "invited"), ("invited", "face_verified"), ("face_verified", "accepted"),
        ("accepted", "authorized"), ("authorized", "authorized"), ("authorized", "unbound")]
    assert [(t.actor_kind, t.actor_id) for t in rows] == [
        ("person", row.grantor_id), ("person", row.beneficiary_id), ("verifier", "facecheck"),
        ("person", row.beneficiary_id), ("person", row.grantor_id), ("person", row.grantor_id),
        ("person", row.grantor_id)]
    assert [t.at for t in rows] == sorted(t.at for t in rows)
    with pg_db() as s:
        topics = s.execute(sa.select(OutboxMessage.binding_version, OutboxMessage.topic)
                           .where(OutboxMessage.binding_id == bid).order_by(OutboxMessage.id)).all()
    assert topics == [(1, "binding.invited"), (2, "binding.verification_requested"), (3, "binding.face_verified"),
                      (4, "binding.accepted"), (5, "binding.authorized"), (6, "binding.authorized"),
                      (7, "binding.unbound")]

    # terminal means terminal: nothing more happens to it, and the same pair may start a new binding
    with pytest.raises(DomainError) as refused:
        commands.authorize(pg_db, bid, g, 1, now=next(step))
    assert refused.value.code == "illegal_transition"
    again = invite(pg_db, fam, now=next(step))
    assert again["id"] != bid and again["state"] == "invited"
    assert binding(pg_db, bid).version == 7


def _number(born: str, seq: str, region: str = "320102") -> str:
    return with_check_digit(f"{region}{born}{seq}")


def _child(db, family, born: str, seq: str):
    """A family whose beneficiary has exactly the birth date `born` (YYYYMMDD)."""
    fam = family(db, now=T0)
    number = _number(born, seq)
    persons.upsert(db, dict(id_number=number, name="张小宝", insurance_type="resident", insurance_status="active",
                            region_code="320100", real_name_verified=False), platform=None, now=T0)
    return fam._replace(beneficiary=number, beneficiary_name="张小宝")


def test_guardian_path_accepts_a_child_under_16_immediately(pg_db, family):
    """Given a beneficiary aged 9 (born 2016-05-05) and the grantor's relationship 'child',
    when the grantor invites,
    then the binding is accepted at once with verification_method guardian, no invitation expiry and no
    timer; its single history row is invite (none → accepted, reason guardian_path) and its one outbound
    event is binding.accepted; a face verification is refused and the grantor can authorize straight away."""
    fam = _child(pg_db, family, "20160505", "101")

    made = invite(pg_db, fam, relationship="child")

    assert (made["state"], made["verification_method"], made["version"]) == ("accepted", "guardian", 1)
    row = binding(pg_db, made["id"])
    assert (row.expires_at, row.deadline_at, row.deadline_event) == (None, None, None)
    rows = assert_history_consistent(pg_db, made["id"])
    assert [(t.event, t.from_state, t.to_state, t.reason) for t in rows] == [
        ("invite", None, "accepted", "guardian_path")]
    assert replay(rows) == "accepted"
    with pg_db() as s:  # its one event says what the platforms must act on: the binding is accepted
        assert s.execute(sa.select(OutboxMessage.binding_version, OutboxMessage.topic, OutboxMessage.payload)
                         .where(OutboxMessage.binding_id == made["id"])).all() == [
            (1, "binding.accepted", ANY)]
    with pytest.raises(DomainError) as refused:
        verification.start_verification(pg_db, made["id"], person(fam.beneficiary), now=T0)
    assert refused.value.code == "illegal_transition"
    assert commands.authorize(pg_db, made["id"], person(fam.grantor), 2_000, now=T0)["state"] == "authorized"


@pytest.mark.parametrize("relationship", ["sibling", "spouse", "parent", "grandparent"])
def test_guardian_path_refuses_relationships_other_than_child_or_grandchild(pg_db, family, relationship):
    """Given a beneficiary under 16 and a relationship the region allows in general (Jiangsu allows
    siblings and grandparents),
    when the grantor invites them as a sibling (or spouse, parent, grandparent),
    then the invitation is refused with relationship_not_allowed: under 16 only a parent or grandparent
    may be the grantor."""
    fam = _child(pg_db, family, "20160505", "102")
    with pytest.raises(DomainError) as refused:
        invite(pg_db, fam, relationship=relationship)
    assert refused.value.code == "relationship_not_allowed"


def test_grandchild_under_16_takes_the_guardian_path(pg_db, family):
    """Given a beneficiary aged 3, when a grandparent invites them as 'grandchild', then it is accepted
    on the guardian path."""
    fam = _child(pg_db, family, "20221111", "103")
    assert invite(pg_db, fam, relationship="grandchild")["verification_method"] == "guardian"


@pytest.mark.parametrize("now, born, method", [
    # T0 is 2026-03-02 10:00 in Asia/Shanghai
    (T0, "20100302", "face"),  # 16 today
    (T0, "20100303", "guardian"),  # 16 tomorrow
    # 2026-03-01 17:00 UTC is already 2026-03-02 01:00 in China: the China date decides
    (datetime(2026, 3, 1, 17, 0, tzinfo=timezone.utc), "20100302", "face"),
    (datetime(2026, 3, 1, 15, 59, tzinfo=timezone.utc), "20100302", "guardian"),  # 23:59 on 03-01 in China
])
def test_the_age_16_boundary_uses_the_invitation_day_in_china(pg_db, family, now, born, method):
    """Given a child beneficiary born on `born`,
    when the grantor invites at `now`,
    then the guardian path applies exactly while the child is under 16 on that day in Asia/Shanghai."""
    fam = _child(pg_db, family, born, "104")
    assert invite(pg_db, fam, relationship="child", now=now)["verification_method"] == method


def test_opening_a_verification_again_returns_the_open_attempt_and_writes_nothing(pg_db, family):
    """Given an invited binding with an open verification attempt,
    when the beneficiary opens a verification again before any result,
    then the same attempt is returned and no table changes."""
    fam = family(pg_db, now=T0)
    bid = invite(pg_db, fam)["id"]
    first = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0)
    before = table_snapshot(pg_db)

    again = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(minutes=2))

    assert again["verification_id"] == first["verification_id"]
    assert table_snapshot(pg_db) == before


# --- refusals write nothing ---------------------------------------------------------------------------

def _refused(db, call) -> str:
    """Run a command expected to be refused; assert no table changed; return the error code."""
    before = table_snapshot(db)
    with pytest.raises(DomainError) as refused:
        call()
    assert table_snapshot(db) == before, f"the refused command ({refused.value.code}) wrote something"
    return refused.value.code


def test_refused_invitations_write_nothing(pg_db, family, new_person):
    """Given an existing invitation and persons with various defects,
    when invitations are refused for each rule (duplicate, name mismatch, commitment letter, guardian
    relationship, grantor not eligible, beneficiary unknown, self binding, invalid ID number),
    then each is refused with its code and no table changes at all (counts and content)."""
    fam = family(pg_db, now=T0)
    invite(pg_db, fam)
    kid = _child(pg_db, family, "20160505", "105")
    resident_grantor = family(pg_db, now=T0)._replace(grantor=new_person(pg_db, insurance_type="resident", now=T0)[0])
    stranger = with_check_digit("32010219900101999")  # valid, not in the registry
    other = family(pg_db, now=T0)

    cases = {
        "duplicate_binding": lambda: invite(pg_db, fam),
        "name_mismatch": lambda: invite(pg_db, other._replace(beneficiary_name="不对名")),
        "commitment_required": lambda: invite(pg_db, other, commitment_version="JS-2000-01"),
        "relationship_not_allowed": lambda: invite(pg_db, kid, relationship="sibling"),
        "grantor_not_eligible": lambda: invite(pg_db, resident_grantor),
        "beneficiary_not_insured": lambda: invite(pg_db, other._replace(beneficiary=stranger)),
        "self_binding": lambda: invite(pg_db, other._replace(beneficiary=other.grantor)),
        "invalid_id_number": lambda: invite(pg_db, other._replace(beneficiary=other.beneficiary[:17] + "?")),
    }
    for code, call in cases.items():
        assert _refused(pg_db, call) == code


def test_refused_lifecycle_commands_write_nothing(pg_db, family):
    """Given bindings in invited, face_verified and accepted states,
    when accept, authorize, unbind and start_verification are refused (wrong state, wrong actor, missing
    reason, a grantor who stopped being eligible, an invalid amount),
    then each is refused with its code and no table changes (authorize sets the amount before the event is
    refused: the rollback must undo it)."""
    invited = invite(pg_db, family(pg_db, now=T0))
    fam_fv = family(pg_db, now=T0)
    fv = face_verified(pg_db, fam_fv)
    fam_acc = family(pg_db, now=T0)
    acc = accepted(pg_db, fam_acc)
    # actors by opaque person id (the API's other form of actor)
    inv_g = {"kind": "person", "id": invited["grantor"]["id"]}
    inv_b = {"kind": "person", "id": invited["beneficiary"]["id"]}
    cases = [
        ("illegal_transition", lambda: commands.accept(pg_db, invited["id"], inv_b, now=T0)),
        ("not_your_binding", lambda: commands.accept(pg_db, fv, person(fam_fv.grantor), now=T0)),
        ("illegal_transition", lambda: commands.authorize(pg_db, invited["id"], inv_g, 100, now=T0)),
        ("validation_failed", lambda: commands.authorize(pg_db, acc, person(fam_acc.grantor), -1, now=T0)),
        ("not_your_binding", lambda: commands.authorize(pg_db, acc, person(fam_acc.beneficiary), 100, now=T0)),
        ("reason_required", lambda: commands.unbind(pg_db, acc, Actor("operator", "alice"), now=T0)),
        ("illegal_transition", lambda: commands.unbind(pg_db, fv, person(fam_fv.grantor), now=T0)),
        ("illegal_transition", lambda: verification.start_verification(pg_db, acc, person(fam_acc.beneficiary),
                                                                       now=T0)),
        ("not_found", lambda: commands.cancel(pg_db, "bnd_missing", inv_g, now=T0)),
        ("not_your_binding", lambda: commands.cancel(pg_db, invited["id"],
                                                     {"kind": "person", "id_number": fam_acc.grantor}, now=T0)),
    ]
    for code, call in cases:
        assert _refused(pg_db, call) == code

    # the grantor loses real-name verification after face verification: accepting is refused, nothing written
    # (a suspended insurance would end the binding itself: tests/integration/test_person_events.py)
    persons.upsert(pg_db, dict(id_number=fam_fv.grantor, name=fam_fv.grantor_name, insurance_type="employee",
                               insurance_status="active", region_code="320100", real_name_verified=False),
                   platform=None, now=T0 + timedelta(minutes=10))
    assert _refused(pg_db, lambda: commands.accept(pg_db, fv, person(fam_fv.beneficiary),
                                                   now=T0 + timedelta(minutes=11))) == "grantor_not_eligible"
    assert binding(pg_db, fv).state == "face_verified"
    assert binding(pg_db, acc).authorized_amount_fen is None


def test_what_gongji_writes_as_a_reason_is_kept_and_what_a_person_writes_is_masked(pg_db, family):
    """Given an accepted binding, when the grantor authorizes 138,000,000.00 yuan (13800000000 fen: shaped
    like a mobile number) and then unbinds with a reason giving his mobile number, then the history keeps
    `amount_fen=13800000000` as Gongji wrote it, and the person's number is masked."""
    fam = family(pg_db)
    bid = accepted(pg_db, fam)
    commands.authorize(pg_db, bid, person(fam.grantor), 13_800_000_000, now=T0 + timedelta(hours=1))
    commands.unbind(pg_db, bid, person(fam.grantor), reason="call me 13912345678", now=T0 + timedelta(hours=2))
    reasons = [t["reason"] for t in commands_history(pg_db, bid)[-2:]]
    assert reasons == ["amount_fen=13800000000", "call me 139****5678"]


def commands_history(db, binding_id: str) -> list[dict]:
    from workflows.views import transition_view
    from models import Transition
    with db() as s:
        return [transition_view(t) for t in s.scalars(sa.select(Transition).where(Transition.binding_id == binding_id)
                                                       .order_by(Transition.seq))]
