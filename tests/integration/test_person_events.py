"""Inbound platform events on PostgreSQL (API.md "Inbound webhooks", DESIGN §3 "Events from platforms end
bindings by themselves"): person.updated, person.deceased, relationship.ended, binding.unbind_requested,
stored with `webhooks.receive` and applied with `webhooks.process` exactly as the worker does.

The worker applies events at the wall clock, so each test builds its families an hour or two before it
(`base`): invitations are then still inside their TTL, and every as-of time is stated relative to `base`."""
from __future__ import annotations

import json
import random
import time
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models import Binding, ReceivedWebhook
from models.types import utcnow
from workflows import commands, person_events, persons, platforms, timers, webhooks
from workflows.errors import DomainError
from workflows.idnumbers import with_check_digit

from .support import (CONFLICT_CODES, accepted, assert_history_consistent, binding, face_verified, history, invite,
                      past_the_character_check, person, race, table_snapshot)
from .test_commands_pg import replay

pytestmark = pytest.mark.pg

ROUNDS = 10
DOMAIN_TABLES = ("persons", "bindings", "binding_transitions", "verification_attempts")


@pytest.fixture
def base() -> datetime:
    return utcnow().replace(microsecond=0) - timedelta(hours=2)


def deliver(db, platform_id: str, event_type: str, data: dict, *, sent: datetime,
            webhook_id: str | None = None) -> int:
    """Store a webhook as `POST /webhooks/<platform>` does after the signature check; its row id."""
    wid = webhook_id or f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": event_type, "data": data}, ensure_ascii=False).encode()
    headers = {"webhook-id": wid, "webhook-timestamp": str(int(sent.timestamp())), "webhook-signature": "v1,x"}
    row_id, _ = webhooks.receive(db, platform=platforms.get(db, platform_id), webhook_id=wid, body=body,
                                 headers=headers, event_type=event_type)
    return row_id


def send(db, platform_id: str, event_type: str, data: dict, *, sent: datetime) -> str:
    """Deliver and process one webhook; its outcome."""
    return webhooks.process(db, deliver(db, platform_id, event_type, data, sent=sent))


def registry(fam, side: str, **changes) -> dict:
    """The registry record of one side of a family (the test factory's defaults), with `changes`."""
    number, name = (fam.grantor, fam.grantor_name) if side == "grantor" else (fam.beneficiary, fam.beneficiary_name)
    record = dict(id_number=number, name=name, insurance_type="employee" if side == "grantor" else "resident",
                  insurance_status="active", region_code="320100", real_name_verified=True)
    return {**record, **changes}


def held(db, number: str):
    with db() as s:
        return persons.by_number(s, number)


def domain_state(db) -> dict:
    return {k: v for k, v in table_snapshot(db).items() if k in DOMAIN_TABLES}


def assert_ended_by_system(db, bid: str, *, state: str, event: str, reason: str, platform_id: str) -> None:
    row = binding(db, bid)
    assert (row.state, row.end_event, row.deadline_at) == (state, event, None)
    rows = assert_history_consistent(db, bid)
    last = rows[-1]
    assert (last.event, last.to_state, last.actor_kind, last.actor_id, last.reason) == (
        event, state, "system", f"registry:{platform_id}", reason)
    assert replay(rows) == state


def _authorized(db, fam, now):
    bid = accepted(db, fam, now=now)
    commands.authorize(db, bid, person(fam.grantor), 10_000, now=now + timedelta(minutes=1))
    return bid


STAGES = {"invited": lambda db, fam, now: invite(db, fam, now=now)["id"],
          "face_verified": lambda db, fam, now: face_verified(db, fam, now=now),
          "accepted": lambda db, fam, now: accepted(db, fam, now=now), "authorized": _authorized}

# (binding stage, platform, event type, data builder, expected state, event, reason)
ENDINGS = {
    "grantor_deceased": ("accepted", "jiangsu", "person.deceased", lambda f: {"id_number": f.grantor},
                         "unbound", "unbind"),
    "beneficiary_deceased": ("invited", "jiangsu", "person.deceased", lambda f: {"id_number": f.beneficiary},
                             "rejected", "reject"),
    "grantor_insurance_suspended": ("authorized", "jiangsu", "person.updated",
                                    lambda f: registry(f, "grantor", insurance_status="suspended"),
                                    "unbound", "unbind"),
    "grantor_insurance_ended": ("face_verified", "jiangsu", "person.updated",
                                lambda f: registry(f, "grantor", insurance_status="ended"), "rejected", "reject"),
    "beneficiary_insurance_suspended": ("accepted", "national", "person.updated",
                                        lambda f: registry(f, "beneficiary", insurance_status="suspended"),
                                        "unbound", "unbind"),
    "beneficiary_insurance_ended": ("accepted", "jiangsu", "person.updated",
                                    lambda f: registry(f, "beneficiary", insurance_type="none"), "unbound", "unbind"),
    "grantor_left_employee_insurance": ("authorized", "jiangsu", "person.updated",
                                        lambda f: registry(f, "grantor", insurance_type="resident"),
                                        "unbound", "unbind"),
    # Xinjiang's policy does not allow sharing across provinces; only the national platform serves both
    "region_not_allowed": ("accepted", "national", "person.updated",
                           lambda f: registry(f, "beneficiary", region_code="650100"), "unbound", "unbind"),
    "relationship_ended": ("authorized", "jiangsu", "relationship.ended",
                           lambda f: {"grantor_id_number": f.grantor, "beneficiary_id_number": f.beneficiary},
                           "unbound", "unbind"),
}


