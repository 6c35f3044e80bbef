"""Stateful property test of the binding history (DESIGN §2: every accepted transition appends one history
record; a refused event changes nothing; terminal means terminal; history replays to the current state).

One plain row is driven through random events (with random deciding facts) via machine.fire."""
from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from workflows import machine
from workflows.errors import DomainError

DESIGN_TERMINAL = {"unbound", "declined", "cancelled", "expired", "verification_failed", "rejected"}


class Record(NamedTuple):
    from_state: str
    to_state: str
    event: str


def facts_for(event: str, guardian: bool, attempts_exhausted: bool) -> dict:
    """The deciding fact of an event, where it has one."""
    if event == "invite":
        return {"guardian": guardian}
    if event == "verification_failed":
        return {"attempts_exhausted": attempts_exhausted}
    return {}


def facts_from_record(record: Record) -> dict:
    """The facts that lead `record.event` to `record.to_state` (what a replay passes in again)."""
    if record.event == "invite":
        return {"guardian": record.to_state == "accepted"}
    if record.event == "verification_failed":
        return {"attempts_exhausted": record.to_state == "verification_failed"}
    return {}


class BindingHistory(RuleBasedStateMachine):
    """Given one binding row starting at `new`, when random events are fired at it, then the history it
    accumulates (one record per accepted event) stays consistent with the row and with the machine."""

    def __init__(self):
        super().__init__()
        self.row = SimpleNamespace(state=machine.NEW)
        self.history: list[Record] = []
        self.length_at_terminal: int | None = None
        self.refused = 0

    @rule(event=st.sampled_from(machine.EVENTS), guardian=st.booleans(), attempts_exhausted=st.booleans())
    def fire_event(self, event, guardian, attempts_exhausted):
        """When an event is fired: accepted → exactly one record appended whose from/to are what fire
        returned; refused → illegal_transition, state and history unchanged (always so when terminal)."""
        before_state, before_len = self.row.state, len(self.history)
        try:
            frm, to = machine.fire(self.row, event, **facts_for(event, guardian, attempts_exhausted))
        except DomainError as err:
            assert err.code == "illegal_transition"
            assert self.row.state == before_state
            assert len(self.history) == before_len
            self.refused += 1
            return
        assert before_state not in DESIGN_TERMINAL, f"{event} accepted in terminal state {before_state}"
        assert frm == before_state and to == self.row.state
        self.history.append(Record(frm, to, event))
        if to in DESIGN_TERMINAL and self.length_at_terminal is None:
            self.length_at_terminal = len(self.history)

    @precondition(lambda self: self.row.state not in DESIGN_TERMINAL)
    @rule()
    def fire_an_allowed_event(self):
        """When the first event the machine allows in the current state is fired, then it is accepted (so
        runs reach deep states more often than random events alone would)."""
        event = next(e for e in machine.EVENTS if machine.allowed(self.row.state, e))
        self.fire_event(event, guardian=False, attempts_exhausted=False)

    @invariant()
    def row_is_clean(self):
        """Then the row carries only its state (no trigger attributes left by the shared machine)."""
        assert vars(self.row) == {"state": self.row.state}

    @invariant()
    def history_is_a_chain(self):
        """Then record k's `to` is record k+1's `from`, the first record starts at `new`, and the last ends
        at the row's state."""
        if not self.history:
            assert self.row.state == machine.NEW
            return
        assert self.history[0].from_state == machine.NEW
        for a, b in zip(self.history, self.history[1:]):
            assert a.to_state == b.from_state
        assert self.history[-1].to_state == self.row.state

    @invariant()
    def replay_yields_current_state(self):
        """Then replaying the history from `new` through the same machine (with the facts each recorded
        destination implies) reproduces every record and ends in the row's current state."""
        replay = SimpleNamespace(state=machine.NEW)
        for record in self.history:
            assert machine.fire(replay, record.event, **facts_from_record(record)) == (record.from_state,
                                                                                       record.to_state)
        assert replay.state == self.row.state

    @invariant()
    def terminal_is_terminal(self):
        """Then once a terminal state was reached nothing more was appended, and no terminal state appears
        anywhere but in the last record."""
        if self.length_at_terminal is not None:
            assert len(self.history) == self.length_at_terminal
            assert self.row.state in DESIGN_TERMINAL
        assert all(r.to_state not in DESIGN_TERMINAL for r in self.history[:-1])
        assert all(r.from_state not in DESIGN_TERMINAL for r in self.history)


BindingHistory.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                            database=None)
TestBindingHistory = BindingHistory.TestCase
