"""An outbound event as it leaves (`deliveries.as_sent`): no member of the bureau's staff is named to a
platform, also in an event stored before operators went unnamed and sent again (a retry, a replay)."""
from __future__ import annotations

from workflows.deliveries import as_sent


def _event(actor: dict) -> dict:
    return {"type": "binding.expired", "id": "evt_1", "created_at": "2026-11-25T00:00:00+00:00",
            "data": {"binding": {"id": "bnd_1", "version": 3},
                     "transition": {"event": "expire", "from": "invited", "to": "expired", "actor": actor,
                                    "reason": "市民要求"}}}


def test_an_operator_stored_by_name_leaves_unnamed_and_the_stored_event_is_untouched():
    """Given an event stored with {kind: operator, id: zhang}, When it is sent, Then the body names an operator
    without an id, everything else as stored; the stored payload itself is not changed."""
    stored = _event({"kind": "operator", "id": "zhang"})
    sent = as_sent(stored)
    assert sent["data"]["transition"]["actor"] == {"kind": "operator", "id": None}
    assert {**sent, "data": {**sent["data"], "transition": {**sent["data"]["transition"], "actor": None}}} == \
        {**stored, "data": {**stored["data"], "transition": {**stored["data"]["transition"], "actor": None}}}
    assert stored["data"]["transition"]["actor"] == {"kind": "operator", "id": "zhang"}


def test_other_actors_and_events_without_a_transition_leave_as_stored():
    """Given events of a person, the system and a verifier, and a settlement event (no transition), When sent,
    Then each is the stored payload itself."""
    for actor in ({"kind": "person", "id": "psn_1"}, {"kind": "system", "id": "timer"},
                  {"kind": "verifier", "id": "facecheck"}, {"kind": "operator", "id": None}):
        stored = _event(actor)
        assert as_sent(stored) is stored
    settlement = {"type": "settlement.completed", "id": "evt_2", "data": {"settlement": {"id": "stl_1"}}}
    assert as_sent(settlement) is settlement