@pytest.mark.parametrize("reason", list(ENDINGS))
def test_each_platform_event_ends_the_binding_with_its_reason(pg_db, family, base, reason):
    """Given a binding in the listed stage between an eligible pair in 南京,
    when the listed platform's event arrives (signed an hour after the pair was registered),
    then the binding ends (`unbind` if live, `reject` if pending) by the system (`registry:<platform>`) with
    the reason in history, the history replays through the machine and one outbox event per version."""
    stage, platform_id, event_type, data, state, event = ENDINGS[reason]
    fam = family(pg_db, now=base)
    bid = STAGES[stage](pg_db, fam, base)

    outcome = send(pg_db, platform_id, event_type, data(fam), sent=base + timedelta(hours=1))

    assert outcome == ("applied" if event_type.startswith("person.") else state)
    assert_ended_by_system(pg_db, bid, state=state, event=event, reason=reason, platform_id=platform_id)


def test_a_death_ends_every_live_and_pending_binding_of_the_person(pg_db, family, base):
    """Given a grantor with an authorized, an invited and an already cancelled binding, who is also the
    beneficiary of another grantor's accepted binding,
    when the registry reports the grantor deceased,
    then the authorized and accepted ones are unbound, the invited one rejected, the cancelled one untouched —
    all in the one transaction of the event, each with reason grantor_deceased or beneficiary_deceased."""
    first = family(pg_db, now=base)
    me = (first.grantor, first.grantor_name)
    live = _authorized(pg_db, first, base)
    pending = invite(pg_db, family(pg_db, grantor=me, now=base), now=base)["id"]
    gone_fam = family(pg_db, grantor=me, now=base)
    gone = invite(pg_db, gone_fam, now=base)["id"]
    commands.cancel(pg_db, gone, person(first.grantor), now=base + timedelta(minutes=5))
    other = family(pg_db, now=base)
    as_beneficiary = accepted(pg_db, other._replace(beneficiary=first.grantor, beneficiary_name=first.grantor_name),
                              now=base)

    assert send(pg_db, "jiangsu", "person.deceased", {"id_number": first.grantor},
                sent=base + timedelta(hours=1)) == "applied"

    assert_ended_by_system(pg_db, live, state="unbound", event="unbind", reason="grantor_deceased",
                           platform_id="jiangsu")
    assert_ended_by_system(pg_db, pending, state="rejected", event="reject", reason="grantor_deceased",
                           platform_id="jiangsu")
    assert_ended_by_system(pg_db, as_beneficiary, state="unbound", event="unbind", reason="beneficiary_deceased",
                           platform_id="jiangsu")
    assert [t.event for t in history(pg_db, gone)] == ["invite", "cancel"]
    assert held(pg_db, first.grantor).deceased is True


def test_an_invitation_past_its_ttl_is_left_to_the_timer(pg_db, family, base):
    """Given an invitation made 8 days ago (past Jiangsu's 7-day TTL) that no sweep has expired yet,
    when the registry reports the beneficiary deceased,
    then the death applies and the invitation is left alone (a reject would be refused there), and the next
    sweep expires it as usual."""
    long_ago = base - timedelta(days=8)
    fam = family(pg_db, now=long_ago)
    bid = invite(pg_db, fam, now=long_ago)["id"]

    assert send(pg_db, "jiangsu", "person.deceased", {"id_number": fam.beneficiary}, sent=base) == "applied"

    assert held(pg_db, fam.beneficiary).deceased is True and binding(pg_db, bid).state == "invited"
    assert timers.sweep(pg_db, now=utcnow()) == 1
    assert [t.event for t in assert_history_consistent(pg_db, bid)] == ["invite", "expire"]


def test_a_stale_event_changes_nothing(pg_db, family, base):
    """Given a person whose registry record is held as of `base + 1 h` (an applied event said so),
    when events as of an earlier or the same time arrive — `updated_at` older, `updated_at` equal, or no
    `updated_at` and a webhook-timestamp older (a second earlier) —
    then each is recorded with outcome `stale` and no domain table changes."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    newest = base + timedelta(hours=1)
    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", updated_at=newest.isoformat()),
                sent=newest) == "applied"
    assert held(pg_db, fam.grantor).registry_as_of == newest
    before = domain_state(pg_db)
    suspended = registry(fam, "grantor", insurance_status="suspended")
    earlier = newest - timedelta(minutes=1)

    outcomes = [
        send(pg_db, "jiangsu", "person.updated", {**suspended, "updated_at": earlier.isoformat()},
             sent=newest + timedelta(minutes=5)),
        send(pg_db, "jiangsu", "person.updated", {**suspended, "updated_at": newest.isoformat()}, sent=newest),
        send(pg_db, "jiangsu", "person.updated", suspended, sent=newest - timedelta(seconds=1)),
    ]

    assert outcomes == ["stale"] * 3
    assert domain_state(pg_db) == before
    assert binding(pg_db, bid).state == "accepted"


def test_a_newer_event_applies_and_moves_registry_as_of(pg_db, family, base):
    """Given a person registered as of `base`,
    when a person.updated with `updated_at` = base + 30 min arrives, then one without `updated_at` signed
    at base + 20 min, then one signed at base + 40 min,
    then the first applies (registry_as_of = its updated_at), the second is stale (its webhook-timestamp is
    its as-of time) and the third applies (registry_as_of = the end of its webhook-timestamp's second)."""
    fam = family(pg_db, now=base)
    assert held(pg_db, fam.grantor).registry_as_of == base
    at = base + timedelta(minutes=30)

    renamed = registry(fam, "grantor", name="新名字", updated_at=at.isoformat())
    first = send(pg_db, "jiangsu", "person.updated", renamed, sent=base + timedelta(minutes=31))
    second = send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", region_code="320500"),
                  sent=base + timedelta(minutes=20))
    held_after_second = held(pg_db, fam.grantor)
    third = send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", region_code="320500"),
                 sent=base + timedelta(minutes=40))

    assert (first, second, third) == ("applied", "stale", "applied")
    assert held_after_second.name == "新名字" and held_after_second.region_code == "320100"
    assert held_after_second.registry_as_of == at
    now_held = held(pg_db, fam.grantor)
    assert now_held.region_code == "320500"
    assert now_held.registry_as_of == base + timedelta(minutes=40, microseconds=999_999)


