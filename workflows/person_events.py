"""Registry facts from the platforms, applied as commands: a person's insurance, status or region
(`person.updated`, and `POST /api/v1/persons` through `persons.upsert`), a death, a relationship that
ended, an unbind a person asked for in a platform's own app (API.md "Inbound webhooks").

Why it is shaped this way:
- A person fact applies only when newer than the one held (`persons.registry_as_of`): platforms deliver at
  least once and out of order, so an older or equal fact is `stale` and changes nothing. A death is the
  exception: it applies whatever the record holds (only a second death is `stale`).
- Events from platforms end bindings by themselves (DESIGN §3), in the same transaction as the fact: lock
  the person, write the fact, lock the person's non-terminal bindings in id order, read both sides again
  (a fresh read after the locks, so two concurrent moves cannot each pass the region rule against the
  other's old region), and end what `consequences.decide` says, the system as actor, the reason in history.
  A binding a move leaves standing is relocated to the persons' new regions (`relocate`).
- A province platform speaks only about persons insured in the provinces it serves (the national platform
  serves all); a refusal is a DomainError, which the webhook records as its final outcome."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from models import Departure, Person
from models.crypto import lookup_hash

from . import balances, commands, consequences, idnumbers, policy, rows
from .actors import Actor
from .errors import DomainError
from .free_text import REASON_CHARS
from .persons import NO_SUCH_NUMBER, by_number, facts, province_of, upsert
from .unit import Command, command

FUTURE_TOLERANCE = timedelta(minutes=5)  # an as-of time further ahead would freeze the person's record
APPLIED = "applied"


def as_of_time(value, *, now: datetime) -> datetime | None:
    """`updated_at` (ISO 8601 with an offset, or an aware datetime) as aware UTC, as the sender stated it (at
    most FUTURE_TOLERANCE ahead of `now`: a clock a little fast); None when absent. How it is compared with
    the fact held: `_check_fresh`."""
    if value is None or value == "":
        return None
    try:
        at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise DomainError("validation_failed", "updated_at is an ISO 8601 time with a UTC offset") from None
    if at.tzinfo is None:
        raise DomainError("validation_failed", "updated_at needs a UTC offset")
    try:
        if at > now + FUTURE_TOLERANCE:
            raise DomainError("validation_failed", "updated_at is in the future")
        return at.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before the first representable UTC instant
        raise DomainError("validation_failed", "updated_at is out of range") from None


def _number(data: dict, key: str, today) -> str:
    value = data.get(key)
    return idnumbers.validate(value if isinstance(value, str) else "", today=today)


def registry_actor(platform) -> Actor:
    return Actor("system", f"registry:{platform.id}" if platform is not None else "registry")


def served(platform, *province_codes: str) -> bool:
    """The platform serves at least one of the provinces (None = an internal caller, serves all)."""
    return platform is None or any(platform.serves(p) for p in province_codes)


def check_served(platform, *province_codes: str) -> None:
    if not served(platform, *province_codes):
        raise DomainError("region_not_served", f"platform {platform.id} does not serve that person's province")


def _check_fresh(person: Person, at: datetime | None, platform, received: datetime) -> None:
    """Refuse a fact not newer than the one held (`stale`). Against a fact from the same platform, the two
    times that platform stated are compared (its clock orders its own facts, also when it runs fast and
    they arrive out of order); against another platform's, each time is taken as at most when it was
    received (`registry_as_of`), not when a worker applied it (a retry may come minutes later): a fact
    dated ahead by a fast clock must not make another platform's real later fact of those minutes `stale`
    (an insurance that ended, dropped for good, its binding paying)."""
    if at is None:
        return
    source = platform.id if platform is not None else None
    if person.registry_sent_at is not None and person.source_platform == source:
        held, new = person.registry_sent_at, at
    else:
        held, new = person.registry_as_of, min(at, received)
    if held is not None and new <= held:
        raise DomainError("stale", "the registry already holds a fact as of the same time or later")


def held_as_of(at: datetime | None, received: datetime) -> datetime:
    """A fact's time as held: the time stated, never later than when Gongji received it."""
    return min(at, received) if at is not None else received


def _stamp(cmd: Command, person: Person, at: datetime | None, platform, received: datetime | None = None) -> None:
    received = received or cmd.now
    held, as_of = person.registry_as_of, held_as_of(at, received)
    person.registry_as_of = max(as_of, held) if held is not None else as_of
    person.registry_sent_at = at or received  # as the source stated it (`_check_fresh`)
    person.updated_at = cmd.now
    person.source_platform = platform.id if platform is not None else None


