"""Persons as the platforms report them: upsert from a registry, look-up by ID number, the family view.

The ID number is normalized and validated, then stored encrypted with its keyed hash; answers carry the
masked forms only. A province platform may only write persons insured in its provinces. Writing a registry
fact (staleness, the bindings it ends) is `person_events.record`, shared with the `person.updated` webhook."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from models import Binding, Person, Region
from models.crypto import lookup_hashes
from models.persons import INSURANCE_STATUSES, INSURANCE_TYPES
from models.types import utcnow

from . import idnumbers
from .errors import DomainError
from .rules import MAX_FEN, PersonFacts
from .unit import command, visible_to
from .views import binding_view, person_view

_PROVINCE_CACHE: dict[str, str] = {}


_PROVINCE = sa.select(Region.province_code).where(Region.code == sa.bindparam("r"))


def province_of(session, region_code: str) -> str:
    """The province of a pooling region (cached: regions do not move); `session` is a Session or Connection."""
    if region_code not in _PROVINCE_CACHE:
        province = session.execute(_PROVINCE, {"r": region_code}).scalar()
        if province is None:
            raise DomainError("unknown_region", f"no pooling region {region_code}")
        _PROVINCE_CACHE[region_code] = province
    return _PROVINCE_CACHE[region_code]


def facts(session, p: Person | None) -> PersonFacts | None:
    if p is None:
        return None
    return PersonFacts(id=p.id, insurance_type=p.insurance_type, insurance_status=p.insurance_status,
                       real_name_verified=p.real_name_verified, deceased=p.deceased, region_code=p.region_code,
                       province_code=province_of(session, p.region_code))


def hash_matches(column):
    """`column` holds the number's look-up digest under the active key or the one being retired
    (`models.crypto.lookup_hashes`); the parameters are `hash_params(number)`."""
    return column.in_([sa.bindparam("h"), sa.bindparam("h_old")])


def hash_params(number: str) -> dict:
    h, h_old = lookup_hashes(number)
    return {"h": h, "h_old": h_old}


# the oldest row first (ids are time-ordered): during a rotation one number may be held twice, the original
# and a row a process with only the new key made; every look-up takes the original, which holds the
# bindings, until an operator merges them (`gongji pii rekey` counts them)
_OLDEST_FIRST = Person.id
_BY_HASH = (sa.select(Person).where(hash_matches(Person.id_number_hash))  # built once (rows.py)
            .order_by(_OLDEST_FIRST).limit(1))
_BY_HASH_LOCKED = _BY_HASH.with_for_update()
_ID_BY_HASH = sa.select(Person.id).where(hash_matches(Person.id_number_hash)).order_by(_OLDEST_FIRST).limit(1)


def by_number(session: Session, number: str, *, lock: bool = False) -> Person | None:
    return session.scalar(_BY_HASH_LOCKED if lock else _BY_HASH, hash_params(number))


def id_by_number(session: Session, number: str) -> str | None:
    """The id of the person holding this (normalized) ID number, or None."""
    return session.scalar(_ID_BY_HASH, hash_params(number))


def validated(data: dict, *, today) -> dict:
    """The registry fields of `POST /api/v1/persons` (and `person.updated`), normalized; refusals by code."""
    raw = data.get("id_number")
    number = idnumbers.validate(raw if isinstance(raw, str) else "", today=today)
    if data.get("insurance_type") not in INSURANCE_TYPES or data.get("insurance_status") not in INSURANCE_STATUSES:
        raise DomainError("validation_failed", "insurance_type or insurance_status is not a known value")
    balance = data.get("balance_fen")
    if balance is not None and (not isinstance(balance, int) or isinstance(balance, bool)
                                or not 0 <= balance <= MAX_FEN):
        raise DomainError("validation_failed", f"balance_fen is an integer from 0 to {MAX_FEN}")
    name = (data.get("name") or "").strip() if isinstance(data.get("name"), (str, type(None))) else ""
    if not name or len(name) > 64:
        raise DomainError("validation_failed", "name is required, at most 64 characters")
    region = data.get("region_code")
    if not (isinstance(region, str) and len(region) == 6 and region.isascii() and region.isdigit()):
        raise DomainError("validation_failed", "region_code is a six-digit pooling region code")
    verified = data.get("real_name_verified")  # absent (None): unchanged, false for a new person
    if not isinstance(verified, (bool, type(None))):  # a webhook's "false" must not count as verified
        raise DomainError("validation_failed", "real_name_verified is true or false")
    return dict(id_number=number, name=name, insurance_type=data["insurance_type"],
                insurance_status=data["insurance_status"], region_code=region, real_name_verified=verified,
                balance_fen=balance)


def upsert(db, data: dict, *, platform, now=None, as_of=None, received=None) -> tuple[dict, bool]:
    """Create or update a person from a platform's registry; returns (masked view, created).

    `data["updated_at"]` (the registry's as-of time) or else `as_of` (a webhook's timestamp) is compared
    with the fact held: not newer → DomainError `stale`, nothing written. With neither (a plain API call)
    the fact applies as of now. `received`: when a webhook carrying it arrived (else now). Bindings the new
    facts no longer allow end in the same transaction."""
    from .person_events import as_of_time, record  # late: person_events builds on this module
    now = now or utcnow()
    fields = validated(data, today=idnumbers.today_in_china(now))
    at = as_of_time(data.get("updated_at"), now=received or now) or as_of
    with command(db, now=now) as cmd:
        person, created = record(cmd, fields, as_of=at, platform=platform, received=received)
        return person_view(person), created


NO_SUCH_NUMBER = "no person with that ID number"


def _seen_by(platform, person: Person, unknown: str) -> Person:
    """A platform sees only persons insured in a province it serves (None: an internal caller sees all); to
    any other platform the person is unknown, answered exactly as a missing one, so nothing can be probed by
    reading. (A write naming such a person does say that they are beyond the platform's reach, as the rules
    must: registering them is 403 region_not_served, inviting them where the provinces do not share is 422
    region_not_allowed; README "One binding's life" says what each tells.)"""
    if platform is not None and not platform.serves(person.region_code[:2]):
        raise DomainError("not_found", unknown)
    return person


def lookup(db, id_number: str, *, platform=None) -> dict:
    """The person with this ID number, as the platform may see them. A number that cannot be one is 422
    invalid_id_number (as `POST /persons` and an invitation answer it: it says nothing of anyone); a valid one
    nobody holds, or one held in a province the platform does not serve, is the same 404."""
    number = idnumbers.validate(id_number if isinstance(id_number, str) else "",
                                today=idnumbers.today_in_china(utcnow()))
    with db() as session:
        person = by_number(session, number)
        if person is None:
            raise DomainError("not_found", NO_SUCH_NUMBER)
        return person_view(_seen_by(platform, person, NO_SUCH_NUMBER))


def _existing(session: Session, person_id: str, platform=None) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise DomainError("not_found", f"no person {person_id}")
    return _seen_by(platform, person, f"no person {person_id}")


def get(db, person_id: str, *, platform=None) -> dict:
    with db() as session:
        return person_view(_existing(session, person_id, platform))


def family(db, person_id: str, *, platform=None) -> dict:
    """Every binding where the person is grantor or beneficiary, newest first; for a platform, only those it
    sees (`visible_to`: it serves either side's province), as `GET /bindings/{id}` would answer them. A person
    who moved keeps the bindings of where they were, which the new province does not see."""
    with db() as session:
        person = _existing(session, person_id, platform)
        rows = [b for b in session.scalars(
            sa.select(Binding).where(sa.or_(Binding.grantor_id == person_id, Binding.beneficiary_id == person_id))
            .options(joinedload(Binding.grantor), joinedload(Binding.beneficiary))
            .order_by(Binding.created_at.desc())).unique().all() if platform is None or visible_to(platform, b)]
        return {"person": person_view(person),
                "as_grantor": [binding_view(b, b.grantor, b.beneficiary) for b in rows if b.grantor_id == person_id],
                "as_beneficiary": [binding_view(b, b.grantor, b.beneficiary) for b in rows
                                   if b.beneficiary_id == person_id]}
