"""Unit tests for workflows.machine (DESIGN §2): the full (state × event) table, the shared Machine's hygiene
and its thread-safety.

The expected table below is transcribed by hand from DESIGN §2; it is deliberately NOT derived from
machine.TRANSITIONS, so a wrong transition in the code fails here."""
from __future__ import annotations

import random
import sys
import threading
from types import SimpleNamespace

import pytest

from workflows import machine
from workflows.errors import DomainError
from workflows.rules import check_actor

# --- DESIGN §2, by hand ---------------------------------------------------------------------------------

DESIGN_STATES = ["new", "invited", "face_verified", "accepted", "authorized",
                 "unbound", "declined", "cancelled", "expired", "verification_failed", "rejected"]
DESIGN_TERMINAL = {"unbound", "declined", "cancelled", "expired", "verification_failed", "rejected"}
DESIGN_EVENTS = ["invite", "start_verification", "verification_passed", "verification_failed", "accept",
                 "decline", "cancel", "expire", "reject", "authorize", "unbind",
                 "relocate",  # Gongji's addition (README "The workflow"): a binding follows an allowed move
                 "verify_in_person"]  # Gongji's addition: a service hall checked identity in person

# (state, event) -> destination. A dict value means the destination depends on one boolean fact:
# {"fact": name, True: dest_if_set, False: dest_otherwise}. Pairs absent from this table are refused.
EXPECTED: dict[tuple[str, str], str | dict] = {
    ("new", "invite"): {"fact": "guardian", True: "accepted", False: "invited"},
    ("invited", "start_verification"): "invited",
    ("invited", "verification_passed"): "face_verified",
    ("invited", "verify_in_person"): "face_verified",
    ("invited", "verification_failed"): {"fact": "attempts_exhausted", True: "verification_failed",
                                         False: "invited"},
    ("face_verified", "accept"): "accepted",
    ("invited", "decline"): "declined",
    ("face_verified", "decline"): "declined",
    ("invited", "cancel"): "cancelled",
    ("face_verified", "cancel"): "cancelled",
    ("invited", "expire"): "expired",
    ("face_verified", "expire"): "expired",
    ("invited", "reject"): "rejected",
    ("face_verified", "reject"): "rejected",
    ("accepted", "authorize"): "authorized",
    ("authorized", "authorize"): "authorized",
    ("accepted", "unbind"): "unbound",
    ("authorized", "unbind"): "unbound",
    ("invited", "relocate"): "invited",
    ("face_verified", "relocate"): "face_verified",
    ("accepted", "relocate"): "accepted",
    ("authorized", "relocate"): "authorized",
}

# who may fire it (DESIGN §2 last column and §3 not_your_binding): roles or actor kinds
DESIGN_ROLES = {
    "invite": {"grantor"},
    "start_verification": {"beneficiary"},
    "verification_passed": {"verifier"},
    "verification_failed": {"verifier", "system"},   # the verifier, or the timer
    "accept": {"beneficiary"},
    "decline": {"beneficiary"},
    "cancel": {"grantor"},
    "expire": {"system", "operator"},                # the timer, an operator
    "reject": {"system"},
    "authorize": {"grantor"},
    "unbind": {"grantor", "beneficiary", "operator", "system"},
    "relocate": {"system"},                          # a registry fact, applied by the system
    "verify_in_person": {"staff", "operator"},       # a service hall's staff, or an operator for them
}
ALL_ROLES = ["grantor", "beneficiary", "stranger", "operator", "system", "verifier", "staff"]

PAIRS = [(s, e) for s in DESIGN_STATES for e in DESIGN_EVENTS]


def row_in(state: str) -> SimpleNamespace:
    return SimpleNamespace(state=state)


# --- the vocabulary matches DESIGN ------------------------------------------------------------------------

def test_states_events_and_terminal_set_match_design():
    """Given DESIGN §2, when the machine's vocabulary is compared, then states, events, terminal states and
    the active states (non-terminal, not `new`) are exactly the documented ones."""
    assert list(machine.STATES) == DESIGN_STATES
    assert set(machine.EVENTS) == set(DESIGN_EVENTS) and len(machine.EVENTS) == len(DESIGN_EVENTS)
    assert set(machine.TERMINAL) == DESIGN_TERMINAL
    assert set(machine.ACTIVE) == set(DESIGN_STATES) - DESIGN_TERMINAL - {"new"}
    assert set(machine.MACHINE.states) == set(DESIGN_STATES)
    assert set(machine.MACHINE.events) == set(DESIGN_EVENTS)


