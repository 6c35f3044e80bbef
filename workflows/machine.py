"""The binding state machine (DESIGN §2): one `transitions.Machine` definition shared by every binding.

A command adds the ORM row with `initial=row.state`, fires one trigger, and removes the row again, so
the machine never holds more than the rows in flight. `auto_transitions=False` (no `to_<state>` back
doors) and invalid triggers raise. Destinations that depend on facts (guardian path, attempts used up)
are conditions on keyword arguments the command passes in; the machine itself does no I/O."""
from __future__ import annotations

import logging
import threading

from transitions import Machine, MachineError

from .errors import DomainError

# the library narrates every state's enter and exit callbacks at INFO: two log lines a transition in every
# process whose logging is at INFO (the worker's, `gongji serve`'s), noise beside the history table, which
# is the record of transitions. Its warnings and errors still show.
logging.getLogger("transitions").setLevel(logging.WARNING)

NEW = "new"  # the pseudo-state of a row being created; never stored
STATES = ["new", "invited", "face_verified", "accepted", "authorized",
          "unbound", "declined", "cancelled", "expired", "verification_failed", "rejected"]
TERMINAL = frozenset({"unbound", "declined", "cancelled", "expired", "verification_failed", "rejected"})
ACTIVE_ORDER = ("invited", "face_verified", "accepted", "authorized")
ACTIVE = frozenset(ACTIVE_ORDER)
PENDING = ("invited", "face_verified")
LIVE = ("accepted", "authorized")


def _flag(name):
    def check(event_data) -> bool:
        return bool(event_data.kwargs.get(name))
    check.__name__ = name
    return check


TRANSITIONS = [
    {"trigger": "invite", "source": NEW, "dest": "accepted", "conditions": _flag("guardian")},
    {"trigger": "invite", "source": NEW, "dest": "invited"},
    {"trigger": "start_verification", "source": "invited", "dest": "invited"},
    {"trigger": "verification_passed", "source": "invited", "dest": "face_verified"},
    # Gongji's addition to DESIGN §2: the service hall's staff checked the relative's identity documents in
    # person, where both regions' policies allow it (in_person.py); instead of the face check in an app
    {"trigger": "verify_in_person", "source": "invited", "dest": "face_verified"},
    {"trigger": "verification_failed", "source": "invited", "dest": "verification_failed",
     "conditions": _flag("attempts_exhausted")},
    {"trigger": "verification_failed", "source": "invited", "dest": "invited"},
    {"trigger": "accept", "source": "face_verified", "dest": "accepted"},
    {"trigger": "decline", "source": list(PENDING), "dest": "declined"},
    {"trigger": "cancel", "source": list(PENDING), "dest": "cancelled"},
    {"trigger": "expire", "source": list(PENDING), "dest": "expired"},
    {"trigger": "reject", "source": list(PENDING), "dest": "rejected"},
    {"trigger": "authorize", "source": list(LIVE), "dest": "authorized"},
    {"trigger": "unbind", "source": list(LIVE), "dest": "unbound"},
    # Gongji's addition to DESIGN §2: a person moved to a pooling region the policy allows, and the binding
    # follows (its regions change, its state does not; person_events.relocate)
    *({"trigger": "relocate", "source": s, "dest": s} for s in ACTIVE_ORDER),
]
EVENTS = tuple(dict.fromkeys(t["trigger"] for t in TRANSITIONS))

# who may fire which event: a person's role in the binding, or the actor kind (DESIGN §3)
EVENT_ROLES: dict[str, frozenset[str]] = {
    "invite": frozenset({"grantor"}),
    "start_verification": frozenset({"beneficiary"}),
    "verification_passed": frozenset({"verifier"}),
    "verify_in_person": frozenset({"staff", "operator"}),
    "verification_failed": frozenset({"verifier", "system"}),
    "accept": frozenset({"beneficiary"}),
    "decline": frozenset({"beneficiary"}),
    "cancel": frozenset({"grantor"}),
    "expire": frozenset({"system", "operator"}),
    "reject": frozenset({"system"}),
    "authorize": frozenset({"grantor"}),
    "unbind": frozenset({"grantor", "beneficiary", "operator", "system"}),
    "relocate": frozenset({"system"}),
}

class _SharedMachine(Machine):
    """The library's Machine, binding only `trigger` (and `may_trigger`) to a model in flight.

    `add_model` would also bind a method per event, a `may_<event>` per event and an `is_<state>` per
    state: 33 attributes set and deleted again for every command (~30 µs of its ~300 µs of client CPU,
    bench/transitions.py). Commands only ever call `row.trigger(event)`, which goes through the same
    `Event.trigger` those conveniences wrap."""

    def _add_trigger_to_model(self, trigger, model):
        pass

    def _add_model_to_state(self, state, model):
        pass


MACHINE = _SharedMachine(model=None, states=STATES, transitions=TRANSITIONS, initial=NEW,
                         auto_transitions=False, ignore_invalid_triggers=False, send_event=True,
                         model_attribute="state")
_lock = threading.Lock()  # guards the shared model list only; triggers run outside it


def sources(event: str) -> frozenset[str]:
    """States from which `event` is a listed transition."""
    return frozenset(s for s in STATES if MACHINE.events[event].transitions.get(s))


def allowed(state: str, event: str) -> bool:
    return event in MACHINE.events and bool(MACHINE.events[event].transitions.get(state))


# what to do instead, where a platform's one button may well send the wrong command (the guides call every
# ending 解绑): a pending invitation is not bound yet, so it is cancelled or declined, not unbound
INSTEAD = {("unbind", s): "; a pending invitation is cancelled by the grantor or declined by the beneficiary"
           for s in PENDING}


def fire(row, event: str, **facts) -> tuple[str, str]:
    """Fire `event` on `row` through the shared machine; returns (from, to). Illegal → 409."""
    if not allowed(row.state, event):
        raise DomainError("illegal_transition", f"{event} is not possible in state {row.state}"
                          + INSTEAD.get((event, row.state), ""))
    before = row.state
    keys = set(vars(row))
    with _lock:
        MACHINE.add_model(row, initial=row.state)
    try:
        row.trigger(event, **facts)
    except MachineError as exc:  # pragma: no cover - allowed() above already refuses these
        raise DomainError("illegal_transition", str(exc)) from None
    finally:
        with _lock:
            MACHINE.remove_model(row)
        for key in set(vars(row)) - keys:  # drop the trigger attributes add_model bound to the row
            if key != "state":
                delattr(row, key)
    return before, row.state
