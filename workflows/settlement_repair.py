"""An operator reverses a settlement from the dashboard, when the platform that made it cannot (its system is
down, the wrong patient was charged and the platform's own reversal never came). Audited like `repair`'s
and `platform_repair`'s actions: who, why, what, in the same transaction as the money; a refusal too, with
its code.

It reverses through `settlements.reverse_in`, the core the platform API's reversal runs, so the money moves
back the same way (every ledger line negated, the balances and what the authorizations had used restored)
and the same `settlement.reversed` event goes to the platforms concerned; only the API's check that a
platform reverses its own settlements does not apply to an operator. The settlement's row lock decides a
race with the platform's reversal (or a second operator): one reverses, the other waits and reads
`reversed`. Reversing a reversed settlement moves nothing: it answers the settlement, and its audit row's
outcome is `already_reversed` (the `ok` row is the one that moved the money: `settlement_views.detail`
names its operator as who reversed). The settlements table has no column for who reversed; the audit row
written with the reversal, at its `reversed_at`, is that record."""
from __future__ import annotations

from datetime import datetime

from . import free_text, settlements
from .errors import DomainError
from .operators import OperatorInfo, record
from .repair import check_allowed, clean_reason
from .settlement_views import REVERSE_ACTION
from .unit import command

ROLE_FOR = {REVERSE_ACTION: "operator"}
ALREADY = "already_reversed"  # the outcome of a reversal that found the settlement reversed: nothing moved


def reverse(db, who: OperatorInfo, settlement_id: str, reason: str | None, *,
            now: datetime | None = None) -> dict:
    """Reverse the settlement (any platform's) with a reason; its view with `reversed_now` (False: it was
    reversed already, nothing moved)."""
    try:
        why = check_allowed(who, REVERSE_ACTION, reason, ROLE_FOR)
        with command(db, now=now) as cmd:
            out, moved = settlements.reverse_in(cmd, settlement_id, reason=why)
            s = cmd.session
            persons = settlements.family_of(s, out["beneficiary"]["id"])
            detail = {"settlement_id": out["id"], "reference": out["reference"], "amount_fen": out["amount_fen"],
                      "bindings": [x["binding_id"] for x in out["splits"]]}
            record(s, who, REVERSE_ACTION, reason=free_text.clean_about(s, why, persons),
                   outcome="ok" if moved else ALREADY, detail=detail, now=cmd.now)
            return {**out, "reversed_now": moved}
    except DomainError as exc:  # as `operators.record_refusal`, naming the settlement asked for (masked, cut:
        with db.begin() as s:  # a URL may hold anything typed into it)
            record(s, who, REVERSE_ACTION, reason=clean_reason(reason), outcome=exc.code,
                   detail={"detail": free_text.clean(exc.detail),
                           "settlement_id": free_text.clean(str(settlement_id), limit=64)})
        raise
