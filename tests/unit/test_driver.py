"""The simulator's driver learning a verification's result from a binding's events (no HTTP here)."""
from __future__ import annotations

import queue

import pytest

from workers.simulator.families import FAILED, RETRY, VERIFIED, Driver


def heard(*topics: str) -> queue.SimpleQueue:
    q = queue.SimpleQueue()
    for topic in topics:
        q.put(topic)
    return q


@pytest.mark.parametrize("topics, state", [
    (("binding.invited", "binding.verification_requested", VERIFIED), "face_verified"),
    (("binding.verification_requested", RETRY), "invited"),
    ((FAILED,), "verification_failed"),
])
def test_the_first_result_event_decides_the_state_after_the_attempt(topics, state):
    """Given the events a platform received for a binding under verification
    When the driver waits for the attempt's result
    Then earlier events are skipped and the first result names the state: face_verified, invited (another
    attempt may start) or verification_failed."""
    assert Driver("http://127.0.0.1:9", "k")._result_event(heard(*topics)) == state


def test_no_result_in_time_is_an_error_not_a_hang():
    """Given a driver with a short timeout and a binding whose result never arrives
    When it waits
    Then it raises, naming the likely cause."""
    with pytest.raises(RuntimeError, match="no verification result in time"):
        Driver("http://127.0.0.1:9", "k", timeout_s=0.05)._result_event(heard("binding.invited"))
