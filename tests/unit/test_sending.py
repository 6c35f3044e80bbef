"""One `deliver` message trying a delivery and the successors its acknowledgement releases
(`workers/sending.py`), with the database and HTTP replaced by recorders."""
from __future__ import annotations

from types import SimpleNamespace

from workers import sending


def test_an_acknowledgement_s_released_successors_are_sent_in_the_same_call_within_the_budget(monkeypatch):
    """Given deliveries 1 → 2 → 3, each acknowledgement releasing the next, and delivery 9 no longer due
    When deliver_now(1) runs with a budget that is spent after two tries, and deliver_now(9) runs
    Then 1 and 2 are posted and recorded, 3 goes on to `rest`, and 9 is neither posted nor recorded."""
    posted, recorded_ids, rest, clock = [], [], [], iter([0.0, 1.0, 99.0, 99.0])
    monkeypatch.setattr(sending, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(sending.runtime, "db", lambda: "db")
    monkeypatch.setattr(sending.deliveries, "claim", lambda db, i: None if i == 9 else SimpleNamespace(
        id=i, url="http://platform", secrets=("s",), event_id=f"evt_{i}", payload={}))
    monkeypatch.setattr(sending.outbound, "post_signed", lambda url, secrets, event_id, payload: (
        posted.append(event_id) or SimpleNamespace(status_code=200, error=None, duration_ms=1)))

    def record(db, claim, **answer):
        recorded_ids.append(claim.id)
        return [claim.id + 1]
    monkeypatch.setattr(sending.deliveries, "record", record)
    sending.deliver_now(1, rest=rest.append, budget_s=30)
    sending.deliver_now(9, rest=rest.append, budget_s=30)
    assert posted == ["evt_1", "evt_2"] and recorded_ids == [1, 2] and rest == [3]
