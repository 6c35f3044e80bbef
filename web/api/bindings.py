"""Bindings: invite, read, history, and the lifecycle commands of API.md.

A platform sees a binding only when it serves the grantor's or the beneficiary's province (the national
platform sees all); anything else answers 404 so ids cannot be probed. Reads check the view they read;
commands check the row they lock, in their own transaction (`platform=`), so a command is one transaction."""
from __future__ import annotations

from flask import g

from workflows import commands, in_person, queries, verification
from workflows.errors import DomainError
from workflows.invite import invite as invite_command
from workflows.unit import visible_to

from . import db, endpoint
from .schemas import (ActorBody, AuthorizeIn, BindingOut, HistoryOut, InPersonIn, InviteIn, VerificationStarted)

# the refusals of a command on a binding (besides those of every write with a body: web/api/codes.py)
# (a person actor's malformed or unknown ID number is a stranger to the binding: not_your_binding)
COMMAND = ("not_found", "not_your_binding", "illegal_transition", "region_not_served")
INVITE = ("invalid_id_number", "grantor_not_eligible", "beneficiary_not_insured", "relationship_not_allowed",
          "self_binding", "duplicate_binding", "region_not_allowed", "commitment_required", "member_limit",
          "too_frequent", "name_mismatch", "relationship_mismatch")


def _visible(binding_id: str) -> dict:
    view = queries.binding(db(), binding_id)
    if not visible_to(g.platform, view):
        raise DomainError("not_found", f"no binding {binding_id}")
    return view


@endpoint("POST", "/bindings", "Invite: the grantor invites a close relative", body=InviteIn,
          answer=BindingOut, status=201, codes=INVITE)
def invite(body: InviteIn):
    return 201, invite_command(db(), platform=g.platform, **body.model_dump())


@endpoint("GET", "/bindings/{binding_id}", "One binding with its verification attempts", answer=BindingOut,
          codes=("not_found",))
def get_binding(binding_id: str):
    return _visible(binding_id)


@endpoint("GET", "/bindings/{binding_id}/history", "The binding's transitions, in order", answer=HistoryOut,
          codes=("not_found",))
def history(binding_id: str):
    _visible(binding_id)
    return queries.history(db(), binding_id)


@endpoint("POST", "/bindings/{binding_id}/verification", "The beneficiary starts face verification",
          body=ActorBody, answer=VerificationStarted, status=202, codes=COMMAND)
def start_verification(binding_id: str, body: ActorBody):
    return 202, verification.start_verification(db(), binding_id, body.actor.model_dump(),
                                                channel=body.channel, platform=g.platform, version=body.version)


@endpoint("POST", "/bindings/{binding_id}/verification/in-person", "A service hall's staff checked the "
          "beneficiary's identity documents in person (where the region's policy allows it): invited → "
          "face_verified, as a passed face check; the beneficiary then accepts. Provincial platforms only "
          "(their counter systems)", body=InPersonIn, answer=BindingOut, codes=COMMAND + ("in_person_not_allowed",),
          kinds=("province",))
def verify_in_person(binding_id: str, body: InPersonIn):
    return in_person.verify_in_person(db(), binding_id, staff_id=body.staff_id, reason=body.reason,
                                      platform=g.platform, version=body.version)


def _command(name: str, summary: str, path: str, codes: tuple[str, ...] = ()):
    fire = getattr(commands, name)

    def view(binding_id: str, body: ActorBody):
        return fire(db(), binding_id, body.actor.model_dump(), platform=g.platform, **_extra(name, body))
    view.__name__ = name
    endpoint("POST", path, summary, body=ActorBody, answer=BindingOut, codes=COMMAND + codes)(view)


def _extra(name: str, body: ActorBody) -> dict:
    extra = {"channel": body.channel, "version": body.version}
    if name in ("decline", "cancel", "unbind"):
        extra["reason"] = body.reason
    return extra


_command("accept", "The beneficiary accepts after face verification", "/bindings/{binding_id}/accept",
         ("grantor_not_eligible", "beneficiary_not_insured"))  # checked again at this moment
_command("decline", "The beneficiary declines", "/bindings/{binding_id}/decline")
_command("cancel", "The grantor withdraws the invitation", "/bindings/{binding_id}/cancel")
_command("unbind", "Either side ends the binding", "/bindings/{binding_id}/unbind")


@endpoint("PUT", "/bindings/{binding_id}/authorization", "The grantor sets the authorized amount (fen; "
          "null = whole balance)", body=AuthorizeIn, answer=BindingOut,
          codes=COMMAND + ("grantor_not_eligible", "too_frequent"))
def authorization(binding_id: str, body: AuthorizeIn):
    return commands.authorize(db(), binding_id, body.actor.model_dump(), body.amount_fen, channel=body.channel,
                              platform=g.platform, version=body.version)
