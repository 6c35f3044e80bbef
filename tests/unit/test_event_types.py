"""The outbound event each transition sends: the names are API.md's contract ("Outbound events"), which
platforms code against, so each (event, destination) pair of the machine is pinned here by name."""
from __future__ import annotations

from workflows import machine
from workflows.unit import event_type

# API.md "Outbound events" (binding part), plus two additions documented in the README beside the outbound
# events: binding.verification_attempt_failed (a failed attempt that leaves the binding invited) and
# binding.relocated (a binding following its persons to the pooling regions an allowed move took them to)
CONTRACT = {"binding.invited", "binding.verification_requested", "binding.face_verified", "binding.accepted",
            "binding.authorized", "binding.unbound", "binding.declined", "binding.cancelled", "binding.expired",
            "binding.verification_failed", "binding.rejected"}
ADDED = {"binding.verification_attempt_failed", "binding.relocated"}
EXPECTED = {
    ("invite", "invited"): "binding.invited",
    ("invite", "accepted"): "binding.accepted",  # the guardian path
    ("start_verification", "invited"): "binding.verification_requested",
    ("verification_passed", "face_verified"): "binding.face_verified",
    # the identity check in person at a service hall: the same event a passed face check sends (platforms
    # that act on binding.face_verified need no change; the binding's verification_method says in_person)
    ("verify_in_person", "face_verified"): "binding.face_verified",
    ("verification_failed", "invited"): "binding.verification_attempt_failed",
    ("verification_failed", "verification_failed"): "binding.verification_failed",
    ("accept", "accepted"): "binding.accepted",
    ("decline", "declined"): "binding.declined",
    ("cancel", "cancelled"): "binding.cancelled",
    ("expire", "expired"): "binding.expired",
    ("reject", "rejected"): "binding.rejected",
    ("authorize", "authorized"): "binding.authorized",
    ("unbind", "unbound"): "binding.unbound",
    **{("relocate", s): "binding.relocated" for s in ("invited", "face_verified", "accepted", "authorized")},
}


def test_every_transition_of_the_machine_sends_its_contract_name():
    """Given every (event, destination) pair the machine defines
    When its outbound event type is named
    Then it is the one pinned above, and every name is API.md's or the documented addition."""
    pairs = {(t["trigger"], t["dest"]) for t in machine.TRANSITIONS}
    assert pairs == set(EXPECTED)
    assert {pair: event_type(*pair) for pair in pairs} == EXPECTED


def test_every_binding_event_of_the_contract_is_sent_by_some_transition():
    """Given API.md's binding events, Then each is sent by at least one transition (none is dead letter)."""
    assert set(EXPECTED.values()) == CONTRACT | ADDED
