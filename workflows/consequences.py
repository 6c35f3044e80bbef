"""Which bindings a registry fact ends, and why (DESIGN §3, "Events from platforms end bindings by
themselves"): pure functions over plain facts, no I/O, so every reason is unit-tested without a database.

`person_events` gathers the facts inside its transaction (after locking the person, then the bindings) and
fires what these functions decide with the system as actor: `unbind` for a live binding, `reject` for a
pending one, and the machine-readable reason in history. The region rule is the one invitations obey
(`rules.check_regions` under the policies in force), so a move is judged exactly as a new invitation would
be; policies are data, never a province named in code."""
from __future__ import annotations

from datetime import datetime

from . import machine, rules
from .errors import DomainError

SIDES = ("grantor", "beneficiary")
STOPPED_STATUSES = ("ended", "suspended")
RELATIONSHIP_ENDED = "relationship_ended"


def reason_to_end(grantor: rules.PersonFacts, beneficiary: rules.PersonFacts, grantor_policy=None,
                  beneficiary_policy=None) -> str | None:
    """Why a binding between these two persons may no longer stand, or None when it may.

    In order: a death, either side's insurance ended or suspended (or no insurance at all), the grantor no
    longer under employee insurance, and — only when both policies are given, i.e. a region moved — the
    pooling regions the policies do not allow together."""
    pair = tuple(zip(SIDES, (grantor, beneficiary)))
    for side, person in pair:
        if person.deceased:
            return f"{side}_deceased"
    for side, person in pair:
        if person.insurance_status in STOPPED_STATUSES:
            return f"{side}_insurance_{person.insurance_status}"
        if person.insurance_type not in rules.INSURED_TYPES:
            return f"{side}_insurance_ended"
    if grantor.insurance_type != "employee":
        return "grantor_left_employee_insurance"
    if grantor_policy is not None and beneficiary_policy is not None:
        try:
            rules.check_regions(grantor, beneficiary, grantor_policy, beneficiary_policy)
        except DomainError as exc:
            return exc.code  # region_not_allowed
    return None


def ending_event(state: str, expires_at: datetime | None, now: datetime) -> str | None:
    """The event that ends a binding in `state` on the system's behalf: `unbind` when live, `reject` when
    pending; None when already terminal, or pending past its invitation TTL (the timer expires it, and a
    late command is refused there, see `unit.Command.transition`)."""
    if state in machine.LIVE:
        return "unbind"
    if state in machine.PENDING:
        return None if expires_at is not None and now >= expires_at else "reject"
    return None


def decide(state: str, expires_at: datetime | None, now: datetime, grantor: rules.PersonFacts,
           beneficiary: rules.PersonFacts, grantor_policy=None, beneficiary_policy=None
           ) -> tuple[str, str] | None:
    """(event, reason) to end a binding after a person fact changed, or None to leave it alone."""
    event = ending_event(state, expires_at, now)
    if event is None:
        return None
    reason = reason_to_end(grantor, beneficiary, grantor_policy, beneficiary_policy)
    return (event, reason) if reason is not None else None


def relocation(state: str, expires_at: datetime | None, now: datetime, held: tuple[str, str],
               current: tuple[str, str]) -> str | None:
    """Why a standing binding follows its persons to new pooling regions (`relocate`), or None: the regions
    it holds, (grantor's, beneficiary's), are where they are insured now, or the system may not act on it
    (terminal, or pending past its TTL). Call it only for a binding `decide` leaves standing after a move:
    one the policies allow. The reason names each side that moved, from where to where."""
    if held == current or ending_event(state, expires_at, now) is None:
        return None
    return "; ".join(f"{side}_region {old}→{new}" for side, old, new in zip(SIDES, held, current) if old != new)


def relationship_ended(state: str, expires_at: datetime | None, now: datetime) -> tuple[str, str] | None:
    """(event, reason) to end a binding whose relationship the registry says has ended, or None."""
    event = ending_event(state, expires_at, now)
    return (event, RELATIONSHIP_ENDED) if event is not None else None