def record(cmd: Command, fields: dict, *, as_of: datetime | None, platform,
           received: datetime | None = None) -> tuple[Person, bool]:
    """Create or update a person from validated registry `fields`; returns (person, created). `as_of`
    None (an API call without `updated_at`) applies as of now, without the staleness check. `received`: when
    the fact arrived (a webhook's arrival; else now)."""
    s, received = cmd.session, received or cmd.now
    province = province_of(s, fields["region_code"])
    check_served(platform, province)
    person = by_number(s, fields["id_number"], lock=True)
    created = person is None
    if created:
        number = fields["id_number"]
        person = Person(id_number=number, id_number_hash=lookup_hash(number), id_number_masked=idnumbers.mask(number),
                        created_at=cmd.now, balance_fen=0)
        s.add(person)
    else:  # a province platform may not take over a person another province insures
        check_served(platform, province_of(s, person.region_code))
        _check_fresh(person, as_of, platform, received)
    before = None if created else (person.insurance_type, person.insurance_status, person.region_code)
    person.name, person.name_masked = fields["name"], idnumbers.mask_name(fields["name"])
    person.insurance_type, person.insurance_status = fields["insurance_type"], fields["insurance_status"]
    person.region_code = fields["region_code"]
    if fields["real_name_verified"] is not None or created:  # absent keeps what is held, as a balance does: a
        person.real_name_verified = bool(fields["real_name_verified"])  # refresh of other facts withdraws nothing
    if fields.get("balance_fen") is not None:
        person.balance_fen = fields["balance_fen"] if created else balances.with_later_postings(
            s, person.id, fields["balance_fen"], held_as_of(as_of, received), platform)
    _stamp(cmd, person, as_of, platform, received)
    s.flush()
    # a name or balance update locks no binding: only these facts can end one (bindings never start
    # with an ineligible person, so unchanged facts end nothing)
    if before is not None and before != (person.insurance_type, person.insurance_status, person.region_code):
        end_bindings(cmd, person.id, registry_actor(platform), moved=before[2] != person.region_code)
    return person, created


def end_bindings(cmd: Command, person_id: str, actor: Actor, *, moved: bool) -> int:
    """End every non-terminal binding of the person that the facts no longer allow; how many ended.
    The region rule is judged only after a move (`moved`), under the policies in force now."""
    s, ended = cmd.session, 0
    for row in rows.lock_of_person(s, person_id):
        g, b = facts(s, row.grantor), facts(s, row.beneficiary)
        policies = ((policy.in_force(s, g.region_code, cmd.now), policy.in_force(s, b.region_code, cmd.now))
                    if moved else (None, None))
        decided = consequences.decide(row.state, row.expires_at, cmd.now, g, b, *policies)
        if decided is not None:
            event, reason = decided
            cmd.authorize_actor(row, event, actor, reason)
            cmd.transition(row, event, actor, reason=reason)
            ended += 1
        elif moved:
            relocate(cmd, row, g, b, actor)
    return ended


def relocate(cmd: Command, row: rows.BindingRow, grantor, beneficiary, actor: Actor) -> None:
    """A binding the move leaves standing follows its persons: `relocate` (a self-transition: version,
    history and a `binding.relocated` event, which also goes to the provinces it left, each recorded as a
    `Departure`) writes the regions they are insured in now. Who sees the binding and who is told follows
    those regions; its home province (`province_code`, the shard key) stays, and so does the policy it was
    made under (`policy_id`: the terms its persons agreed to; a new region's relationships, caps or attempt
    limit would judge it by rules it never met). An open face-verification attempt keeps its deadline."""
    held = tuple(getattr(row, k) for k in rows.REGIONS)
    current = (grantor.region_code, beneficiary.region_code)
    reason = consequences.relocation(row.state, row.expires_at, cmd.now, held, current)
    if reason is None:
        return
    row.grantor_region, row.beneficiary_region = current
    waiting = row.deadline_at if row.deadline_event == "verification_timeout" else None
    cmd.authorize_actor(row, "relocate", actor, reason)
    cmd.transition(row, "relocate", actor, reason=reason, attempt_deadline=waiting,
                   extra={"relocated_from": dict(zip(rows.REGIONS, held))})
    left = {province_of(cmd.conn, r) for r in held} - {province_of(cmd.conn, r) for r in current}
    if left:  # their platforms are owed this version (reconcile, resend) and nothing after it
        cmd.conn.execute(sa.insert(Departure), [dict(binding_id=row.id, version=row.version, province_code=p,
                                                     left_at=cmd.now) for p in sorted(left)])


# --- the inbound webhook types (webhooks._apply); each returns the outcome recorded on the webhook ----------