def test_an_update_signed_in_the_same_second_as_the_registration_applies(pg_db, family, base):
    """Given a person registered by `POST /persons` (no updated_at) half a second into a second,
    when a person.updated without `updated_at`, whose webhook-timestamp (whole seconds) is that same second,
    suspends them, and then the platform re-sends it under a new webhook-id with the same timestamp,
    then the first applies (the header only says "within that second": it is not older than the
    registration) and the re-send is stale."""
    registered = base + timedelta(milliseconds=500)
    fam = family(pg_db, now=registered)
    assert held(pg_db, fam.grantor).registry_as_of == registered
    suspended = registry(fam, "grantor", insurance_status="suspended")

    assert send(pg_db, "jiangsu", "person.updated", suspended, sent=base) == "applied"
    assert send(pg_db, "jiangsu", "person.updated", suspended, sent=base) == "stale"
    assert held(pg_db, fam.grantor).insurance_status == "suspended"


def test_a_sender_whose_clock_runs_ahead_does_not_outdate_a_fact_that_arrives_after_it(pg_db, family, base):
    """Given an authorized binding
    When Jiangsu sends a person.updated about the grantor (balance only, no `updated_at`) signed 4 minutes
    ahead of the true time (inside the signature's 5-minute tolerance), and then the national platform
    sends, signed at the true time, that his insurance has ended
    Then both apply (a fact is never newer than its arrival: before, Jiangsu's clock made the national
    platform's later fact `stale` for good, and the binding stayed authorized) and the binding ends with
    grantor_insurance_ended."""
    fam = family(pg_db, now=base)
    bid = _authorized(pg_db, fam, base)
    ahead = utcnow() + timedelta(minutes=4)
    richer = registry(fam, "grantor", balance_fen=123_456)

    first = send(pg_db, "jiangsu", "person.updated", richer, sent=ahead)
    ended = send(pg_db, "national", "person.updated", registry(fam, "grantor", insurance_status="ended"),
                 sent=utcnow())

    assert (first, ended) == ("applied", "applied")
    assert held(pg_db, fam.grantor).insurance_status == "ended"
    assert_ended_by_system(pg_db, bid, state="unbound", event="unbind", reason="grantor_insurance_ended",
                           platform_id="national")


