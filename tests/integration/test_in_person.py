"""The identity check in person at a service hall (workflows/in_person.py) on PostgreSQL: through a
platform's counter system and through the dashboard's operator action, only where the binding's region
policy allows it, one transaction that abandons an open face-check attempt, nothing written on refusal,
and a race with the provider's result that has exactly one winner."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import AuditEntry, OutboxMessage, Transition, VerificationAttempt
from workflows import (batches, casefile, commands, in_person, operators, platforms, policy, policy_admin, repair,
                       verification)
from workflows.errors import DomainError

from .support import (CONFLICT_CODES, T0, TTL, assert_history_consistent, binding, history, invite, person, race)

pytestmark = [pytest.mark.pg]
XJ_COMMITMENT = "XJ-2023-02"
HALL_REASON = "居民身份证原件核验，申请表 XJ-2026-000123"


def _xj_invited(db, family, **kw) -> tuple[object, str]:
    fam = family(db, region="650100")
    return fam, invite(db, fam, commitment_version=XJ_COMMITMENT, **kw)["id"]


def _events(db, binding_id: str) -> list[dict]:
    with db() as s:
        return [m.payload for m in s.scalars(sa.select(OutboxMessage).where(OutboxMessage.binding_id == binding_id)
                                             .order_by(OutboxMessage.id))]


def _attempts(db, binding_id: str) -> list[tuple[str, str | None]]:
    with db() as s:
        return [(a.status, a.reason) for a in s.scalars(sa.select(VerificationAttempt).where(
            VerificationAttempt.binding_id == binding_id).order_by(VerificationAttempt.attempt_no))]


def test_the_hall_verifies_in_person_then_the_relative_accepts(pg_db, family):
    """Given a Xinjiang invitation (its policy allows the check in person) whose relative opened a face check
    When Xinjiang's counter system reports that staff 0042 checked the documents
    Then the binding is face_verified with verification_method in_person, one history row by `staff
    xinjiang:0042` on the counter channel with the reason, one `binding.face_verified` event naming the
    platform (not the member of staff), the open attempt abandoned, its late result ignored
    And the relative then accepts as after a face check."""
    fam, bid = _xj_invited(pg_db, family)
    v = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
    xinjiang = platforms.get(pg_db, "xinjiang")

    view = in_person.verify_in_person(pg_db, bid, staff_id="0042", reason=HALL_REASON, platform=xinjiang,
                                      now=T0 + timedelta(minutes=2))

    assert (view["state"], view["verification_method"], view["version"]) == ("face_verified", "in_person", 3)
    last = history(pg_db, bid)[-1]
    assert (last.from_state, last.to_state, last.event, last.actor_kind, last.actor_id, last.channel, last.reason) == (
        "invited", "face_verified", "verify_in_person", "staff", "xinjiang:0042", "counter", HALL_REASON)
    event = _events(pg_db, bid)[-1]
    assert event["type"] == "binding.face_verified"
    assert event["data"]["transition"]["actor"] == {"kind": "staff", "id": "xinjiang"}
    assert event["data"]["binding"]["verification_method"] == "in_person"
    assert _attempts(pg_db, bid) == [("abandoned", "verify_in_person")]
    late = verification.record_verification_result(pg_db, verification_id=v["verification_id"], binding_id=bid,
                                                    result="passed", verifier_id="facecheck",
                                                    now=T0 + timedelta(minutes=3))
    assert late == "ignored_abandoned"
    row = binding(pg_db, bid)
    assert (row.deadline_event, row.deadline_at) == ("expire", T0 + TTL)  # the attempt's timer is gone

    accepted = commands.accept(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(minutes=4))
    assert (accepted["state"], accepted["verification_method"]) == ("accepted", "in_person")
    assert [t.event for t in assert_history_consistent(pg_db, bid)] == [
        "invite", "start_verification", "verify_in_person", "accept"]


def _unchanged(db, bid: str):
    """What a refusal must leave as it was: the binding's version, its history and its events."""
    return binding(db, bid).version, len(history(db, bid)), len(_events(db, bid))


@pytest.mark.parametrize("case", ["policy_off", "wrong_province", "verifier", "not_invited", "expired",
                                  "staff_id", "staff_mobile", "staff_too_long"])