# --- the full table ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("state, event", PAIRS, ids=[f"{s}-{e}" for s, e in PAIRS])
def test_state_event_table(state, event):
    """Given a row in `state`, when `event` is fired (with each value of its deciding fact, and with
    irrelevant facts set), then the row moves to DESIGN's destination; or, for a pair DESIGN does not list,
    DomainError illegal_transition (409) is raised and the row is left exactly as it was."""
    expected = EXPECTED.get((state, event))
    if expected is None:
        assert machine.allowed(state, event) is False
        assert state not in machine.sources(event)
        for facts in ({}, {"guardian": True}, {"attempts_exhausted": True}):
            row = row_in(state)
            with pytest.raises(DomainError) as info:
                machine.fire(row, event, **facts)
            assert info.value.code == "illegal_transition"
            assert info.value.status == 409
            assert row.state == state
            assert vars(row) == {"state": state}
        return

    assert machine.allowed(state, event) is True
    assert state in machine.sources(event)
    if isinstance(expected, dict):
        fact = expected["fact"]
        cases = [({fact: True}, expected[True]), ({fact: False}, expected[False]), ({}, expected[False]),
                 ({fact: 1}, expected[True]), ({fact: None}, expected[False])]
    else:
        # facts that decide other events must not change this one's destination
        cases = [({}, expected), ({"guardian": True}, expected), ({"attempts_exhausted": True}, expected),
                 ({"guardian": True, "attempts_exhausted": True}, expected)]
    for facts, dest in cases:
        row = row_in(state)
        assert machine.fire(row, event, **facts) == (state, dest), facts
        assert row.state == dest
        assert vars(row) == {"state": dest}


def test_expected_table_covers_exactly_the_machine_sources():
    """Given the hand-written table, when compared event by event with machine.sources(),
    then the source sets are equal (no extra back door in the code, no missing transition)."""
    for event in DESIGN_EVENTS:
        design_sources = {s for (s, e) in EXPECTED if e == event}
        assert machine.sources(event) == frozenset(design_sources), event


@pytest.mark.parametrize("state", sorted(DESIGN_TERMINAL))
def test_terminal_states_allow_nothing(state):
    """Given a terminal state, when every event is asked, then none is allowed and sources never include it."""
    assert [e for e in DESIGN_EVENTS if machine.allowed(state, e)] == []
    assert all(state not in machine.sources(e) for e in DESIGN_EVENTS)


@pytest.mark.parametrize("event", ["retry", "to_unbound", "to_invited", "trigger", "", "INVITE"])
def test_unknown_events_are_illegal(event):
    """Given an active row, when an event name that is not in the table is fired (including what would be
    an auto transition), then illegal_transition and the row is unchanged."""
    row = row_in("accepted")
    assert machine.allowed("accepted", event) is False
    with pytest.raises(DomainError) as info:
        machine.fire(row, event)
    assert info.value.code == "illegal_transition"
    assert vars(row) == {"state": "accepted"}


def test_unknown_state_is_refused_without_touching_the_row():
    """Given a row in a state the machine does not know, when any event is fired, then illegal_transition
    and the row still holds its (unknown) state."""
    row = row_in("bogus")
    with pytest.raises(DomainError) as info:
        machine.fire(row, "unbind")
    assert info.value.code == "illegal_transition"
    assert vars(row) == {"state": "bogus"}


def test_refusal_message_names_event_and_state():
    """Given an authorized row, when accept is fired, then the refusal detail names the event and the state."""
    with pytest.raises(DomainError) as info:
        machine.fire(row_in("authorized"), "accept")
    assert "accept" in info.value.detail and "authorized" in info.value.detail


# --- shared machine hygiene ------------------------------------------------------------------------------

class ProbeRow:
    """A plain row that records its attribute names each time `state` is assigned (i.e. while bound to the
    machine, during the transition)."""

    def __init__(self, state):
        object.__setattr__(self, "seen", [])
        object.__setattr__(self, "state", state)

    def __setattr__(self, name, value):
        if name == "state":
            self.seen.append(set(dir(self)))
        object.__setattr__(self, name, value)


