"""Settlements (API.md "Settlements", DESIGN §4): pay a beneficiary's compliant medical cost from their own
personal account, then their grantors' through authorized bindings, the rest in cash; reverse one.

Amounts are integer fen. Output names follow the national settlement interface: `acct_pay` (the
beneficiary's own account), `acct_mulaid_pay` (family mutual aid, the sum of `splits`), `psn_cash_pay`
(cash), `balc` (the beneficiary's balance after)."""
from __future__ import annotations

from typing import Literal

from flask import g
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from workflows import free_text, settlements
from workflows.rules import MAX_FEN

from . import db, endpoint
from .schemas import ID_NUMBER, Body, PersonRef


class SettlementIn(Body):
    reference: str = Field(min_length=1, max_length=64, description="the platform's own id of this settlement: "
                           "the same reference again answers the same settlement (other facts: reference_reused)")
    beneficiary_id_number: str = ID_NUMBER
    amount_fen: int = Field(gt=0, le=MAX_FEN, strict=True, description="the self-pay part to settle, fen")
    category: Literal[settlements.CATEGORIES] = Field(
        description="compliant medical costs only (门诊, 住院, 药店); never non-medical goods")
    institution_code: str = Field(min_length=1, max_length=32, description="the medical institution or pharmacy")


class SplitOut(BaseModel):
    binding_id: str
    grantor: PersonRef
    amount_fen: int


class SettlementOut(BaseModel):
    id: str
    reference: str
    status: Literal[settlements.SETTLEMENT_STATUSES]
    beneficiary: PersonRef
    category: str
    institution_code: str
    amount_fen: int
    acct_pay: int = Field(description="from the beneficiary's own personal account, fen")
    acct_mulaid_pay: int = Field(description="from grantors' accounts (family mutual aid), fen: the sum of splits")
    psn_cash_pay: int = Field(description="the rest, paid in cash, fen")
    splits: list[SplitOut] = Field(description="one per paying binding, in the order they paid")
    balc: int = Field(description="the beneficiary's personal account balance right after the settlement, fen")
    created_at: str
    reversed_at: str | None
    reversal_reason: str | None = Field(description="why it was reversed, as the reversing platform (or an "
                                        "operator) gave it; ID numbers, mobile numbers and the persons' names "
                                        "masked; null while completed or when none was given")


class ReversalIn(Body):
    """Optional. The endpoint ignored its body before `reason` was added, so it still reverses whatever else
    is sent: a body that is not a JSON object, and fields other than `reason`, are ignored; but a body that
    names `reason` and is not a JSON object is 400 `malformed` (the reason would be lost for good)."""
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    reason: str | None = Field(None, max_length=free_text.REASON_CHARS,
                               validation_alias=AliasChoices("reason", "reversal_reason"),
                               description="optional: why (a refund, a prescription withdrawn, …); kept with the "
                               "settlement and sent in settlement.reversed (also taken as `reversal_reason`, "
                               "the answer's name for it)")


@endpoint("POST", "/settlements", "Settle a compliant medical cost for a beneficiary (idempotent on reference)",
          body=SettlementIn, answer=SettlementOut, status=(201, 200), tag="settlements",
          codes=("invalid_id_number", "not_found", "reference_reused", "beneficiary_not_insured"))
def settle(body: SettlementIn):
    out, created = settlements.settle(db(), platform=g.platform, **body.model_dump())
    return (201 if created else 200), out


@endpoint("POST", "/settlements/{settlement_id}/reversal", "Reverse a settlement: every fen goes back where it "
          "came from (again: the reversed settlement, with the first reversal's reason); the body is optional",
          body=ReversalIn, body_required=False, answer=SettlementOut, tag="settlements",
          codes=("not_found",))
def reversal(settlement_id: str, body: ReversalIn):
    return settlements.reverse(db(), platform=g.platform, settlement_id=settlement_id, reason=body.reason)


@endpoint("GET", "/settlements/{settlement_id}", "One settlement this platform made or is concerned with (the "
          "national platform; the provinces of the beneficiary and of each paying grantor: those sent its events)",
          answer=SettlementOut,
          tag="settlements", codes=("not_found",))
def settlement(settlement_id: str):
    return settlements.get(db(), platform=g.platform, settlement_id=settlement_id)