def test_a_death_applies_even_when_a_newer_fact_is_held(pg_db, family, base):
    """Given an accepted binding whose grantor's record is held as of `base + 1 h`,
    when a person.deceased as of `base + 30 min` (the day of death, reported after the later update) arrives,
    then it applies: the binding ends with reason grantor_deceased and registry_as_of stays `base + 1 h`;
    a second death is stale and changes nothing."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    newest = base + timedelta(hours=1)
    assert send(pg_db, "jiangsu", "person.updated", registry(fam, "grantor", updated_at=newest.isoformat()),
                sent=newest) == "applied"
    died = {"id_number": fam.grantor, "updated_at": (base + timedelta(minutes=30)).isoformat()}

    assert send(pg_db, "jiangsu", "person.deceased", died, sent=newest + timedelta(minutes=5)) == "applied"
    assert_ended_by_system(pg_db, bid, state="unbound", event="unbind", reason="grantor_deceased",
                           platform_id="jiangsu")
    assert held(pg_db, fam.grantor).deceased and held(pg_db, fam.grantor).registry_as_of == newest
    before = domain_state(pg_db)
    assert send(pg_db, "jiangsu", "person.deceased", died, sent=newest + timedelta(minutes=6)) == "stale"
    assert domain_state(pg_db) == before


def test_a_province_platform_is_refused_for_another_province(pg_db, family, base):
    """Given an authorized binding between two persons insured in Jiangsu,
    when the Xinjiang platform sends person.deceased, a person.updated moving one of them to 乌鲁木齐,
    relationship.ended and binding.unbind_requested about them,
    then nothing changes, and each is recorded with the outcome it would have for persons and a binding
    nobody holds (not_found, no_binding), so that Xinjiang learns nothing of Jiangsu's insured; only the
    move is region_not_served (a province may not take over another's insured). The national platform,
    which serves every province, may send the same death."""
    fam = family(pg_db, now=base)
    bid = _authorized(pg_db, fam, base)
    before = domain_state(pg_db)
    sent = base + timedelta(hours=1)

    outcomes = [
        send(pg_db, "xinjiang", "person.deceased", {"id_number": fam.grantor}, sent=sent),
        send(pg_db, "xinjiang", "person.updated", registry(fam, "grantor", region_code="650100"), sent=sent),
        send(pg_db, "xinjiang", "relationship.ended",
             {"grantor_id_number": fam.grantor, "beneficiary_id_number": fam.beneficiary}, sent=sent),
        send(pg_db, "xinjiang", "binding.unbind_requested",
             {"binding_id": bid, "actor": person(fam.grantor)}, sent=sent),
    ]

    assert outcomes == ["not_found", "region_not_served", "no_binding", "not_found"]
    assert domain_state(pg_db) == before
    nobody = [with_check_digit(f"65010219700101{n}99") for n in (1, 2)]  # numbers nobody holds: the same outcomes
    assert [send(pg_db, "xinjiang", "person.deceased", {"id_number": nobody[0]}, sent=sent),
            send(pg_db, "xinjiang", "relationship.ended", {"grantor_id_number": nobody[0],
                                                           "beneficiary_id_number": nobody[1]}, sent=sent),
            send(pg_db, "xinjiang", "binding.unbind_requested", {"binding_id": "bnd_nobody", "actor": person(
                nobody[0])}, sent=sent)] == ["not_found", "no_binding", "not_found"]
    with pg_db() as s:
        done = s.scalars(sa.select(ReceivedWebhook).where(ReceivedWebhook.platform_id == "xinjiang")
                         .order_by(ReceivedWebhook.id)).all()
    assert all(w.processed_at is not None for w in done)
    # a refusal keeps its reason (GET /webhooks/{id} answers it): the same words for what Jiangsu holds as for
    # what nobody holds, and no number in them
    why = [w.last_error for w in done]
    assert why[0] == why[4] == "not_found: no person with that ID number" and why[2] is why[5] is None
    assert why[3].replace(bid, "bnd_nobody") == why[6] and not any(fam.grantor in (w or "") for w in why)
    assert send(pg_db, "national", "person.deceased", {"id_number": fam.grantor}, sent=sent) == "applied"
    assert_ended_by_system(pg_db, bid, state="unbound", event="unbind", reason="grantor_deceased",
                           platform_id="national")


def test_the_same_person_updated_processed_twice_has_one_effect(pg_db, family, base):
    """Given an authorized binding and one stored person.updated suspending the grantor,
    when the worker processes that webhook twice (a redelivered message), the platform posts it again with
    the same webhook-id, and then re-sends it under a new webhook-id with the same timestamp,
    then the first processing unbinds once; the second answers the recorded outcome; the duplicate is not
    stored again; the re-send is stale. One system unbind in history, one outbox event per version."""
    fam = family(pg_db, now=base)
    bid = _authorized(pg_db, fam, base)
    data, sent = registry(fam, "grantor", insurance_status="suspended"), base + timedelta(hours=1)
    row_id = deliver(pg_db, "jiangsu", "person.updated", data, sent=sent, webhook_id="msg_twice")

    assert webhooks.process(pg_db, row_id) == "applied"
    assert webhooks.process(pg_db, row_id) == "applied"
    assert deliver(pg_db, "jiangsu", "person.updated", data, sent=sent, webhook_id="msg_twice") == row_id
    assert send(pg_db, "jiangsu", "person.updated", data, sent=sent) == "stale"

    rows = assert_history_consistent(pg_db, bid)
    assert [t.event for t in rows].count("unbind") == 1
    assert rows[-1].reason == "grantor_insurance_suspended"
    with pg_db() as s:
        assert s.get(ReceivedWebhook, row_id).attempts == 1


def test_unbind_requested_in_a_platform_app(pg_db, family, base):
    """Given an accepted binding,
    when the platform relays an unbind asked for in its own app by a stranger, for an unknown binding,
    for an actor named by both or neither of id_number and id, and then by the beneficiary with a reason,
    then the first ones are refused (not_your_binding, not_found, validation_failed) and the last unbinds as the beneficiary
    (actor person, channel app, the reason kept)."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    stranger = family(pg_db, now=base).grantor
    sent = base + timedelta(hours=1)

    assert send(pg_db, "jiangsu", "binding.unbind_requested",
                {"binding_id": bid, "actor": person(stranger)}, sent=sent) == "not_your_binding"
    assert send(pg_db, "jiangsu", "binding.unbind_requested",
                {"binding_id": "bnd_missing", "actor": person(fam.beneficiary)}, sent=sent) == "not_found"
    # an actor named by both or neither of id_number and id is refused as the API's ActorIn refuses it
    beneficiary_id = binding(pg_db, bid).beneficiary_id
    for actor in ({"kind": "person"}, {**person(fam.beneficiary), "id": beneficiary_id}):
        assert send(pg_db, "jiangsu", "binding.unbind_requested", {"binding_id": bid, "actor": actor},
                    sent=sent) == "validation_failed"
    assert binding(pg_db, bid).state == "accepted"
    asked = {"binding_id": bid, "actor": person(fam.beneficiary), "reason": "家庭成员变动"}
    assert send(pg_db, "jiangsu", "binding.unbind_requested", asked, sent=sent) == "unbound"

    row = binding(pg_db, bid)
    last = assert_history_consistent(pg_db, bid)[-1]
    assert (last.event, last.actor_kind, last.actor_id, last.channel, last.reason) == (
        "unbind", "person", row.beneficiary_id, "app", "家庭成员变动")


def test_relationship_ended_without_a_binding(pg_db, family, base):
    """Given a pair with no binding, and a pair whose binding was already declined,
    when relationship.ended arrives for each, then the outcome is no_binding and nothing changes."""
    fam, declined = family(pg_db, now=base), family(pg_db, now=base)
    bid = face_verified(pg_db, declined, now=base)
    commands.decline(pg_db, bid, person(declined.beneficiary), now=base + timedelta(minutes=5))
    before = domain_state(pg_db)

    for f in (fam, declined):
        assert send(pg_db, "jiangsu", "relationship.ended", {"grantor_id_number": f.grantor,
                                                             "beneficiary_id_number": f.beneficiary},
                    sent=base + timedelta(hours=1)) == "no_binding"
    assert domain_state(pg_db) == before


def _spouses_bound_both_ways(db, family, base) -> tuple:
    """Two spouses, both employees: A authorized an amount for C, and C has invited A: (fam, A→C, C→A)."""
    fam = family(db, now=base)
    persons.upsert(db, registry(fam, "beneficiary", insurance_type="employee"), platform=None,
                   now=base + timedelta(seconds=1))
    forward = _authorized(db, fam, base)
    reverse = invite(db, type(fam)(fam.beneficiary, fam.grantor, fam.beneficiary_name, fam.grantor_name),
                     now=base + timedelta(minutes=2))["id"]
    return fam, forward, reverse


def test_relationship_ended_ends_the_bindings_both_ways(pg_db, family, base):
    """Given two spouses, both employees: A authorized an amount for C, and C has invited A
    When Jiangsu sends relationship.ended naming A as grantor and C as beneficiary
    Then A → C is unbound and C → A is rejected, both by the system with reason relationship_ended (the
    marriage ended for both), and the outcome is the named binding's new state."""
    fam, forward, reverse = _spouses_bound_both_ways(pg_db, family, base)

    outcome = send(pg_db, "jiangsu", "relationship.ended", {"grantor_id_number": fam.grantor,
                                                            "beneficiary_id_number": fam.beneficiary},
                   sent=base + timedelta(hours=1))

    assert outcome == "unbound"
    assert_ended_by_system(pg_db, forward, state="unbound", event="unbind", reason="relationship_ended",
                           platform_id="jiangsu")
    assert_ended_by_system(pg_db, reverse, state="rejected", event="reject", reason="relationship_ended",
                           platform_id="jiangsu")


def test_malformed_event_data_is_a_final_outcome(pg_db, family, base):
    """Given a platform's events whose data does not match API.md (a number instead of an ID number, a
    person.updated without its fields or with a field POST /persons refuses, an unbind with a string actor,
    an `updated_at` without an offset),
    when processed, then each gets its refusal code as the final outcome (not retried), nothing changes."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    before, sent = domain_state(pg_db), base + timedelta(hours=1)
    cases = [("person.deceased", {"id_number": 320102}, "invalid_id_number"),
             ("person.updated", {"id_number": fam.grantor}, "validation_failed"),
             ("binding.unbind_requested", {"binding_id": bid, "actor": "grantor"}, "validation_failed"),
             ("person.deceased", {"id_number": fam.grantor, "updated_at": "2026-03-02T10:00:00"}, "validation_failed"),
             ("relationship.ended", {"grantor_id_number": fam.grantor}, "invalid_id_number"),
             # the checks of POST /persons: a string is not a boolean ("false" would have counted as verified),
             # a region is six digits, a name at most 64 characters
             ("person.updated", registry(fam, "grantor", real_name_verified="false"), "validation_failed"),
             ("person.updated", registry(fam, "grantor", region_code="32010"), "validation_failed"),
             ("person.updated", registry(fam, "grantor", name="张" * 65), "validation_failed")]

    for event_type, data, code in cases:
        row_id = deliver(pg_db, "jiangsu", event_type, data, sent=sent)
        assert webhooks.process(pg_db, row_id) == code, event_type
        with pg_db() as s:
            row = s.get(ReceivedWebhook, row_id)
            assert (row.processed_at is not None, row.attempts) == (True, 1)
            assert row.last_error.startswith(f"{code}: ") and fam.grantor not in row.last_error  # why, masked
    assert domain_state(pg_db) == before


def test_post_persons_has_the_same_consequences_and_staleness(pg_db, family, base):
    """Given an accepted binding,
    when `POST /api/v1/persons` (persons.upsert) first sends an explicit `updated_at` older than the record
    held, then suspends the grantor without `updated_at`,
    then the first is refused `stale` (409) writing nothing, and the second applies as of now, setting
    registry_as_of, and unbinds with reason grantor_insurance_suspended in the same transaction."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    before = domain_state(pg_db)
    older = registry(fam, "grantor", insurance_status="suspended", updated_at=(base - timedelta(days=1)).isoformat())

    with pytest.raises(DomainError) as refused:
        persons.upsert(pg_db, older, platform=platforms.get(pg_db, "jiangsu"), now=base + timedelta(hours=1))
    assert (refused.value.code, refused.value.status) == ("stale", 409)
    assert domain_state(pg_db) == before

    now = base + timedelta(hours=1)
    view, created = persons.upsert(pg_db, registry(fam, "grantor", insurance_status="suspended"),
                                   platform=platforms.get(pg_db, "jiangsu"), now=now)
    assert (created, view["insurance_status"]) == (False, "suspended")
    assert held(pg_db, fam.grantor).registry_as_of == now
    assert_ended_by_system(pg_db, bid, state="unbound", event="unbind", reason="grantor_insurance_suspended",
                           platform_id="jiangsu")


def test_a_registry_fact_dated_ahead_does_not_outdate_another_platforms_later_fact(pg_db, family, base):
    """Given an authorized binding
    When Jiangsu posts the grantor with `updated_at` 4 min 50 s ahead of now (inside the 5-minute
    tolerance), and the national platform then posts, dated 30 s ahead, that his insurance has ended
    Then both apply: a fact is held as of no later than its arrival (before, the second was 409 `stale` and
    the binding stayed authorized, paying), and the binding ends with grantor_insurance_ended."""
    fam = family(pg_db, now=base)
    bid = _authorized(pg_db, fam, base)
    now = utcnow()
    ahead = registry(fam, "grantor", balance_fen=5_000, updated_at=(now + timedelta(minutes=4, seconds=50)).isoformat())
    persons.upsert(pg_db, ahead, platform=platforms.get(pg_db, "jiangsu"), now=now)
    assert held(pg_db, fam.grantor).registry_as_of == now
    ended = registry(fam, "grantor", insurance_status="ended", updated_at=(now + timedelta(seconds=30)).isoformat())
    persons.upsert(pg_db, ended, platform=platforms.get(pg_db, "national"), now=now + timedelta(seconds=1))
    assert held(pg_db, fam.grantor).insurance_status == "ended"
    assert_ended_by_system(pg_db, bid, state="unbound", event="unbind", reason="grantor_insurance_ended",
                           platform_id="national")


def test_a_fast_clocks_own_facts_keep_their_order_when_they_arrive_out_of_it(pg_db, family, base):
    """Given Jiangsu's clock 4 minutes fast and an authorized binding
    When Jiangsu's "insurance ended" (dated now+4:30) is applied, and then its older "insurance active"
    (dated now+4:00) arrives late
    Then the older one is `stale` (the times Jiangsu stated order its own facts) and the person stays
    ended; another platform's later fact still applies (dated by when it arrived, not by Jiangsu's clock)."""
    fam = family(pg_db, now=base)
    _authorized(pg_db, fam, base)
    now = utcnow()
    jiangsu = platforms.get(pg_db, "jiangsu")
    ended = registry(fam, "grantor", insurance_status="ended", updated_at=(now + timedelta(minutes=4, seconds=30)).isoformat())
    persons.upsert(pg_db, ended, platform=jiangsu, now=now)
    older = registry(fam, "grantor", insurance_status="active", updated_at=(now + timedelta(minutes=4)).isoformat())
    with pytest.raises(DomainError) as refused:
        persons.upsert(pg_db, older, platform=jiangsu, now=now + timedelta(seconds=30))
    assert refused.value.code == "stale" and held(pg_db, fam.grantor).insurance_status == "ended"
    later = registry(fam, "grantor", insurance_status="active", updated_at=(now + timedelta(seconds=40)).isoformat())
    persons.upsert(pg_db, later, platform=platforms.get(pg_db, "national"), now=now + timedelta(seconds=41))
    assert held(pg_db, fam.grantor).insurance_status == "active"


def test_an_unbind_request_with_a_reason_longer_than_the_apis_is_refused(pg_db, family, base):
    """Given an accepted binding, When a platform's binding.unbind_requested carries a 501-character reason
    (the API's limit is 500), Then its outcome is validation_failed and the binding is unchanged; 500 apply."""
    fam = family(pg_db, now=base)
    bid = accepted(pg_db, fam, now=base)
    asked = {"binding_id": bid, "actor": {"kind": "person", "id_number": fam.grantor}}
    with pytest.raises(DomainError) as err:
        person_events.unbind_requested(pg_db, {**asked, "reason": "不" * 501}, platform=platforms.get(pg_db, "jiangsu"))
    assert err.value.code == "validation_failed" and binding(pg_db, bid).state == "accepted"
    assert person_events.unbind_requested(pg_db, {**asked, "reason": "不" * 500},
                                          platform=platforms.get(pg_db, "jiangsu")) == "unbound"


def test_two_events_creating_the_same_person_at_once_lose_nothing(pg_db, base):
    """Given a person the registry has not sent yet,
    when two person.updated for that person (as of base+1 min and base+2 min) are processed at the same
    moment, and a worker retries whichever lost the insert race (`conflict` is retried, not final),
    then the person ends up with the newer record whatever the interleaving."""
    for n in range(ROUNDS):
        number, name = with_check_digit(f"320102197501{n + 1:02d}777"), "钱多多"
        older = dict(id_number=number, name=name, insurance_type="resident", insurance_status="active",
                     region_code="320100", real_name_verified=True,
                     updated_at=(base + timedelta(minutes=1)).isoformat())
        newer = {**older, "region_code": "320500", "updated_at": (base + timedelta(minutes=2)).isoformat()}
        ids = [deliver(pg_db, "jiangsu", "person.updated", d, sent=base) for d in (older, newer)]

        outcomes = race(*[lambda i=i: webhooks.process(pg_db, i) for i in ids])

        for row_id, o in zip(ids, outcomes):
            if not o.ok:
                assert o.code == "conflict"
                with pg_db() as s:
                    assert s.get(ReceivedWebhook, row_id).processed_at is None  # left for the retry
                webhooks.process(pg_db, row_id)
        got = held(pg_db, number)
        assert (got.region_code, got.registry_as_of) == ("320500", base + timedelta(minutes=2))


@pytest.mark.parametrize("command", ["authorize", "unbind"])
def test_person_deceased_races_the_grantors_command(pg_db, family, base, command):
    """Given an accepted binding and a stored person.deceased about its grantor,
    when the worker applies the death while the grantor authorizes (or unbinds) the same binding,
    then the result is one of the serial orders: the grantor's command first (then the system unbinds an
    authorized binding, or finds it already unbound) or the death first (the command is refused 409-class).
    The binding ends unbound exactly once, its history replays and has one outbox event per version."""
    rng = random.Random(7)
    for _ in range(ROUNDS):
        fam = family(pg_db, now=base)
        bid = accepted(pg_db, fam, now=base)
        row_id = deliver(pg_db, "jiangsu", "person.deceased", {"id_number": fam.grantor},
                         sent=base + timedelta(hours=1))
        run = {"authorize": lambda: commands.authorize(pg_db, bid, person(fam.grantor), 500),
               "unbind": lambda: commands.unbind(pg_db, bid, person(fam.grantor))}[command]
        delay = rng.uniform(0, 0.02)  # the worker's run_once bookkeeping starts it late: vary who goes first

        death, cmd = race(lambda: webhooks.process(pg_db, row_id), lambda: time.sleep(delay) or run())

        assert death.ok and death.value == "applied", death.error
        rows = assert_history_consistent(pg_db, bid)
        events = [(t.event, t.actor_kind) for t in rows][4:]
        assert replay(rows) == "unbound" and binding(pg_db, bid).state == "unbound"
        assert [e for e, _ in events].count("unbind") == 1
        if not cmd.ok:
            assert cmd.code in CONFLICT_CODES, cmd.error
            assert events == [("unbind", "system")]
        elif command == "authorize":
            assert events == [("authorize", "person"), ("unbind", "system")]
            assert rows[-1].reason == "grantor_deceased"
        else:
            assert events == [("unbind", "person")]
        assert held(pg_db, fam.grantor).deceased is True
    with pg_db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Binding).where(Binding.state != "unbound")) == 0