def person_updated(db, data: dict, *, platform, as_of: datetime, received: datetime | None = None) -> str:
    """The fields of `POST /api/v1/persons`, plus `updated_at`; the same function, the same consequences.
    `received`: when the webhook arrived (its facts are held as of no later than that)."""
    upsert(db, data, platform=platform, as_of=as_of, received=received)
    return APPLIED


def person_deceased(db, data: dict, *, platform, as_of: datetime, now=None, received: datetime | None = None) -> str:
    """`{id_number, updated_at?}`: the person died; every binding of theirs ends."""
    with command(db, now=now) as cmd:
        s = cmd.session
        number = _number(data, "id_number", idnumbers.today_in_china(cmd.now))
        at = as_of_time(data.get("updated_at"), now=received or cmd.now) or as_of
        person = by_number(s, number, lock=True)
        # a person the platform does not serve is answered as one nobody holds: nothing can be probed
        if person is None or not served(platform, province_of(s, person.region_code)):
            raise DomainError("not_found", NO_SUCH_NUMBER)
        if person.deceased:
            raise DomainError("stale", "the person is already recorded as deceased")
        # no freshness check: a death is never superseded by another fact of the record, and it is often
        # reported (as of the day it happened) after later updates, which must not keep bindings alive
        person.deceased = True
        _stamp(cmd, person, at, platform, received)
        s.flush()
        end_bindings(cmd, person.id, registry_actor(platform), moved=False)
        return APPLIED


def relationship_ended(db, data: dict, *, platform, as_of: datetime | None = None, now=None, received=None) -> str:
    """End the two persons' non-terminal bindings (`unbind` if live, `reject` if pending) in both directions:
    a relationship that ended has ended for each of them (spouses who divorced may have bound each other
    both ways). Returns the new state of the binding named (grantor → beneficiary), else of the reverse
    one, or `no_binding`. The two persons are locked first, in id order, then the two directions in one
    order (the persons' ids), so such events and other person events queue instead of deadlocking."""
    with command(db, now=now) as cmd:
        s, today = cmd.session, idnumbers.today_in_china(cmd.now)
        grantor = by_number(s, _number(data, "grantor_id_number", today))
        beneficiary = by_number(s, _number(data, "beneficiary_id_number", today))
        if grantor is None or beneficiary is None or not served(  # unseen persons: as if nobody held them
                platform, province_of(s, grantor.region_code), province_of(s, beneficiary.region_code)):
            return "no_binding"
        # the two persons first, in id order, as every writer locks a person before its bindings: locking the
        # pair's bindings alone met a person event holding them in binding-id order (a deadlock, then a retry)
        s.execute(sa.select(Person.id).where(Person.id.in_(sorted({grantor.id, beneficiary.id})))
                  .order_by(Person.id).with_for_update()).all()
        actor, ended = registry_actor(platform), {}
        for pair in sorted([(grantor.id, beneficiary.id), (beneficiary.id, grantor.id)]):
            row = rows.lock_pair(s, *pair)
            decided = consequences.relationship_ended(row.state, row.expires_at, cmd.now) if row else None
            if decided is not None:
                cmd.authorize_actor(row, decided[0], actor, decided[1])
                cmd.transition(row, decided[0], actor, reason=decided[1])
                ended[pair] = row.state
        return ended.get((grantor.id, beneficiary.id)) or ended.get((beneficiary.id, grantor.id)) or "no_binding"


def unbind_requested(db, data: dict, *, platform, as_of: datetime | None = None, now=None, received=None) -> str:
    """A person asked to unbind in the platform's own app: `commands.unbind` as that person."""
    binding_id, actor, reason = data.get("binding_id"), data.get("actor"), data.get("reason")
    text_or_none = (str, type(None))
    if (not isinstance(binding_id, str) or not isinstance(actor, dict) or not isinstance(reason, text_or_none)
            or not all(isinstance(actor.get(k), text_or_none) for k in ("kind", "id", "id_number"))
            or len(reason or "") > REASON_CHARS
            or (actor.get("id") is None) == (actor.get("id_number") is None)):  # as the API's ActorIn: one of two
        raise DomainError("validation_failed", "binding_id is a string, actor an object naming the person by "
                          f"exactly one of id_number and id, reason a string of at most {REASON_CHARS} characters")
    with db() as s:
        row = rows.get(s, binding_id)
        if not served(platform, province_of(s, row.grantor.region_code), province_of(s, row.beneficiary.region_code)):
            raise DomainError("not_found", f"no binding {binding_id}")  # as for an id nobody holds
    return commands.unbind(db, binding_id, actor, reason=reason, channel="app", now=now, platform=platform)["state"]


HANDLERS = {"person.updated": person_updated, "person.deceased": person_deceased,
            "relationship.ended": relationship_ended, "binding.unbind_requested": unbind_requested}