def test_no_auto_transitions_even_while_bound():
    """Given the shared machine, when a row is fired, then the machine has auto_transitions off, has no
    `to_<state>` event, and at no point during the fire did the row carry a `to_<state>` attribute (while
    it did carry `trigger`, so the probe works; per-event conveniences are not bound at all)."""
    assert machine.MACHINE.auto_transitions is False
    assert [e for e in machine.MACHINE.events if e.startswith("to_")] == []
    row = ProbeRow("accepted")
    assert machine.fire(row, "unbind") == ("accepted", "unbound")
    assert row.seen, "the probe saw no state assignment"
    bound = set().union(*row.seen)
    assert "trigger" in bound and "unbind" not in bound and "is_accepted" not in bound
    assert [a for a in bound if a.startswith("to_")] == []
    assert not hasattr(row, "to_unbound") and not hasattr(row, "to_invited")


@pytest.mark.parametrize("state, event, facts", [
    ("new", "invite", {}),
    ("new", "invite", {"guardian": True}),
    ("invited", "verification_failed", {"attempts_exhausted": True}),
    ("face_verified", "accept", {}),
    ("accepted", "unbind", {}),
])
def test_fire_leaves_no_trigger_attributes_on_the_row(state, event, facts):
    """Given a plain row, when fired, then afterwards vars(row) is exactly {"state": new_state}: no trigger,
    may_*, is_* or event methods are left behind."""
    row = row_in(state)
    _, dest = machine.fire(row, event, **facts)
    assert vars(row) == {"state": dest}
    for leftover in ("trigger", "may_trigger", event, f"may_{event}", f"is_{dest}"):
        assert not hasattr(row, leftover)


def test_fire_keeps_the_rows_own_attributes():
    """Given a row with its own attributes, when fired, then those attributes are untouched and only
    `state` changed."""
    row = SimpleNamespace(state="accepted", id="bnd_1", version=3, authorized_amount_fen=None)
    machine.fire(row, "authorize")
    assert vars(row) == {"state": "authorized", "id": "bnd_1", "version": 3, "authorized_amount_fen": None}


def test_fire_does_not_grow_the_shared_model_list():
    """Given the shared MACHINE (created with model=None, so it holds no model of its own), when rows are
    fired — accepted and refused — then its model list is the same length (and contents) as before."""
    before = list(machine.MACHINE.models)
    assert machine.MACHINE not in before
    machine.fire(row_in("new"), "invite")
    machine.fire(row_in("invited"), "verification_failed", attempts_exhausted=True)
    with pytest.raises(DomainError):
        machine.fire(row_in("unbound"), "unbind")
    assert machine.MACHINE.models == before
    assert len(machine.MACHINE.models) == len(before)


def test_same_row_can_be_fired_again():
    """Given a row walked through the main line one fire at a time, when each event is fired, then each
    returns (from, to) and the row ends unbound (the row is re-bound cleanly every time)."""
    row = row_in("new")
    steps = [("invite", {}), ("start_verification", {}), ("verification_failed", {}),
             ("verification_passed", {}), ("accept", {}), ("authorize", {}), ("authorize", {}), ("unbind", {})]
    got = [machine.fire(row, event, **facts) for event, facts in steps]
    assert got == [("new", "invited"), ("invited", "invited"), ("invited", "invited"),
                   ("invited", "face_verified"), ("face_verified", "accepted"), ("accepted", "authorized"),
                   ("authorized", "authorized"), ("authorized", "unbound")]
    assert vars(row) == {"state": "unbound"}


# --- who may fire what ------------------------------------------------------------------------------------

def test_event_roles_has_an_entry_for_every_event():
    """Given EVENT_ROLES, when compared with the events, then every event has a non-empty role set."""
    assert set(machine.EVENT_ROLES) == set(machine.EVENTS)
    assert all(machine.EVENT_ROLES[e] for e in machine.EVENTS)


@pytest.mark.parametrize("event", DESIGN_EVENTS)
def test_event_roles_match_design(event):
    """Given DESIGN §2's 'who may fire it' column, when EVENT_ROLES is read, then it is the same set."""
    assert set(machine.EVENT_ROLES[event]) == DESIGN_ROLES[event]