def test_a_webhook_its_data_fails_every_time_ends_after_its_attempts(pg_db):
    """Given a stored `binding.unbind_requested` whose binding id holds a NUL character, past the check that
    refuses it (PostgreSQL's text cannot hold it, so applying it fails in the database every time), when the
    worker runs it again and again, then each run before the last fails (and is retried), and run
    MAX_ATTEMPTS records the final outcome `failed:DataError` and ends it: nothing retries it forever; a run
    after that changes nothing."""
    received = deliver(pg_db, "jiangsu", "binding.unbind_requested",
                       {"binding_id": "bnd_\x00x", "actor": {"kind": "person", "id": "psn_x"}}, sent=utcnow())
    with past_the_character_check():
        for _ in range(webhooks.MAX_ATTEMPTS - 1):
            with pytest.raises(sa.exc.DataError):
                webhooks.process(pg_db, received)
        assert webhooks.process(pg_db, received) == "failed:DataError"
    assert webhooks.process(pg_db, received) == "failed:DataError"
    with pg_db() as s:
        row = s.get(ReceivedWebhook, received)
        assert (row.attempts, row.processed_at is not None) == (webhooks.MAX_ATTEMPTS, True)


def test_the_database_away_never_uses_up_a_webhooks_attempts(pg_db, monkeypatch):
    """Given a stored `person.deceased`, when every run meets the database timing out (OperationalError),
    past MAX_ATTEMPTS runs, then each run fails and is retried, and the webhook is never ended as failed:
    it is applied once the database answers again."""
    received = deliver(pg_db, "national", "person.deceased", {"id_number": with_check_digit("32010219600101001")},
                       sent=utcnow())
    real = webhooks._apply

    def timing_out(db, row):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("canceling statement due to statement timeout"))
    monkeypatch.setattr(webhooks, "_apply", timing_out)
    for _ in range(webhooks.MAX_ATTEMPTS + 2):
        with pytest.raises(sa.exc.OperationalError):
            webhooks.process(pg_db, received)
    monkeypatch.setattr(webhooks, "_apply", real)
    assert webhooks.process(pg_db, received) == "not_found"  # applied: nobody holds that number


