"""The worker's local senders (`workers/sending.py`), with the database and HTTP replaced by recorders:
what is sent here, what goes on to other processes, and the successor sent in the same thread."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from workers import sending


@pytest.fixture
def recorded(monkeypatch):
    """deliver_now replaced: records ids; blocks on `gate` while it is not set."""
    state = SimpleNamespace(sent=[], started=threading.Event(), gate=threading.Event(), done=threading.Semaphore(0))

    def deliver_now(delivery_id):
        state.started.set()
        assert state.gate.wait(10)
        if delivery_id == 13:
            raise RuntimeError("database gone")
        state.sent.append(delivery_id)
        state.done.release()
    monkeypatch.setattr(sending, "deliver_now", deliver_now)
    return state


def test_a_full_backlog_hands_further_ids_to_other_processes(recorded):
    """Given one sender thread busy with delivery 1 (its platform is slow) and room for two more waiting
    When ids 2..5 are submitted
    Then 2 and 3 wait here and 4 and 5 go on as `deliver` messages; once the platform answers, 1..3 are sent
    here in order."""
    elsewhere = []
    senders = sending.Senders(elsewhere.append, threads=1, backlog=2)
    senders.submit([1])
    assert recorded.started.wait(10)
    senders.submit([2, 3, 4, 5])
    assert elsewhere == [4, 5]
    recorded.gate.set()
    for _ in range(3):
        assert recorded.done.acquire(timeout=10)
    assert recorded.sent == [1, 2, 3] and len(senders._started) == 1


def test_a_failing_delivery_does_not_stop_the_sender(recorded):
    """Given a sender whose try of delivery 13 raises (the database went away)
    When 13 and then 14 are submitted
    Then 14 is still sent by the same thread (13 stays due in its row for the scheduler's pass)."""
    recorded.gate.set()
    senders = sending.Senders(lambda _id: pytest.fail("nothing overflows"), threads=1, backlog=8)
    senders.submit([13, 14])
    assert recorded.done.acquire(timeout=10)
    assert recorded.sent == [14]


def test_an_acknowledgement_s_released_successor_is_sent_in_the_same_call(monkeypatch):
    """Given delivery 1 whose acknowledgement releases delivery 2, and delivery 3 that is no longer due
    When deliver_now(1) and deliver_now(3) run
    Then 1 and then 2 are posted and recorded, and 3 is neither posted nor recorded."""
    posted, recorded_ids = [], []
    monkeypatch.setattr(sending.runtime, "db", lambda: "db")
    monkeypatch.setattr(sending.deliveries, "claim", lambda db, i: None if i == 3 else SimpleNamespace(
        id=i, url="http://platform", secrets=("s",), event_id=f"evt_{i}", payload={}))
    monkeypatch.setattr(sending.outbound, "post_signed", lambda url, secrets, event_id, payload: (
        posted.append(event_id) or SimpleNamespace(status_code=200, error=None, duration_ms=1)))

    def record(db, claim, **answer):
        recorded_ids.append(claim.id)
        return [2] if claim.id == 1 else []
    monkeypatch.setattr(sending.deliveries, "record", record)
    sending.deliver_now(1)
    sending.deliver_now(3)
    assert posted == ["evt_1", "evt_2"] and recorded_ids == [1, 2]
