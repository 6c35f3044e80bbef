"""The worker's local senders (`workers/sending.py`), with the database and HTTP replaced by recorders:
what is sent here, what goes on to other processes, the successor sent in the same call, the stop."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from workers import sending


@pytest.fixture
def recorded(monkeypatch):
    """deliver_now replaced: records ids; blocks on `gate` while it is not set; id 13 raises."""
    state = SimpleNamespace(sent=[], started=threading.Event(), gate=threading.Event(), done=threading.Semaphore(0))

    def deliver_now(delivery_id, rest=None):
        state.started.set()
        assert state.gate.wait(10)
        if delivery_id == 13:
            raise RuntimeError("database gone")
        state.sent.append(delivery_id)
        state.done.release()
    monkeypatch.setattr(sending, "deliver_now", deliver_now)
    return state


def test_with_every_sender_busy_further_ids_go_to_other_processes(recorded):
    """Given one sender thread busy with delivery 1 (its platform is slow to answer)
    When ids 2 and 3 are submitted
    Then both go on as `deliver` messages at once (nothing queues behind the slow platform here); once the
    platform answers, the thread is idle again and the next id is sent here."""
    elsewhere = []
    senders = sending.Senders(elsewhere.append, threads=1)
    senders.submit([1])
    assert recorded.started.wait(10)
    senders.submit([2, 3])
    assert elsewhere == [2, 3]
    recorded.gate.set()
    assert recorded.done.acquire(timeout=10)
    senders.submit([4])
    assert recorded.done.acquire(timeout=10)
    assert recorded.sent == [1, 4] and elsewhere == [2, 3] and len(senders._started) == 1


def test_a_failing_delivery_does_not_stop_the_sender(recorded):
    """Given a sender whose try of delivery 13 raises (the database went away)
    When 13 and then 14 are submitted
    Then 14 is still sent by the same thread (13 stays due in its row for the scheduler's pass)."""
    recorded.gate.set()
    senders = sending.Senders(lambda _id: pytest.fail("nothing overflows"), threads=1)
    senders.submit([13])
    senders.stop()  # waits for 13's try to end
    senders.submit([14])
    assert recorded.done.acquire(timeout=10)
    assert recorded.sent == [14]


def test_at_a_stop_the_tries_in_flight_finish_and_new_ids_go_elsewhere(recorded):
    """Given a sender in the middle of a try
    When the worker stops (`StopSenders`) and an id is submitted during the stop
    Then that id goes on as a message, the try in flight is finished before the stop returns, and the
    thread has ended."""
    elsewhere = []
    senders = sending.Senders(elsewhere.append, threads=2)
    senders.submit([1])
    assert recorded.started.wait(10)
    thread = senders._started[0]
    stopping = threading.Thread(target=sending.StopSenders().before_worker_shutdown, args=(None, None))
    stopping.start()
    while not senders._stopping:
        pass
    senders.submit([2])
    recorded.gate.set()
    stopping.join(10)
    assert elsewhere == [2] and recorded.sent == [1] and not thread.is_alive()


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