@pytest.mark.parametrize("event", DESIGN_EVENTS)
@pytest.mark.parametrize("role", ALL_ROLES)
def test_check_actor_with_event_roles(event, role):
    """Given a role and an event (with a reason), when check_actor is called with EVENT_ROLES[event], then it
    passes iff DESIGN lets that role fire the event, and refuses with not_your_binding otherwise."""
    if role in DESIGN_ROLES[event]:
        assert check_actor(event, role, machine.EVENT_ROLES[event], "a reason") is None
    else:
        with pytest.raises(DomainError) as info:
            check_actor(event, role, machine.EVENT_ROLES[event], "a reason")
        assert info.value.code == "not_your_binding"


# --- thread-safety of the shared machine ----------------------------------------------------------------

# scripted paths (event, facts) and the state each must end in, per DESIGN §2
PATHS = [
    ([("invite", {})], "invited"),
    ([("invite", {"guardian": True})], "accepted"),
    ([("invite", {}), ("verification_failed", {}), ("verification_failed", {}),
      ("verification_failed", {"attempts_exhausted": True})], "verification_failed"),
    ([("invite", {}), ("start_verification", {}), ("verification_passed", {}), ("accept", {}),
      ("authorize", {}), ("authorize", {}), ("unbind", {})], "unbound"),
    ([("invite", {}), ("verification_passed", {}), ("decline", {})], "declined"),
    ([("invite", {}), ("cancel", {})], "cancelled"),
    ([("invite", {}), ("verification_passed", {}), ("expire", {})], "expired"),
    ([("invite", {}), ("reject", {})], "rejected"),
    ([("invite", {"guardian": True}), ("authorize", {})], "authorized"),
]


def test_concurrent_fires_on_distinct_rows_all_end_correctly():
    """Given 16 threads, each driving 60 of its own plain rows along scripted paths (with an illegal event
    thrown in now and then), started together and with a tiny switch interval to force interleaving,
    when they all run, then no thread errs, every row ends in its path's expected state with no leftover
    attributes, every illegal event was refused, and the shared machine holds no extra model."""
    threads_n, rows_per_thread = 16, 60
    models_before = len(machine.MACHINE.models)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    results: list[list[tuple[SimpleNamespace, str]]] = [[] for _ in range(threads_n)]
    refusals = [0] * threads_n

    def work(k: int) -> None:
        rnd = random.Random(k)
        try:
            barrier.wait()
            for _ in range(rows_per_thread):
                path, final = PATHS[rnd.randrange(len(PATHS))]
                row = row_in("new")
                for event, facts in path:
                    if rnd.random() < 0.2:
                        try:
                            machine.fire(row, "accept" if row.state != "face_verified" else "invite")
                        except DomainError as err:
                            assert err.code == "illegal_transition"
                            refusals[k] += 1
                    machine.fire(row, event, **facts)
                results[k].append((row, final))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(old_interval)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    done = [pair for per_thread in results for pair in per_thread]
    assert len(done) == threads_n * rows_per_thread
    wrong = [(row.state, final) for row, final in done if row.state != final]
    assert wrong == []
    assert all(vars(row) == {"state": final} for row, final in done)
    assert sum(refusals) > 0
    assert len(machine.MACHINE.models) == models_before


def test_a_transition_writes_no_log_line_at_info(caplog):
    """Given logging at INFO (the worker's, `gongji serve`'s)
    When a binding moves from accepted to unbound
    Then the transitions library logs nothing (it used to narrate two callbacks a transition)."""
    import logging
    caplog.set_level(logging.INFO)
    row = SimpleNamespace(state="accepted")
    assert machine.fire(row, "unbind") == ("accepted", "unbound")
    assert [r for r in caplog.records if r.name.startswith("transitions")] == []


@pytest.mark.parametrize("state", ["invited", "face_verified"])
def test_unbinding_a_pending_invitation_says_what_to_do_instead(state):
    """Given a pending invitation (the guides call every ending 解绑, so a platform's one button may send
    unbind), when unbind is fired, then 409 illegal_transition whose detail points to cancel and decline;
    an unbind refused in a terminal state carries no such hint."""
    with pytest.raises(DomainError) as info:
        machine.fire(row_in(state), "unbind")
    assert info.value.code == "illegal_transition"
    assert "cancelled by the grantor or declined by the beneficiary" in info.value.detail
    with pytest.raises(DomainError) as info:
        machine.fire(row_in("unbound"), "unbind")
    assert info.value.detail == "unbind is not possible in state unbound"