def test_a_refused_check_in_person_writes_nothing(pg_db, family, case):
    """Given an invitation, When the check in person is reported where it may not be (a Jiangsu binding,
    whose policy does not provide for it; Jiangsu's platform for a Xinjiang relative; the face-verification
    provider; a binding already face-verified; an expired invitation; a staff id with ':', one that is a
    mobile number, one of 32 characters), Then it is refused with its code and nothing is written."""
    region = "320100" if case == "policy_off" else "650100"
    fam = family(pg_db, region=region)
    bid = invite(pg_db, fam, commitment_version="JS-2024-01" if region == "320100" else XJ_COMMITMENT)["id"]
    caller, at, staff_id = platforms.get(pg_db, "jiangsu" if region == "320100" else "xinjiang"), T0, "0042"
    expected = {"policy_off": "in_person_not_allowed", "wrong_province": "not_found", "verifier": "not_found",
                "not_invited": "illegal_transition", "expired": "illegal_transition",
                "staff_id": "validation_failed", "staff_mobile": "validation_failed",
                "staff_too_long": "validation_failed"}[case]
    if case == "wrong_province":
        caller = platforms.get(pg_db, "jiangsu")
    elif case == "verifier":
        caller = platforms.get(pg_db, "facecheck")
    elif case == "not_invited":
        in_person.verify_in_person(pg_db, bid, staff_id="0042", reason=HALL_REASON, platform=caller, now=T0)
    elif case == "expired":
        at = T0 + TTL
    elif case == "staff_id":
        staff_id = "xinjiang:0042"
    elif case == "staff_mobile":
        staff_id = "13812345678"
    elif case == "staff_too_long":
        staff_id = "s" * 32
    before = _unchanged(pg_db, bid)

    with pytest.raises(DomainError) as refused:
        in_person.verify_in_person(pg_db, bid, staff_id=staff_id, reason=HALL_REASON, platform=caller, now=at)

    assert refused.value.code == expected
    assert _unchanged(pg_db, bid) == before


def test_both_regions_policies_in_force_decide_and_a_published_switch_serves_waiting_invitations(pg_db, family):
    """Given a Jiangsu invitation across pooling regions (南京 grantor, 苏州 relative), made while neither
    region's policy provides for the check in person
    When 苏州 publishes a version that does, and later 南京 too
    Then the check is refused while only 苏州 allows it (naming 南京), and once both do, the invitation that
    was already waiting is verified: a hall's service applies from when it is offered."""
    fam = family(pg_db, region="320100", beneficiary_region="320500")
    bid = invite(pg_db, fam)["id"]
    jiangsu = platforms.get(pg_db, "jiangsu")

    def publish(region: str, at):
        policy_admin.publish(pg_db, [region], {"in_person_verification": True}, effective_from=at + timedelta(hours=1),
                             who="test", reason="halls open", now=at)
        policy.clear_cache()

    publish("320500", T0)
    with pytest.raises(DomainError) as one_side:
        in_person.verify_in_person(pg_db, bid, staff_id="s1", reason=HALL_REASON, platform=jiangsu,
                                   now=T0 + timedelta(hours=2))
    publish("320100", T0 + timedelta(hours=2))
    done = in_person.verify_in_person(pg_db, bid, staff_id="s1", reason=HALL_REASON, platform=jiangsu,
                                      now=T0 + timedelta(hours=4))

    assert one_side.value.code == "in_person_not_allowed" and "320100" in one_side.value.detail
    assert "320500" not in one_side.value.detail
    assert (done["state"], done["verification_method"]) == ("face_verified", "in_person")


def test_the_dashboard_offers_it_only_on_a_valid_invitation_where_the_policy_allows_it(pg_db, family):
    """Given a Xinjiang invitation and a Jiangsu one, When their case files are read at once and after the
    Xinjiang invitation's validity ended (its timer not fired yet), Then only the valid Xinjiang one offers it."""
    _fam, xj_bid = _xj_invited(pg_db, family)
    js_bid = invite(pg_db, family(pg_db, region="320100"))["id"]

    assert casefile.casefile(pg_db, xj_bid, now=T0)["in_person"] is True
    assert casefile.casefile(pg_db, js_bid, now=T0)["in_person"] is False
    assert casefile.casefile(pg_db, xj_bid, now=T0 + TTL)["in_person"] is False