def test_a_lock_held_too_long_never_uses_up_a_webhooks_attempts(pg_db, monkeypatch):
    """Given a stored `person.deceased`, when every run meets a binding locked past PostgreSQL's lock_timeout
    (LockTimeout, a 409 conflict to an API caller), past MAX_ATTEMPTS runs, then each run fails and is
    retried, and the webhook is never ended with outcome `conflict`: it is applied once the lock is free."""
    from workflows.errors import LockTimeout
    received = deliver(pg_db, "national", "person.deceased", {"id_number": with_check_digit("32010219600101001")},
                       sent=utcnow())
    real = webhooks._apply

    def locked(db, row):
        raise LockTimeout()
    monkeypatch.setattr(webhooks, "_apply", locked)
    for _ in range(webhooks.MAX_ATTEMPTS + 2):
        with pytest.raises(LockTimeout):
            webhooks.process(pg_db, received)
    monkeypatch.setattr(webhooks, "_apply", real)
    assert webhooks.process(pg_db, received) == "not_found"  # applied: nobody holds that number


def _waiting_for_a_face_check(db, family) -> tuple[str, str]:
    """An invitation with a face verification opened a minute ago (the worker applies webhooks at the wall
    clock, inside the attempt's 10 minutes): (binding, verification)."""
    from workflows import verification
    at = utcnow() - timedelta(minutes=1)
    fam = family(db, now=at)
    bid = invite(db, fam, now=at)["id"]
    return bid, verification.start_verification(db, bid, {"kind": "person", "id_number": fam.beneficiary},
                                                now=at)["verification_id"]


