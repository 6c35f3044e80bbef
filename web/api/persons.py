"""Persons and regions: upsert from a platform's registry, look-up by ID number (never in a URL),
the family view, the deduction order, and the policy in force for a pooling region."""
from __future__ import annotations

from flask import g

from workflows import persons, policy, queries
from workflows.errors import DomainError
from models.types import utcnow

from . import db, endpoint
from .schemas import DeductionOrderIn, DeductionOrderOut, FamilyOut, LookupIn, PersonIn, PersonOut, RegionOut


@endpoint("POST", "/persons", "Create or update a person from the platform's registry", body=PersonIn,
          answer=PersonOut, status=(201, 200), tag="persons",
          codes=("invalid_id_number", "unknown_region", "region_not_served", "stale"))
def upsert_person(body: PersonIn):
    view, created = persons.upsert(db(), body.model_dump(), platform=g.platform)
    return (201 if created else 200), view


@endpoint("POST", "/persons/lookup", "Find a person by ID number (sent in the body, never the URL); a "
          "person insured in a province the platform does not serve is 404, as a valid number nobody holds; a "
          "number that cannot be one is 422 invalid_id_number", body=LookupIn, answer=PersonOut, tag="persons",
          codes=("invalid_id_number", "not_found"))
def lookup_person(body: LookupIn):
    return persons.lookup(db(), body.id_number, platform=g.platform)


@endpoint("GET", "/persons/{person_id}/bindings", "The family view: bindings where the person is grantor "
          "or beneficiary", answer=FamilyOut, tag="persons", codes=("not_found",))
def person_bindings(person_id: str):
    return persons.family(db(), person_id, platform=g.platform)


@endpoint("PUT", "/persons/{person_id}/deduction-order", "The beneficiary's order of grantors to pay from",
          body=DeductionOrderIn, answer=DeductionOrderOut, tag="persons",
          codes=("not_found", "not_your_binding", "deduction_order_fixed"))
def deduction_order(person_id: str, body: DeductionOrderIn):
    persons.get(db(), person_id, platform=g.platform)  # 404 for a person the platform may not see
    return queries.set_deduction_order(db(), person_id, body.binding_ids)


@endpoint("GET", "/regions/{code}", "The policy in force for a pooling region (统筹区)", answer=RegionOut,
          tag="regions", codes=("not_found",))
def region(code: str):
    with db()() as session:
        try:
            return policy.in_force(session, code, utcnow()).as_api()
        except DomainError as exc:
            raise DomainError("not_found", exc.detail) from None