def test_the_event_it_sends_matches_the_published_webhook_schema(pg_db, family):
    """Given the OpenAPI document's `webhooks` section, When a binding is verified in person, Then its
    `binding.face_verified` event (actor kind `staff`, verification_method in_person) validates against it."""
    from jsonschema import Draft202012Validator

    from web.api import openapi
    _fam, bid = _xj_invited(pg_db, family)
    in_person.verify_in_person(pg_db, bid, staff_id="0042", reason=HALL_REASON,
                               platform=platforms.get(pg_db, "xinjiang"), now=T0)
    doc = openapi.document()
    event = _events(pg_db, bid)[-1]
    schema = doc["webhooks"][event["type"]]["post"]["requestBody"]["content"]["application/json"]["schema"]

    errors = [e.message for e in Draft202012Validator({**schema, "components": doc["components"]}).iter_errors(event)]

    assert event["data"]["transition"]["actor"]["kind"] == "staff" and errors == []


@pytest.fixture
def staff(pg_db):
    return {role: operators.add(pg_db, f"{role}1", "correct horse battery", role)
            for role in ("viewer", "operator", "admin")}


def test_an_operator_records_the_check_with_an_audit_row_and_a_viewer_may_not(pg_db, family, staff):
    """Given a Xinjiang invitation and a Jiangsu one
    When a viewer, then an operator records the check in person on the Xinjiang one, and an operator on the
    Jiangsu one
    Then the viewer is refused (forbidden), the operator's moves it to face_verified (actor operator, channel
    dashboard), the Jiangsu one is refused in_person_not_allowed; each is audited with its outcome."""
    _fam, bid = _xj_invited(pg_db, family)
    js_bid = invite(pg_db, family(pg_db, region="320100"))["id"]

    with pytest.raises(DomainError) as viewer:
        repair.verify_in_person(pg_db, staff["viewer"], bid, HALL_REASON, now=T0)
    done = repair.verify_in_person(pg_db, staff["operator"], bid, HALL_REASON, now=T0, seen=1)
    with pytest.raises(DomainError) as policy_off:
        repair.verify_in_person(pg_db, staff["operator"], js_bid, HALL_REASON, now=T0)

    assert viewer.value.code == "forbidden" and policy_off.value.code == "in_person_not_allowed"
    assert done == {"from": "invited", "to": "face_verified"}
    last = history(pg_db, bid)[-1]
    assert (last.event, last.actor_kind, last.actor_id, last.channel) == (
        "verify_in_person", "operator", "operator1", "dashboard")
    assert binding(pg_db, js_bid).state == "invited"
    with pg_db() as s:
        audit = [(a.operator, a.binding_id, a.action, a.outcome) for a in s.scalars(
            sa.select(AuditEntry).order_by(AuditEntry.id))]
    assert audit == [("viewer1", bid, "verify_in_person", "forbidden"),
                     ("operator1", bid, "verify_in_person", "ok"),
                     ("operator1", js_bid, "verify_in_person", "in_person_not_allowed")]


def test_no_batch_checks_identities_in_person(pg_db, staff):
    """Given an operator, When a batch of checks in person is started, Then it is refused: documents are
    checked one person at a time."""
    with pytest.raises(DomainError) as refused:
        batches.start(pg_db, staff["operator"], "verify_in_person", {"state": "invited"}, "all of them",
                      expected=1)
    assert refused.value.code == "validation_failed"


def test_the_check_in_person_and_the_face_result_race_one_wins(pg_db, family):
    """Given a Xinjiang invitation with an open face-check attempt
    When the hall's report and the provider's `passed` result arrive at once (two threads)
    Then the binding is face_verified by exactly one transition: either the hall's (the attempt abandoned,
    the result ignored) or the provider's (the attempt passed, the hall refused 409)."""
    fam, bid = _xj_invited(pg_db, family)
    v = verification.start_verification(pg_db, bid, person(fam.beneficiary), now=T0 + timedelta(seconds=1))
    xinjiang = platforms.get(pg_db, "xinjiang")
    at = T0 + timedelta(minutes=1)

    hall, face = race(
        lambda: in_person.verify_in_person(pg_db, bid, staff_id="0042", reason=HALL_REASON, platform=xinjiang,
                                           now=at),
        lambda: verification.record_verification_result(pg_db, verification_id=v["verification_id"],
                                                        binding_id=bid, result="passed", verifier_id="facecheck",
                                                        now=at))

    rows = assert_history_consistent(pg_db, bid)
    assert [t.to_state for t in rows].count("face_verified") == 1
    [(status, _why)] = _attempts(pg_db, bid)
    if hall.ok:
        assert (face.value, status, rows[-1].event) == ("ignored_abandoned", "abandoned", "verify_in_person")
    else:
        assert hall.code in CONFLICT_CODES
        assert (face.value, status, rows[-1].event) == ("passed", "passed", "verification_passed")
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Transition)
                        .where(Transition.binding_id == bid, Transition.to_state == "face_verified")) == 1