def test_a_verifiers_reason_that_is_not_text_is_refused(pg_db, family):
    """Given a pending face verification, when the verifier's `verification.completed` carries a reason that
    is a number, then its outcome is validation_failed and the attempt stays pending (not a retry loop)."""
    bid, vid = _waiting_for_a_face_check(pg_db, family)
    assert send(pg_db, "facecheck", "verification.completed",
                {"verification_id": vid, "binding_id": bid, "result": "failed", "reason": 123},
                sent=utcnow()) == "validation_failed"
    assert binding(pg_db, bid).state == "invited"


def test_a_passed_face_check_with_a_long_reason_is_applied_with_the_reason_cut(pg_db, family):
    """Given a pending face verification, When the verifier's `verification.completed` says passed with a
    2,000-character reason, Then it is applied (face_verified) and the attempt keeps the first 500
    characters: a refusal would be final, and the passed check lost (the attempt would later time out)."""
    from models import VerificationAttempt
    bid, vid = _waiting_for_a_face_check(pg_db, family)
    assert send(pg_db, "facecheck", "verification.completed",
                {"verification_id": vid, "binding_id": bid, "result": "passed", "reason": "好" * 2000},
                sent=utcnow()) == "passed"
    assert binding(pg_db, bid).state == "face_verified"
    with pg_db() as s:
        assert s.get(VerificationAttempt, vid).reason == "好" * 500


def test_a_fact_applied_late_is_dated_by_its_arrival_not_by_when_a_worker_got_to_it(pg_db, family, base):
    """Given Jiangsu's clock 4 minutes fast and an authorized binding
    When Jiangsu's webhook "insurance active" (dated now+4 min) arrives, then the national platform's
    "insurance ended" is applied, and only then a worker applies Jiangsu's webhook (a retry, a backlog)
    Then Jiangsu's fact is `stale`: it arrived before the national one, so it is held as of its arrival,
    not as of the moment it was applied (which put an ended insurance back to active)."""
    fam = family(pg_db, now=base)
    bid = _authorized(pg_db, fam, base)
    early = deliver(pg_db, "jiangsu", "person.updated",
                    registry(fam, "grantor", updated_at=(utcnow() + timedelta(minutes=4)).isoformat()), sent=utcnow())
    later = utcnow()  # after the arrival of Jiangsu's webhook, before a worker applies it
    persons.upsert(pg_db, registry(fam, "grantor", insurance_status="ended",
                                   updated_at=(later + timedelta(minutes=1)).isoformat()),
                   platform=platforms.get(pg_db, "national"), now=later)
    assert webhooks.process(pg_db, early) == "stale"
    assert held(pg_db, fam.grantor).insurance_status == "ended" and binding(pg_db, bid).state == "unbound"


def test_relationship_ended_waits_for_a_person_event_holding_one_of_the_two(pg_db, family, base):
    """Given spouses bound both ways, and a person event about one of them holding that person's row
    When `relationship.ended` about the two is processed, Then it waits on the persons' lock (every writer
    locks persons before bindings: before, it locked the pair's bindings first and met the person event
    holding them in binding-id order, a deadlock), and once the event commits it ends both bindings."""
    import threading

    from models import Person
    from .support import wait_for_a_lock_wait
    fam, there, back = _spouses_bound_both_ways(pg_db, family, base)
    holder = pg_db()
    holder.execute(sa.select(Person.id).where(Person.id == persons.id_by_number(holder, fam.grantor))
                   .with_for_update()).all()
    out = {}
    t = threading.Thread(target=lambda: out.update(state=person_events.relationship_ended(
        pg_db, {"grantor_id_number": fam.grantor, "beneficiary_id_number": fam.beneficiary},
        platform=platforms.get(pg_db, "jiangsu"))), daemon=True)
    t.start()
    wait_for_a_lock_wait(pg_db, on="persons")
    holder.rollback()
    holder.close()
    t.join(30)
    assert out["state"] == "unbound"
    assert [binding(pg_db, b).state for b in (there, back)] == ["unbound", "rejected"]


def test_a_registry_refresh_without_the_real_name_flag_withdraws_nothing(pg_db, family, base):
    """Given an authorized binding whose grantor is real-name verified
    When a platform posts the grantor again with a new balance and no `real_name_verified` (a balance
    refresh), and a new person without it
    Then the grantor stays verified (absent is unchanged, as `balance_fen`: before, it was false, and the
    grantor silently stopped paying) and the new person is not verified."""
    fam = family(pg_db, now=base)
    _authorized(pg_db, fam, base)
    refresh = {k: v for k, v in registry(fam, "grantor", balance_fen=77_700).items() if k != "real_name_verified"}
    persons.upsert(pg_db, refresh, platform=platforms.get(pg_db, "jiangsu"), now=base + timedelta(minutes=5))
    assert (held(pg_db, fam.grantor).real_name_verified, held(pg_db, fam.grantor).balance_fen) == (True, 77_700)
    number = with_check_digit("32010219900303123")
    persons.upsert(pg_db, dict(id_number=number, name="钱新", insurance_type="employee", insurance_status="active",
                               region_code="320100"), platform=None, now=base)
    assert held(pg_db, number).real_name_verified is False
